"""Captures as MCAP with real parts: nats-server, robot_sim, robot_agent and the operator CLI.

test_capture_opens_in_mcap_and_rosbags:
  robot_agent buffers /odom and /scan from robot_sim; `robot-platform ops call r1 capture --out x.mcap`
  saves a file that the mcap library (ROS 2 decoder: header.frame_id, pose, ranges decoded) and rosbags'
  AnyReader both open, with the same per-topic counts as the reply; an unknown topic, too long a window
  and a viewer's role are refused with clear errors, and the agent keeps running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.highlevel import AnyReader

from helpers import REPO, ros_env, wait_for

SRC = str(REPO / "src" / "robot_platform")
WAIT_S = 30.0
WINDOW_S = 10.0
ROLES_YAML = """
roles:
  viewer: [list_graph]
  operator: [list_graph, capture]
users:
  alice: operator
  bob: viewer
"""
AGENT_PARAMS = """
/**/robot_agent:
  ros__parameters:
    robot_id: r1
    nats_url: {url}
    announce_period_s: 1.0
    roles_file: {roles}
    capture_topics: [/odom, /scan]
    capture_window_s: {window}
"""


def py_env(domain: int) -> dict[str, str]:
    return ros_env(domain, {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")})


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "robot_platform.cli.main", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)


def start_robot(procs: Any, tmp_path: Path, domain: int, nats_url: str) -> Any:
    roles = tmp_path / "roles.yaml"
    roles.write_text(ROLES_YAML)
    params = tmp_path / "agent.yaml"
    params.write_text(AGENT_PARAMS.format(url=nats_url, roles=roles, window=WINDOW_S))
    procs.start("robot_sim", [sys.executable, "-m", "robot_platform.sim.node", "--ros-args", "-p", "robot_id:=r1"],
                env=py_env(domain))  # fmt: skip
    argv = [sys.executable, "-m", "robot_platform.ops.node", "--ros-args", "--params-file", str(params)]
    return procs.start("robot_agent", argv, env=py_env(domain))


def test_capture_opens_in_mcap_and_rosbags(procs: Any, nats_server: Any, ros_domain: int, tmp_path: Path) -> None:
    agent = start_robot(procs, tmp_path, ros_domain, nats_server.url)
    hub = ["--url", nats_server.url]
    operator = ["--as-user", "alice", "--role", "operator", *hub]

    def buffering() -> bool:
        result = cli("ops", "call", "r1", "list_graph", *operator)
        if result.returncode != 0:
            return False
        rates = {t["name"]: t["rate_hz"] for t in json.loads(result.stdout)["topics"]}
        return bool(rates.get("/odom")) and bool(rates.get("/scan"))

    wait_for(buffering, WAIT_S, "robot_agent buffering /odom and /scan", period=0.5)
    out = tmp_path / "capture.mcap"
    result = cli("ops", "call", "r1", "capture", "--out", str(out), "--args",
                 json.dumps({"topics": ["/odom", "/scan"], "seconds": 3}), *operator)  # fmt: skip
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["format"] == "mcap" and reply["saved_to"] == str(out) and reply["bytes"] == out.stat().st_size

    # The mcap library, with its ROS 2 decoder, reads the schemas from the file itself.
    with out.open("rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == "ros2"
        decoded = [(ch.topic, sc.name, msg) for sc, ch, _, msg in reader.iter_decoded_messages()]
    schemas = {topic: schema for topic, schema, _ in decoded}
    assert schemas == {"/odom": "nav_msgs/msg/Odometry", "/scan": "sensor_msgs/msg/LaserScan"}
    odoms = [m for topic, _, m in decoded if topic == "/odom"]
    scans = [m for topic, _, m in decoded if topic == "/scan"]
    assert len(decoded) == reply["messages"]
    assert len(odoms) >= 15 and len(scans) >= 5, (len(odoms), len(scans))  # 20 Hz and 10 Hz for 3 s, loaded CI
    assert odoms[0].header.frame_id == "odom" and odoms[0].child_frame_id == "base_link"
    assert all(abs(m.pose.pose.orientation.w) <= 1.0 for m in odoms) and odoms[-1].header.stamp.sec > 0
    assert scans[0].header.frame_id == "laser" and len(scans[0].ranges) == 360

    # rosbags opens the same file as a rosbag2 MCAP storage file and deserializes to the right types.
    with AnyReader([out]) as bag:
        counts = {c.topic: c.msgcount for c in bag.connections}
        first = {}
        for connection, _, raw in bag.messages():
            first.setdefault(connection.topic, bag.deserialize(raw, connection.msgtype))
    assert counts == {"/odom": len(odoms), "/scan": len(scans)}
    assert type(first["/odom"]).__msgtype__ == "nav_msgs/msg/Odometry"
    assert (
        first["/odom"].header.frame_id == "odom"
        and first["/odom"].pose.pose.position.x == odoms[0].pose.pose.position.x
    )
    assert type(first["/scan"]).__msgtype__ == "sensor_msgs/msg/LaserScan" and len(first["/scan"].ranges) == 360

    # Bad requests get clear errors; the agent keeps serving.
    unknown = cli("ops", "call", "r1", "capture", "--args", json.dumps({"topics": ["/nope"], "seconds": 1}),
                  *operator)  # fmt: skip
    assert unknown.returncode == 2 and "not buffered here: /nope" in unknown.stderr, unknown.stderr
    too_long = cli("ops", "call", "r1", "capture", "--args",
                   json.dumps({"topics": ["/odom"], "seconds": WINDOW_S + 1}), *operator)  # fmt: skip
    assert too_long.returncode == 2 and "'seconds' must be a number in (0, 10]" in too_long.stderr, too_long.stderr
    viewer = cli("ops", "call", "r1", "capture", "--as-user", "bob", "--role", "viewer", "--args",
                 json.dumps({"topics": ["/odom"], "seconds": 1}), *hub)  # fmt: skip
    assert viewer.returncode == 2 and "not_allowed" in viewer.stderr, viewer.stderr
    assert cli("ops", "call", "r1", "list_graph", *operator).returncode == 0
    assert agent.poll() is None, "robot_agent died"
