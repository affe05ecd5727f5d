"""System test: non-finite and out-of-range command values never reach ROS (hardening issue, item 6).

Real nats-server, real nats_bridge process, real rclpy subscribers, and for the browser path a real
ws_agent process with a WebSocket client. Commands enter ROS in two ways and both are checked:

* a NATS client (a script, or a compromised agent) publishes on robots.r1.cmd.<topic>: the bridge
  refuses NaN / +-inf and integers outside their field's range, counts them as ``out_of_range``
  (health report and Prometheus) and keeps serving; a topic whose ``in`` entry sets
  ``allow_non_finite: true`` receives NaN as sent;
* a browser publishes through ws_agent (rosbridge ``publish``): the same codec check answers the
  browser with an error status naming the field, and nothing reaches NATS or ROS.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import msgpack
import nats
import pytest
import rclpy
from geometry_msgs.msg import Twist
from rclpy.executors import SingleThreadedExecutor
from simple_websocket import Client
from std_msgs.msg import Float64, UInt8

from helpers import REPO, free_port, ros_env, wait_for, wait_port
from robot_platform.messaging.envelope import Envelope
from robot_platform.ws.hashing import hash_secret

WAIT_S = 20.0
SRC = str(REPO / "src" / "robot_platform")

BRIDGE_PARAMS = """
/**/nats_bridge:
  ros__parameters:
    robot_id: r1
    nats_url: {url}
    metrics_port: {metrics_port}
    health_period_s: 0.3
    in:
      names: [cmd_vel, level, gain]
      cmd_vel: {{topic: /cmd_vel, type: geometry_msgs/msg/Twist}}
      level: {{topic: /level, type: std_msgs/msg/UInt8}}
      gain: {{topic: /gain, type: std_msgs/msg/Float64, allow_non_finite: true}}
"""

AGENT_PARAMS = """
/**/ws_agent:
  ros__parameters:
    robot_id: r1
    mode: robot
    port: {port}
    nats_url: {url}
    users_file: {users}
    diagnostics_period_s: 0.5
"""


class Graph:
    """rclpy subscribers of the three command topics, spun in a thread."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("command_values_test")
        self._lock = threading.Lock()
        self.got: dict[str, list[Any]] = {"/cmd_vel": [], "/level": [], "/gain": []}
        for topic, cls in (("/cmd_vel", Twist), ("/level", UInt8), ("/gain", Float64)):
            self.node.create_subscription(cls, topic, lambda m, t=topic: self._on(t, m), 10)
        self.executor = SingleThreadedExecutor(context=self.node.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on(self, topic: str, msg: Any) -> None:
        with self._lock:
            self.got[topic].append(msg)

    def messages(self, topic: str) -> list[Any]:
        with self._lock:
            return list(self.got[topic])

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.thread.join(timeout=5.0)


@pytest.fixture
def graph(ros_domain: int):
    rclpy.init()
    g = Graph()
    try:
        yield g
    finally:
        g.close()
        rclpy.try_shutdown()


def start_bridge(procs: Any, tmp_path: Path, url: str, domain: int) -> tuple[Any, int]:
    metrics_port = free_port()
    params = tmp_path / "bridge.yaml"
    params.write_text(BRIDGE_PARAMS.format(url=url, metrics_port=metrics_port))
    env = ros_env(domain, {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")})
    argv = [sys.executable, "-m", "robot_platform.bridge.node", "--ros-args", "--params-file", str(params)]
    return procs.start("nats_bridge", argv, env=env), metrics_port


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def out_of_range(port: int, subject: str) -> float:
    prefix = f'robot_bridge_in_errors_total{{kind="out_of_range",robot="r1",subject="{subject}"}} '
    for line in metrics(port).splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


def headers(type_name: str) -> dict[str, str]:
    return Envelope(type_name=type_name, msg_id=uuid.uuid4().hex, robot_id="r1").headers()


async def publish_until(nc: Any, subject: str, body: dict, type_name: str, arrived: Any) -> None:
    """Publish a valid command until ROS has it (the first ones may race the bridge's discovery)."""
    deadline = time.monotonic() + WAIT_S
    while not arrived() and time.monotonic() < deadline:
        await nc.publish(subject, msgpack.packb(body), headers=headers(type_name))
        await asyncio.sleep(0.2)
    assert arrived(), f"a valid command on {subject} never reached ROS"


def test_nats_commands_with_bad_numbers_are_refused_and_counted(
    graph: Graph, ros_domain: int, nats_server: Any, procs: Any, tmp_path: Path
) -> None:
    bridge, metrics_port = start_bridge(procs, tmp_path, nats_server.url, ros_domain)
    wait_port(metrics_port, timeout=WAIT_S)

    async def scenario() -> int:
        nc = await nats.connect(nats_server.url)
        try:
            twist = "geometry_msgs/msg/Twist"
            await publish_until(nc, "robots.r1.cmd.cmd_vel", {"linear": {"x": 0.1}}, twist,
                                lambda: graph.messages("/cmd_vel"))  # fmt: skip
            await publish_until(nc, "robots.r1.cmd.level", {"data": 7}, "std_msgs/msg/UInt8",
                                lambda: graph.messages("/level"))  # fmt: skip
            await asyncio.sleep(0.5)  # in-flight valid commands land before counting
            cmd_before, level_before = len(graph.messages("/cmd_vel")), len(graph.messages("/level"))
            for bad in (math.nan, math.inf, -math.inf):
                body = msgpack.packb({"linear": {"x": 0.2}, "angular": {"z": bad}})
                await nc.publish("robots.r1.cmd.cmd_vel", body, headers=headers(twist))
            for bad in (300, -1, 2**40):
                body = msgpack.packb({"data": bad})
                await nc.publish("robots.r1.cmd.level", body, headers=headers("std_msgs/msg/UInt8"))
            # The opted-in topic takes NaN as sent.
            await publish_until(nc, "robots.r1.cmd.gain", {"data": math.nan}, "std_msgs/msg/Float64",
                                lambda: graph.messages("/gain"))  # fmt: skip
            await nc.flush()
            wait_for(lambda: out_of_range(metrics_port, "robots.r1.cmd.cmd_vel") == 3, WAIT_S, "3 refused cmd_vel")
            wait_for(lambda: out_of_range(metrics_port, "robots.r1.cmd.level") == 3, WAIT_S, "3 refused level")
            # After the refusals, a valid command still goes through; none of the bad ones did.
            await publish_until(nc, "robots.r1.cmd.cmd_vel", {"linear": {"x": 0.3}}, twist,
                                lambda: len(graph.messages("/cmd_vel")) > cmd_before)  # fmt: skip
            return level_before
        finally:
            await nc.close()

    level_before = asyncio.run(scenario())
    assert all(math.isfinite(v) for m in graph.messages("/cmd_vel") for v in (m.linear.x, m.angular.z))
    assert [m.data for m in graph.messages("/level")][level_before:] == []
    assert math.isnan(graph.messages("/gain")[0].data)
    assert out_of_range(metrics_port, "robots.r1.cmd.gain") == 0.0
    assert bridge.poll() is None, "bridge died on bad input"
    bridge.terminate()
    assert bridge.wait(timeout=10) == 0


def test_browser_publish_with_non_finite_values_is_refused(
    graph: Graph, ros_domain: int, nats_server: Any, procs: Any, tmp_path: Path
) -> None:
    start_bridge(procs, tmp_path, nats_server.url, ros_domain)
    users = tmp_path / "users.yaml"
    users.write_text(f"users:\n  otto: {{role: operator, secret_hash: '{hash_secret('otto-pw')}'}}\n")
    port = free_port()
    params = tmp_path / "ws_agent.yaml"
    params.write_text(AGENT_PARAMS.format(port=port, url=nats_server.url, users=users))
    env = ros_env(ros_domain, {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")})
    argv = [sys.executable, "-m", "robot_platform.ws.node", "--ros-args", "--params-file", str(params)]
    agent = procs.start("ws_agent", argv, env=env)
    wait_port(port, timeout=WAIT_S)
    ws = Client.connect(f"ws://127.0.0.1:{port}/ws?token=otto:otto-pw")
    try:
        ws.send(json.dumps({"op": "advertise", "topic": "/cmd_vel", "type": "geometry_msgs/msg/Twist"}))

        def valid_arrived() -> bool:
            ws.send(json.dumps({"op": "publish", "topic": "/cmd_vel", "msg": {"linear": {"x": 0.25}}}))
            return bool(graph.messages("/cmd_vel"))

        wait_for(valid_arrived, WAIT_S, "a valid browser command on ROS /cmd_vel", period=0.2)
        # Python's json (and so an attacker's hand-written frame) carries NaN, Infinity and 1e999.
        for i, bad in enumerate(("NaN", "Infinity", "-Infinity", "1e999")):
            ws.send(f'{{"op": "publish", "id": "bad{i}", "topic": "/cmd_vel", "msg": {{"angular": {{"z": {bad}}}}}}}')

        def error_statuses() -> list[dict[str, Any]]:
            found = []
            deadline = time.monotonic() + WAIT_S
            while len(found) < 4 and time.monotonic() < deadline:
                frame = ws.receive(timeout=1.0)
                if isinstance(frame, str):
                    msg = json.loads(frame)
                    if msg.get("op") == "status" and msg.get("level") == "error":
                        found.append(msg)
            return found

        statuses = error_statuses()
        assert len(statuses) == 4, statuses
        assert all("angular.z" in s["msg"] and "not a finite number" in s["msg"] for s in statuses), statuses
        before = len(graph.messages("/cmd_vel"))
        ws.send(json.dumps({"op": "publish", "topic": "/cmd_vel", "msg": {"linear": {"x": 0.5}}}))
        wait_for(lambda: len(graph.messages("/cmd_vel")) > before, WAIT_S, "a valid command after the refusals")
    finally:
        ws.close()
    assert all(math.isfinite(m.angular.z) for m in graph.messages("/cmd_vel"))
    assert agent.poll() is None
