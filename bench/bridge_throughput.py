#!/usr/bin/env python3
"""Bridge throughput and latency, in one run: raw rclpy pub->sub, raw nats-py pub->sub, and
ROS -> nats_bridge (a real process) -> NATS subscriber, for std_msgs/String (100 B), nav_msgs/Odometry
and sensor_msgs/Imu.

* max rate: the publisher sends as fast as it can for --seconds; msgs/s is what the subscriber got.
* 1 kHz: the publisher sends at 1 kHz; latency from the source stamp (set at publish, wall clock) to
  delivery, p50/p99. For the bridge the stamp travels in the message (header.stamp, or the String's text).
* bridge CPU: user+system time of the bridge process over the run, as % of one core.

    . scripts/env.sh && PYTHONPATH=src/robot_platform python bench/bridge_throughput.py [--seconds 3]

Uses 127.0.0.1 only, its own ROS_DOMAIN_ID (reserved like the tests) and a nats-server on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))
from helpers import DomainReservation, free_port, wait_port  # noqa: E402

DOMAIN = DomainReservation()
os.environ["ROS_DOMAIN_ID"] = str(DOMAIN.domain_id)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import nats  # noqa: E402
import rclpy  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Imu  # noqa: E402
from std_msgs.msg import String  # noqa: E402

QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
TYPES = {"String100": ("std_msgs/msg/String", String), "Odometry": ("nav_msgs/msg/Odometry", Odometry),
         "Imu": ("sensor_msgs/msg/Imu", Imu)}  # fmt: skip


def make(kind: str, now_ns: int) -> Any:
    if kind == "String100":
        return String(data=f"{now_ns:020d}".ljust(100, "x"))
    msg = TYPES[kind][1]()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now_ns, 1_000_000_000)
    msg.header.frame_id = "bench"
    return msg


def stamp_ns(kind: str, msg: Any) -> int:
    if kind == "String100":
        return int(msg.data[:20])
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def publish(pub: Any, kind: str, seconds: float, rate_hz: float | None) -> int:
    """Publish for ``seconds``; at ``rate_hz`` (absolute schedule) or as fast as possible."""
    n = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        if rate_hz:
            target = start + n / rate_hz
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        pub.publish(make(kind, time.time_ns()))
        n += 1
    del elapsed
    return n


class RosSide:
    def __init__(self) -> None:
        rclpy.init()
        self.node = rclpy.create_node("bench_bridge")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2)
        self.node.destroy_node()
        rclpy.try_shutdown()


def raw_rclpy(ros: RosSide, kind: str, seconds: float, rate: float | None) -> dict[str, float]:
    cls = TYPES[kind][1]
    lat: list[float] = []
    topic = f"/bench_raw_{kind.lower()}_{'max' if rate is None else int(rate)}"
    sub = ros.node.create_subscription(
        cls, topic, lambda m: lat.append((time.time_ns() - stamp_ns(kind, m)) / 1e6), QOS
    )
    pub = ros.node.create_publisher(cls, topic, QOS)
    deadline = time.monotonic() + 5
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    sent = publish(pub, kind, seconds, rate)
    time.sleep(0.5)
    ros.node.destroy_subscription(sub)
    ros.node.destroy_publisher(pub)
    return {"sent": sent, "recv": len(lat), "rate": len(lat) / seconds, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99)}


async def raw_nats(url: str, kind: str, seconds: float, rate: float | None) -> dict[str, float]:
    payload = b"x" * 100
    nc_sub, nc_pub = await nats.connect(url), await nats.connect(url)
    lat: list[float] = []

    async def cb(msg: Any) -> None:
        lat.append((time.time_ns() - int(msg.data[:20])) / 1e6)

    await nc_sub.subscribe("bench.raw", cb=cb, pending_msgs_limit=1_000_000)
    await nc_sub.flush()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        if rate:
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await nc_pub.publish("bench.raw", f"{time.time_ns():020d}".encode() + payload[20:])
        n += 1
        if n % 256 == 0:
            await asyncio.sleep(0)
    await nc_pub.flush()
    await asyncio.sleep(0.5)
    await nc_sub.close()
    await nc_pub.close()
    return {"sent": n, "recv": len(lat), "rate": len(lat) / seconds, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99)}


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def via_bridge(
    ros: RosSide, url: str, bridge_pid: int, kind: str, seconds: float, rate: float | None
) -> dict[str, float]:
    cls = TYPES[kind][1]
    topic = f"/bench_{kind.lower()}"
    subject = f"robots.bench.ros.bench_{kind.lower()}"
    lat: list[float] = []
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = threading.Event()

    async def consume() -> None:
        nc = await nats.connect(url)

        async def cb(msg: Any) -> None:
            sec, nsec = msg.headers["Ros-Stamp"].split(".")
            lat.append((time.time_ns() - (int(sec) * 1_000_000_000 + int(nsec))) / 1e6)

        async def cb_str(msg: Any) -> None:
            import msgpack

            lat.append((time.time_ns() - int(msgpack.unpackb(msg.data)["data"][:20])) / 1e6)

        await nc.subscribe(subject, cb=cb_str if kind == "String100" else cb, pending_msgs_limit=1_000_000)
        await nc.flush()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await nc.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(consume(),), daemon=True)
    thread.start()
    ready.wait(10)
    pub = ros.node.create_publisher(cls, topic, QOS)
    deadline = time.monotonic() + 10
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    cpu0, t0 = cpu_s(bridge_pid), time.monotonic()
    sent = publish(pub, kind, seconds, rate)
    time.sleep(0.5)
    cpu = (cpu_s(bridge_pid) - cpu0) / (time.monotonic() - t0) * 100
    stop.set()
    thread.join(5)
    ros.node.destroy_publisher(pub)
    return {"sent": sent, "recv": len(lat), "rate": len(lat) / seconds, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
            "cpu": cpu}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--smoke", action="store_true",
                        help="0.5 s, String100 at 1 kHz only (make test): fails if a path delivers nothing")
    args = parser.parse_args()
    if args.smoke:
        args.seconds = 0.5
    empty: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_bridge_"))
    port = free_port()
    server = subprocess.Popen([shutil.which("nats-server"), "-a", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    bridge = None
    ros = None
    try:
        wait_port(port)
        url = f"nats://127.0.0.1:{port}"
        names = list(TYPES)
        lines = [
            "/**/nats_bridge:", "  ros__parameters:", "    robot_id: bench", f"    nats_url: {url}",
            "    events_stream: false", "    outbox_capacity: 100000", "    out:",
            f"      names: [{', '.join(n.lower() for n in names)}]",
        ]  # fmt: skip
        for n in names:
            lines.append(f"      {n.lower()}: {{topic: /bench_{n.lower()}, type: {TYPES[n][0]}, depth: 1000}}")
        params = tmp / "bridge.yaml"
        params.write_text("\n".join(lines) + "\n")
        src = str(REPO / "src" / "robot_platform")
        env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
        argv = [sys.executable, "-m", "robot_platform.bridge.node", "--ros-args", "--params-file", str(params)]
        bridge = subprocess.Popen(argv, env=env, stdout=(tmp / "bridge.log").open("w"), stderr=subprocess.STDOUT)
        ros = RosSide()
        time.sleep(2.0)
        print(f"seconds per run: {args.seconds}, cores: {os.cpu_count()}, bridge log: {tmp / 'bridge.log'}")
        print(
            f"{'message':<10} {'path':<12} {'mode':<6} {'sent':>7} {'recv':>7} {'msg/s':>8} {'p50 ms':>7} "
            f"{'p99 ms':>7} {'bridge CPU%':>11}"
        )
        for kind in names[:1] if args.smoke else names:
            for mode, rate in (("1kHz", 1000.0),) if args.smoke else (("max", None), ("1kHz", 1000.0)):
                r = raw_rclpy(ros, kind, args.seconds, rate)
                n = asyncio.run(raw_nats(url, kind, args.seconds, rate))
                b = via_bridge(ros, url, bridge.pid, kind, args.seconds, rate)
                for path, res in (("raw rclpy", r), ("raw nats-py", n), ("ROS->bridge", b)):
                    if not res["recv"]:
                        empty.append(f"{kind} {path} {mode}")
                    cpu = f"{res['cpu']:.0f}" if "cpu" in res else ""
                    print(f"{kind:<10} {path:<12} {mode:<6} {res['sent']:>7} {res['recv']:>7} {res['rate']:>8.0f} "
                          f"{res['p50']:>7.2f} {res['p99']:>7.2f} {cpu:>11}")  # fmt: skip
                ratio = b["rate"] / max(r["rate"], 1e-9)
                print(f"{kind:<10} {'bridge/rclpy':<12} {mode:<6} {'':>7} {'':>7} {ratio:>8.2f}")
    finally:
        if ros is not None:
            ros.close()
        for proc in (bridge, server):
            if proc is not None:
                proc.send_signal(2)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        DOMAIN.release()
    if empty:
        sys.exit(f"bench/bridge_throughput.py: delivered nothing: {', '.join(empty)} (log {tmp / 'bridge.log'})")


if __name__ == "__main__":
    main()
