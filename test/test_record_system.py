"""The fleet recorder with real parts: nats-server, robot_sim, nats_bridge and `robot-platform record`.

test_record_bounded_by_time_bytes_and_signal:
  robot_sim's /odom, /scan and /robot_state go through a real nats_bridge onto NATS; three recordings run
  side by side: one stopped by --max-seconds (read back with the mcap ROS 2 decoder and with rosbags,
  topics /robots/r1/..., with an alert published the way health_monitor_tree does it (codec + envelope on
  robots.r1.alerts) on /robots/r1/alerts, counts as reported, while a rogue client publishes envelope-less and malformed
  messages on the same subjects: counted as rejected, the recording goes on), one stopped by --max-bytes
  (message bytes within the bound), one stopped by SIGINT (file finished and readable). An existing
  --out file is refused, never overwritten; a bad topic or too long a duration is refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import msgpack
import nats
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.highlevel import AnyReader

from helpers import REPO, ros_env, wait_for
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.envelope import Envelope

SRC = str(REPO / "src" / "robot_platform")
WAIT_S = 30.0
PARAMS = """
/**/nats_bridge:
  ros__parameters:
    robot_id: r1
    nats_url: {url}
    events_stream: false
    out:
      names: [odom, scan, state]
      odom: {{topic: /odom, type: nav_msgs/msg/Odometry, max_rate_hz: 20.0}}
      scan: {{topic: /scan, type: sensor_msgs/msg/LaserScan, max_rate_hz: 5.0, reliability: best_effort}}
      state: {{topic: /robot_state, type: robot_platform_interfaces/msg/RobotState}}
/**/robot_sim:
  ros__parameters:
    robot_id: r1
    odom_rate_hz: 20.0
    imu_rate_hz: 1.0
    scan_rate_hz: 5.0
"""
TOPICS = "/odom,/scan,/robot_state"


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def record(url: str, *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "robot_platform.cli.main", "record", "--url", url, "--robots", "r1", *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


def finish(proc: subprocess.Popen[str], timeout: float = 60.0) -> tuple[int, dict[str, Any], str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, (json.loads(out) if out.strip() else {}), err


def recorder_out_msgs(monitor_url: str) -> int:
    with urllib.request.urlopen(f"{monitor_url}/connz?subs=1", timeout=2) as response:
        conns = json.loads(response.read()).get("connections") or []
    return sum(c.get("out_msgs", 0) for c in conns if c.get("name") == "robot-platform-record")


def rogue_publisher(url: str, stop: threading.Event) -> None:
    """Publishes what the recorder must reject on the subjects it records, until ``stop``."""

    async def run() -> None:
        nc = await nats.connect(url)
        headers = Envelope(type_name="nav_msgs/msg/Odometry", msg_id="x", robot_id="r1").headers()
        while not stop.is_set():
            await nc.publish("robots.r1.ros.odom", b"no envelope")
            bad = {**headers, "Nats-Msg-Id": uuid.uuid4().hex}
            await nc.publish("robots.r1.ros.odom", msgpack.packb({"pose": "not a pose"}), headers=bad)
            unknown = {**headers, "Nats-Msg-Id": uuid.uuid4().hex, "Ros-Type": "nope/msg/Nothing"}
            await nc.publish("robots.r1.ros.scan", b"\xc1", headers=unknown)
            await asyncio.sleep(0.1)
        await nc.close()

    asyncio.run(run())


def publish_alert(url: str) -> None:
    """One alert on robots.r1.alerts, encoded as health_monitor_tree encodes it (codec + envelope)."""
    from robot_platform_interfaces.msg import Alert

    async def run() -> None:
        nc = await nats.connect(url)
        alert = Alert(robot_id="r1", alert_id=uuid.uuid4().hex, code="SPEED_DROP", severity=Alert.SEVERITY_ERROR)
        headers = Envelope(type_name="robot_platform_interfaces/msg/Alert", msg_id=uuid.uuid4().hex, robot_id="r1")
        await nc.publish("robots.r1.alerts", Codec().encode(alert), headers=headers.headers())
        await nc.flush()
        await nc.close()

    asyncio.run(run())


def test_record_bounded_by_time_bytes_and_signal(ros_domain: int, nats_server: Any, procs: Any, tmp_path: Path) -> None:
    params = tmp_path / "robot.yaml"
    params.write_text(PARAMS.format(url=nats_server.url))
    ros = ros_env(ros_domain, {"PYTHONPATH": env()["PYTHONPATH"]})
    for name, module in (("robot_sim", "robot_platform.sim.node"), ("nats_bridge", "robot_platform.bridge.node")):
        procs.start(name, [sys.executable, "-m", module, "--ros-args", "--params-file", str(params)], env=ros)

    async def bridged() -> set[str]:
        nc = await nats.connect(nats_server.url)
        seen: set[str] = set()

        async def cb(msg: Any) -> None:
            seen.add(msg.subject)

        await nc.subscribe("robots.r1.ros.>", cb=cb)
        for _ in range(int(WAIT_S / 0.1)):
            if {"robots.r1.ros.odom", "robots.r1.ros.scan", "robots.r1.ros.robot_state"} <= seen:
                break
            await asyncio.sleep(0.1)
        await nc.close()
        return seen

    assert "robots.r1.ros.robot_state" in asyncio.run(bridged()), "bridge never published the topics"

    # Refused before anything starts: bad topic, too long, existing file.
    existing = tmp_path / "exists.mcap"
    existing.write_bytes(b"keep me")
    for args, message in (
        (["--topics", "/odom/*", "--max-seconds", "1"], "record: robots/topics"),
        (["--topics", "/odom", "--max-seconds", "100000"], "record: max_seconds"),
        (["--topics", "/odom", "--max-seconds", "1", "--out", str(existing)], "exists; choose another name"),
    ):
        code, _, err = finish(record(nats_server.url, *args))
        assert code == 2 and message in err, (args, err)
    assert existing.read_bytes() == b"keep me"

    by_time, by_bytes, by_signal = (tmp_path / f"{n}.mcap" for n in ("time", "bytes", "signal"))
    stop_rogue = threading.Event()
    rogue = threading.Thread(target=rogue_publisher, args=(nats_server.url, stop_rogue), daemon=True)
    timed = record(nats_server.url, "--topics", TOPICS, "--alerts", "--max-seconds", "4", "--out", str(by_time))
    capped = record(nats_server.url, "--topics", "/odom,/scan", "--max-bytes", "20K", "--max-seconds", "60",
                    "--out", str(by_bytes))  # fmt: skip
    interrupted = record(nats_server.url, "--topics", "/odom", "--max-seconds", "120", "--out", str(by_signal))
    rogue.start()
    try:
        wait_for(lambda: recorder_out_msgs(nats_server.monitor_url) >= 100, WAIT_S, "recorders receiving")
        publish_alert(nats_server.url)
        interrupted.send_signal(signal.SIGINT)
        code, summary, err = finish(interrupted)
        assert code == 0 and summary["stopped_by"] == "signal", err
        with by_signal.open("rb") as f:
            assert sum(1 for _ in make_reader(f).iter_messages()) == summary["messages"] > 0

        code, summary, err = finish(capped)
        assert code == 0 and summary["stopped_by"] == "max_bytes", err
        assert 10 * 1024 < summary["message_bytes"] <= 20 * 1024, summary

        code, summary, err = finish(timed)
    finally:
        stop_rogue.set()
        rogue.join(timeout=10)
    assert code == 0 and summary["stopped_by"] == "max_seconds", err
    assert summary["rejected"].get("EnvelopeError", 0) > 0 and summary["rejected"].get("UnknownTypeError", 0) > 0
    assert sum(n for k, n in summary["rejected"].items() if k not in ("EnvelopeError", "UnknownTypeError")) > 0
    counts = {topic: info["messages"] for topic, info in summary["topics"].items()}
    assert set(counts) == {"/robots/r1/odom", "/robots/r1/scan", "/robots/r1/robot_state", "/robots/r1/alerts"}
    assert counts["/robots/r1/alerts"] == 1 and summary["silent"] == [], summary
    assert counts["/robots/r1/odom"] >= 20 and counts["/robots/r1/scan"] >= 5, counts

    with by_time.open("rb") as f:
        decoded = [(ch.topic, sc.name, m) for sc, ch, _, m in
                   make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages()]  # fmt: skip
    assert {(t, s) for t, s, _ in decoded} == {
        ("/robots/r1/odom", "nav_msgs/msg/Odometry"),
        ("/robots/r1/scan", "sensor_msgs/msg/LaserScan"),
        ("/robots/r1/robot_state", "robot_platform_interfaces/msg/RobotState"),
        ("/robots/r1/alerts", "robot_platform_interfaces/msg/Alert"),
    }
    assert next(m for t, _, m in decoded if t == "/robots/r1/alerts").code == "SPEED_DROP"
    odom = next(m for t, _, m in decoded if t == "/robots/r1/odom")
    scan = next(m for t, _, m in decoded if t == "/robots/r1/scan")
    assert odom.header.frame_id == "odom" and odom.child_frame_id == "base_link"
    assert scan.header.frame_id == "laser" and len(scan.ranges) == 360

    with AnyReader([by_time]) as bag:
        assert {c.topic: c.msgcount for c in bag.connections} == counts
        connection, _, raw = next(bag.messages(connections=[c for c in bag.connections if c.topic.endswith("odom")]))
        replayed = bag.deserialize(raw, connection.msgtype)
    assert type(replayed).__msgtype__ == "nav_msgs/msg/Odometry" and replayed.header.frame_id == "odom"
