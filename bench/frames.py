#!/usr/bin/env python3
"""Camera frames benchmark: frame_publisher (JPEG, on demand) vs the rosbridge way (JSON + base64 of the
raw sensor_msgs/Image), same run, same simulator camera (640x480 rgb8), same nats-server.

For each camera rate (15 and 30 fps by default) and each way, real processes are started (robot_sim
with the camera, the publisher under test, a nats-server on loopback) and a viewer in this process
counts frames/s, bytes/s and latency (viewer receive time - the camera's header stamp, decode
included: JPEG decode for ours, json.loads + base64 decode for the rosbridge way). The CPU of the
publishing process is read with psutil over the window. frame_publisher's idle CPU (no viewer) is
measured too.

The rosbridge way is emulated by ``python bench/frames.py relay``: an rclpy node subscribing to the
Image and sending rosbridge's ``{"op": "publish", "topic": ..., "msg": {...}}`` with ``data`` as
base64, as rosbridge_server does for uint8[] (its own message-to-dict path is slower: see STYLE.md;
here it gets our fast codec, so the comparison favours it).

    . scripts/env.sh && python bench/frames.py [--seconds 10] [--rates 15,30] [--dds default]
    . scripts/env.sh && python bench/frames.py --smoke     # seconds, 160x120: does every path deliver?

Every child process gets the workspace's own Python path (src/ for the code under test, install/ for
robot_platform_interfaces), whatever PYTHONPATH the caller set: with ``PYTHONPATH=src/robot_platform``
replacing the one scripts/env.sh sets, robot_sim died at import and both ways measured 0 fps. The
script now fails (exit 1, with the child's log) when a child exits early or a way delivers no frame.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))
from helpers import free_port, wait_port  # noqa: E402  (the test harness's loopback port helpers)

SRC = REPO / "src" / "robot_platform"
INTERFACES = sorted((REPO / "install" / "robot_platform_interfaces" / "lib").glob("python3*/site-packages"))
ROBOT = "r1"
STARTUP_TIMEOUT_S = 60.0


class BenchError(RuntimeError):
    """A path of the benchmark delivered nothing or a process died: the figures would be meaningless."""


def child_pythonpath() -> str:
    """src/ first (the code under test), then the built interfaces, then whatever the caller had."""
    parts = [str(SRC), *(str(p) for p in INTERFACES), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)


def wait_ready(group: Any, name: str, text: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Wait (bounded) until child ``name`` logged ``text``; BenchError with its log if it died or timed out."""
    child = group.child(name)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for other in group.children:
            if not other.running():
                raise BenchError(f"{other.name} exited with {other.popen.returncode}:\n{other.output()[-3000:]}")
        if text in child.output():
            return
        time.sleep(0.1)
    raise BenchError(f"{name} not ready after {timeout_s:.0f} s (no {text!r} in its log):\n{child.output()[-3000:]}")
RAW_SUBJECT = f"robots.{ROBOT}.rosbridge.camera"
MAX_PAYLOAD = "8MB"  # a base64 640x480 rgb8 frame is 1.23 MB: over nats-server's default 1 MB

# Fast DDS's default shared-memory segment (512 kB) cannot hold a 900 kB Image: samples then go as UDP
# fragments and best-effort readers lose 30-40 % of frames (measured: 15 Hz published, ~10 Hz received).
# A 16 MB segment (UDP kept, on loopback only, for discovery) delivers every frame.
FASTDDS_LARGE_SHM = (REPO / "config" / "fastdds" / "large_data.xml").read_text()  # the shipped profile


# ---------------------------------------------------------------------------------------------- relay
def relay_main(nats_url: str) -> None:
    """The rosbridge way: every Image as rosbridge JSON with base64 data, to NATS (queue of 100, like a
    rosbridge subscriber's queue; drops counted by the link)."""
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from robot_platform.common.node_main import spin_node
    from robot_platform.messaging.codec import Codec
    from robot_platform.messaging.nats_link import NatsLink

    class Relay(Node):
        def __init__(self) -> None:
            super().__init__("rosbridge_way_relay")
            self.codec = Codec()
            self.link = NatsLink(nats_url, lambda s, h, d: None, name="rosbridge_way", outbox_capacity=100,
                                 log=self.get_logger())  # logs "connected to NATS" (readiness)
            self.link.start()
            self.create_subscription(Image, "/camera/image_raw", self.on_image, qos_profile_sensor_data)

        def on_image(self, msg: Image) -> None:
            d = self.codec.to_dict(msg)
            d["data"] = base64.b64encode(d["data"]).decode("ascii")
            body = json.dumps({"op": "publish", "topic": "/camera/image_raw", "msg": d}, separators=(",", ":"))
            self.link.publish(RAW_SUBJECT, body.encode(), {})

        def close(self) -> None:
            self.link.stop()

    del rclpy  # spin_node does init/shutdown
    spin_node(Relay)


# ---------------------------------------------------------------------------------------------- bench
@dataclass
class Result:
    way: str
    rate: float
    fps: float
    kbps: float
    p50_ms: float
    p99_ms: float
    cpu_pct: float
    frame_kb: float




def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure_frames(url: str, seconds: float, warmup: float) -> tuple[list[float], list[int], float]:
    import nats
    from PIL import Image as PilImage

    from robot_platform.frames.viewer import FrameViewer

    nc = await nats.connect(url)
    lat: list[float] = []
    sizes: list[int] = []

    async def on(msg: Any) -> None:
        from robot_platform.frames.meta import FrameMeta

        meta = FrameMeta.from_headers(msg.headers)
        img = PilImage.open(__import__("io").BytesIO(msg.data))
        img.load()  # decode, as a viewer must
        if recording:
            lat.append((time.time_ns() - meta.stamp_ns) / 1e6)
            sizes.append(len(msg.data))

    recording = False
    sub = await nc.subscribe(f"robots.{ROBOT}.frames.front", cb=on)
    viewer = FrameViewer(nc, ROBOT, "front", ttl_s=5.0)  # holds the lease; our own subscription measures
    await viewer.start()
    await asyncio.sleep(warmup)
    recording = True
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    window = time.monotonic() - t0
    recording = False
    await viewer.stop()
    await sub.unsubscribe()
    await nc.close()
    return lat, sizes, window


async def measure_rosbridge(url: str, seconds: float, warmup: float) -> tuple[list[float], list[int], float]:
    import nats
    import numpy as np

    nc = await nats.connect(url)
    lat: list[float] = []
    sizes: list[int] = []
    recording = False

    async def on(msg: Any) -> None:
        d = json.loads(msg.data)["msg"]
        np.frombuffer(base64.b64decode(d["data"]), dtype=np.uint8)  # what a viewer must do to show it
        stamp = d["header"]["stamp"]
        if recording:
            lat.append((time.time_ns() - (stamp["sec"] * 1_000_000_000 + stamp["nanosec"])) / 1e6)
            sizes.append(len(msg.data))

    sub = await nc.subscribe(RAW_SUBJECT, cb=on, pending_bytes_limit=256 * 1024 * 1024)
    await asyncio.sleep(warmup)
    recording = True
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    window = time.monotonic() - t0
    recording = False
    await sub.unsubscribe()
    await nc.close()
    return lat, sizes, window


def cpu_window(pid: int, seconds: float) -> tuple[float, Any]:
    """Start a CPU measurement of ``pid``; returns (start time, process) to pass to cpu_done."""
    import psutil

    proc = psutil.Process(pid)
    return time.monotonic(), (proc, proc.cpu_times())


def cpu_done(start: tuple[float, Any]) -> float:
    t0, (proc, c0) = start
    c1 = proc.cpu_times()
    return 100.0 * ((c1.user - c0.user) + (c1.system - c0.system)) / (time.monotonic() - t0)


def run_case(
    way: str, rate: float, seconds: float, workdir: Path, domain: int, large_shm: bool,
    size: tuple[int, int] = (640, 480), idle_s: float = 5.0, warmup_s: float = 2.0,
) -> tuple[Result, float | None]:
    from robot_platform.launcher.supervisor import ProcessGroup

    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        PYTHONPATH=child_pythonpath(),
        PYTHONUNBUFFERED="1",
    )
    if large_shm:
        profile = workdir / "fastdds_large_shm.xml"
        profile.write_text(FASTDDS_LARGE_SHM)
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(profile)
    group = ProcessGroup(log_dir=workdir / f"logs-{way}-{rate:g}")
    idle_cpu = None
    try:
        port = free_port()
        conf = workdir / "nats.conf"
        conf.write_text(f"listen: 127.0.0.1:{port}\nmax_payload: {MAX_PAYLOAD}\n")
        group.start("nats-server", [shutil.which("nats-server") or "nats-server", "-c", str(conf)], env=env)
        wait_port(port)
        url = f"nats://127.0.0.1:{port}"
        group.start(
            "robot_sim",
            [sys.executable, "-m", "robot_platform.sim.node", "--ros-args", "-p", f"robot_id:={ROBOT}",
             "-p", "enable_camera:=true", "-p", f"camera_rate_hz:={rate}",
             "-p", f"camera_width:={size[0]}", "-p", f"camera_height:={size[1]}"],
            env=env,
        )  # fmt: skip
        if way == "frame_publisher":
            params = workdir / "frames.yaml"
            params.write_text(
                "/**/frame_publisher:\n  ros__parameters:\n"
                f"    robot_id: {ROBOT}\n    nats_url: {url}\n"
                "    cameras.names: [front]\n    cameras.front.topic: /camera/image_raw\n"
                f"    cameras.front.max_fps: {rate}\n    cameras.front.max_kbps: 0.0\n"
                "    robot.max_fps: 0.0\n    robot.max_kbps: 0.0\n"  # unlimited: the bench measures the encoder
                "    jpeg_quality_max: 80\n"
            )
            pub = group.start(
                "frame_publisher",
                [
                    sys.executable,
                    "-m",
                    "robot_platform.frames.node",
                    "--ros-args",
                    "--params-file",
                    str(params),
                ],
                env=env,
            )
            wait_ready(group, "frame_publisher", "connected to NATS")  # imports, DDS, NATS
            start = cpu_window(pub.pid, seconds)
            time.sleep(min(idle_s, seconds))  # the idle CPU window itself (no viewer)
            idle_cpu = cpu_done(start)
            start = cpu_window(pub.pid, seconds)
            lat, sizes, window = asyncio.run(measure_frames(url, seconds, warmup=warmup_s))
        else:
            pub = group.start("relay", [sys.executable, __file__, "relay", "--nats-url", url], env=env)
            wait_ready(group, "relay", "connected to NATS")
            start = cpu_window(pub.pid, seconds)
            lat, sizes, window = asyncio.run(measure_rosbridge(url, seconds, warmup=warmup_s))
        cpu = cpu_done(start)  # includes the warm-up: both ways get the same
        if not lat:
            dead = [f"{c.name} (exit {c.popen.returncode})" for c in group.children if not c.running()]
            logs = "\n".join(f"--- {c.name}\n{c.output()[-1500:]}" for c in group.children)
            raise BenchError(f"{way} @ {rate:g} fps delivered no frame in {window:.1f} s; exited: {dead}\n{logs}")
        result = Result(
            way, rate, len(lat) / window, sum(sizes) / window / 1000, percentile(lat, 0.5), percentile(lat, 0.99),
            cpu, (sum(sizes) / len(sizes) / 1000) if sizes else 0.0,
        )  # fmt: skip
        return result, idle_cpu
    finally:
        group.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd")
    relay = sub.add_parser("relay", help="(internal) the rosbridge-way relay node")
    relay.add_argument("--nats-url", required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", default="15,30")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds at 10 fps, 160x120: checks that both ways deliver frames (make test)")
    parser.add_argument(
        "--dds",
        choices=("large-shm", "default"),
        default="large-shm",
        help="Fast DDS transports: 16 MB shared memory segment (default) or Fast DDS defaults",
    )
    args = parser.parse_args()
    if args.cmd == "relay":
        relay_main(args.nats_url)
        return
    size, idle_s, warmup_s = (640, 480), 5.0, 2.0
    if args.smoke:
        args.seconds, args.rates, size, idle_s, warmup_s = 2.0, "10", (160, 120), 1.0, 1.0

    from robot_platform.launcher.domains import DomainReservation

    reservation = DomainReservation()
    results: list[Result] = []
    idle: dict[float, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-frames-") as tmp:
            for rate in [float(r) for r in args.rates.split(",")]:
                for way in ("frame_publisher", "rosbridge_json"):
                    try:
                        r, idle_cpu = run_case(way, rate, args.seconds, Path(tmp), reservation.domain_id,
                                               args.dds == "large-shm", size, idle_s, warmup_s)  # fmt: skip
                    except BenchError as exc:
                        sys.exit(f"bench/frames.py: {exc}")
                    results.append(r)
                    if idle_cpu is not None:
                        idle[rate] = idle_cpu
                    print(f"  done: {way} @ {rate:g} fps", file=sys.stderr)
    finally:
        reservation.release()

    print(f"\ncamera {size[0]}x{size[1]} rgb8, {args.seconds:g} s windows, one viewer, loopback nats-server, "
          f"DDS {args.dds}")
    print(f"{'rate':>5} {'way':<16} {'fps':>6} {'kB/frame':>9} {'kB/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU %':>6}")
    for r in results:
        print(f"{r.rate:5g} {r.way:<16} {r.fps:6.1f} {r.frame_kb:9.1f} {r.kbps:9.0f} {r.p50_ms:7.1f}"
              f" {r.p99_ms:7.1f} {r.cpu_pct:6.1f}")  # fmt: skip
    print("\nratios (rosbridge_json / frame_publisher):")
    for rate in sorted({r.rate for r in results}):
        ours = next(r for r in results if r.rate == rate and r.way == "frame_publisher")
        theirs = next(r for r in results if r.rate == rate and r.way == "rosbridge_json")
        with contextlib.suppress(ZeroDivisionError):
            print(
                f"  {rate:g} fps: bytes/s x{theirs.kbps / ours.kbps:.1f},"
                f" p50 latency x{theirs.p50_ms / ours.p50_ms:.1f}, p99 latency x{theirs.p99_ms / ours.p99_ms:.1f},"
                f" publisher CPU x{theirs.cpu_pct / ours.cpu_pct:.1f};"
                f" frame_publisher idle (no viewer) CPU {idle.get(rate, float('nan')):.1f} %"
            )


if __name__ == "__main__":
    main()
