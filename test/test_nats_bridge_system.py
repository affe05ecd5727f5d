"""System test of nats_bridge: real rclpy graph, real bridge process, real nats-server, nats-py client.

ROS /odom -> bridge -> NATS robots.r1.ros.odom decoded without ROS knowledge of the bridge; an
allowlisted command from NATS reaches a ROS subscriber; non-allowlisted, wrong-type, malformed,
unknown-field, oversized and duplicate commands are rejected and counted while the bridge keeps running;
a rate-limited topic keeps the latest message; a topic matching out.allow is discovered while running.
Services: a plain nats-py request on robots.r1.srv.robot_sim.estop e-stops the real robot_sim (odometry
stops despite cmd_vel); refused, malformed and unserved calls come back at once with an Rp-Error header.
"""

from __future__ import annotations

import asyncio
import os
import shutil
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
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float32, Int32

from helpers import REPO, free_port, ros_env, wait_for, wait_port
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.envelope import Envelope

MAX_PAYLOAD = 4096
WAIT_S = 20.0

PARAMS = """
/**/nats_bridge:
  ros__parameters:
    robot_id: r1
    nats_url: {url}
    max_payload_bytes: {max_payload}
    metrics_port: {metrics_port}
    health_period_s: 0.3
    discovery_period_s: 0.5
    out:
      names: [odom, counter]
      odom: {{topic: /odom, type: nav_msgs/msg/Odometry}}
      counter: {{topic: /counter, type: std_msgs/msg/Int32, max_rate_hz: 4.0, depth: 100}}
      allow: ["/sensors/**"]
      deny: ["/sensors/private"]
      pattern_reliability: best_effort
      pattern_max_rate_hz: 0.0
    in:
      names: [cmd_vel]
      cmd_vel: {{topic: /cmd_vel, type: geometry_msgs/msg/Twist}}
"""


def command_headers(type_name: str = "geometry_msgs/msg/Twist", msg_id: str | None = None) -> dict[str, str]:
    return Envelope(type_name=type_name, msg_id=msg_id or uuid.uuid4().hex, robot_id="r1").headers()


async def until(predicate: Any, what: str, timeout: float = WAIT_S, period: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        await asyncio.sleep(period)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Graph:
    """In-process ROS side: publishers of /odom, /counter, /sensors/*, a subscriber of /cmd_vel."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("bridge_system_test")
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.odom_pub = self.node.create_publisher(Odometry, "/odom", 10)
        self.counter_pub = self.node.create_publisher(Int32, "/counter", reliable)
        self.temp_pub = self.node.create_publisher(Float32, "/sensors/temp", 10)
        self.private_pub = self.node.create_publisher(Float32, "/sensors/private", 10)
        self.cmds: list[Twist] = []
        self._lock = threading.Lock()
        self.node.create_subscription(Twist, "/cmd_vel", self._on_cmd, 10)
        self.executor = SingleThreadedExecutor(context=self.node.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_cmd(self, msg: Twist) -> None:
        with self._lock:
            self.cmds.append(msg)

    def commands(self) -> list[Twist]:
        with self._lock:
            return list(self.cmds)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.thread.join(timeout=5.0)


class Inbox:
    """Collects NATS messages per subject."""

    def __init__(self) -> None:
        self.by_subject: dict[str, list[Any]] = {}

    async def cb(self, msg: Any) -> None:
        self.by_subject.setdefault(msg.subject, []).append(msg)

    def get(self, subject: str) -> list[Any]:
        return self.by_subject.get(subject, [])


def health_values(msg: Any) -> dict[str, str]:
    body = msgpack.unpackb(msg.data)
    return {kv["key"]: kv["value"] for kv in body["status"][0]["values"]}


@pytest.fixture
def ros_context(ros_domain: int):
    rclpy.init()
    try:
        yield ros_domain
    finally:
        rclpy.try_shutdown()


def start_bridge(procs: Any, tmp_path: Path, url: str, domain: int, metrics_port: int) -> Any:
    params = tmp_path / "bridge.yaml"
    params.write_text(PARAMS.format(url=url, max_payload=MAX_PAYLOAD, metrics_port=metrics_port))
    src = str(REPO / "src" / "robot_platform")
    env = ros_env(domain, {"PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")})
    argv = [sys.executable, "-m", "robot_platform.bridge.node", "--ros-args", "--params-file", str(params)]
    return procs.start("nats_bridge", argv, env=env)


def test_bridge_round_trip_and_rejections(ros_context: int, nats_server: Any, procs: Any, tmp_path: Path) -> None:
    metrics_port = free_port()
    bridge = start_bridge(procs, tmp_path, nats_server.url, ros_context, metrics_port)
    graph = Graph()
    try:
        asyncio.run(scenario(graph, nats_server.url, bridge))
    finally:
        graph.close()
    # The same counters on the Prometheus endpoint (127.0.0.1 only).
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'robot_bridge_in_errors_total{kind="malformed",robot="r1",subject="robots.r1.cmd.cmd_vel"} 2.0' in text
    assert 'robot_bridge_in_errors_total{kind="not_allowed",robot="r1",subject="<other>"} 1.0' in text
    assert 'robot_bridge_link_up{robot="r1"} 1.0' in text
    # Clean stop on SIGTERM, like a supervisor would do it.
    bridge.terminate()
    assert bridge.wait(timeout=10) is not None


async def scenario(graph: Graph, url: str, bridge: Any) -> None:
    codec = Codec()
    nc = await nats.connect(url)
    inbox = Inbox()
    await nc.subscribe("robots.r1.>", cb=inbox.cb)
    try:
        await until(lambda: inbox.get("robots.r1.health.nats_bridge"), "the bridge's health report")

        # ---- ROS -> NATS: odometry, decoded by a client that only has the envelope and msgpack.
        odom = Odometry()
        odom.header.frame_id = "odom"
        odom.header.stamp.sec = 1234
        odom.header.stamp.nanosec = 5
        odom.child_frame_id = "base_link"
        odom.pose.pose.position.x = 1.25
        odom.pose.covariance[0] = 0.5
        odom.twist.twist.angular.z = -0.3

        def odom_arrived() -> bool:
            graph.odom_pub.publish(odom)
            return len(inbox.get("robots.r1.ros.odom")) >= 3

        await until(odom_arrived, "odometry on robots.r1.ros.odom", period=0.1)
        first, second = inbox.get("robots.r1.ros.odom")[:2]
        env = Envelope.from_headers(first.subject, first.headers)
        assert env.type_name == "nav_msgs/msg/Odometry"
        assert env.topic == "/odom" and env.robot_id == "r1"
        assert env.type_hash.startswith("RIHS01_")
        assert env.stamp == "1234.000000005"
        assert Envelope.from_headers(second.subject, second.headers).seq == env.seq + 1
        assert first.headers["Nats-Msg-Id"] != second.headers["Nats-Msg-Id"]
        plain = msgpack.unpackb(first.data)
        assert plain["pose"]["pose"]["position"]["x"] == 1.25
        assert plain["header"]["stamp"] == {"sec": 1234, "nanosec": 5}
        assert len(plain["pose"]["covariance"]) == 36
        assert codec.decode(Odometry, first.data) == odom

        # ---- NATS -> ROS: allowlisted command.
        twist = {"linear": {"x": 0.4, "y": 0.0, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": 0.1}}

        async def send_valid() -> None:
            await nc.publish("robots.r1.cmd.cmd_vel", msgpack.packb(twist), headers=command_headers())

        async def command_arrives() -> None:
            deadline = time.monotonic() + WAIT_S
            while not graph.commands() and time.monotonic() < deadline:
                await send_valid()
                await asyncio.sleep(0.2)

        await command_arrives()
        assert graph.commands(), "allowlisted command never reached ROS"
        cmd = graph.commands()[-1]
        assert cmd.linear.x == 0.4 and cmd.angular.z == 0.1
        await asyncio.sleep(0.5)  # let in-flight valid commands land before counting
        valid_count = len(graph.commands())

        # ---- rejected commands: each kind counted, none reaches ROS.
        dup_id = uuid.uuid4().hex
        bad = [
            ("robots.r1.cmd.secret", msgpack.packb(twist), command_headers()),  # not allowlisted
            ("robots.r1.cmd.cmd_vel", msgpack.packb({"data": "x"}), command_headers("std_msgs/msg/String")),
            ("robots.r1.cmd.cmd_vel", b"\xc1\x00garbage", command_headers()),  # malformed msgpack
            ("robots.r1.cmd.cmd_vel", msgpack.packb({"linear": {"x": "fast"}}), command_headers()),
            ("robots.r1.cmd.cmd_vel", msgpack.packb({"turbo": True}), command_headers()),
            ("robots.r1.cmd.cmd_vel", msgpack.packb({"linear": {"x": 1.0}, "pad": "x" * 5000}), command_headers()),
            ("robots.r1.cmd.cmd_vel", msgpack.packb([1, 2, 3]), command_headers()),  # not a map
            ("robots.r1.cmd.cmd_vel", msgpack.packb(twist), None),  # no envelope
        ]
        for subject, data, headers in bad:
            await nc.publish(subject, data, headers=headers)
        await nc.publish("robots.r1.cmd.cmd_vel", msgpack.packb(twist), headers=command_headers(msg_id=dup_id))
        await nc.publish("robots.r1.cmd.cmd_vel", msgpack.packb(twist), headers=command_headers(msg_id=dup_id))
        await nc.flush()

        expected = {
            "errors.not_allowed": 3,  # non-allowlisted subject, wrong type, no headers
            "errors.malformed": 2,
            "errors.wrong_type": 1,
            "errors.unknown_field": 1,
            "errors.oversized": 1,
            "duplicates": 1,
        }

        def counted() -> dict[str, str] | None:
            reports = inbox.get("robots.r1.health.nats_bridge")
            values = health_values(reports[-1])
            ok = all(int(values.get(k, "0")) >= n for k, n in expected.items())
            return values if ok else None

        values = await until(counted, f"rejection counters {expected}")
        for key, n in expected.items():
            assert int(values[key]) == n, (key, values[key])
        # Exactly one of the two duplicate-id commands went through, none of the bad ones.
        await until(lambda: len(graph.commands()) == valid_count + 1, "the first duplicate-id command")
        assert bridge.poll() is None, "bridge died on bad input"

        # ---- still working after all that.
        before = len(graph.commands())
        await send_valid()
        await until(lambda: len(graph.commands()) > before, "a valid command after rejections")

        # ---- rate limit: 4 Hz max, keep latest.
        for i in range(1, 41):
            graph.counter_pub.publish(Int32(data=i))
            await asyncio.sleep(0.01)

        def last_counter() -> int | None:
            msgs = inbox.get("robots.r1.ros.counter")
            return msgpack.unpackb(msgs[-1].data)["data"] if msgs else None

        await until(lambda: last_counter() == 40, "the latest counter value (keep latest)")
        n_counter = len(inbox.get("robots.r1.ros.counter"))
        assert 1 <= n_counter <= 5, f"{n_counter} messages went out in ~0.5 s at max 4 Hz"

        def all_counted() -> dict[str, str] | None:
            # A report taken after the bridge handled all 40 (an older one may predate the last ones).
            v = health_values(inbox.get("robots.r1.health.nats_bridge")[-1])
            return v if int(v.get("out/counter.out", 0)) + int(v.get("out/counter.dropped_rate", 0)) == 40 else None

        values = await until(all_counted, "a health report counting all 40 counter messages, sent or dropped")
        assert int(values["out/counter.out"]) == n_counter
        assert int(values["out/counter.dropped_rate"]) + n_counter >= 30

        # ---- discovery of a topic matching out.allow (and not of a denied one).
        def temp_arrived() -> bool:
            graph.temp_pub.publish(Float32(data=21.5))
            graph.private_pub.publish(Float32(data=1.0))
            return bool(inbox.get("robots.r1.ros.sensors.temp"))

        await until(temp_arrived, "discovered /sensors/temp on NATS", period=0.2)
        assert msgpack.unpackb(inbox.get("robots.r1.ros.sensors.temp")[0].data) == {"data": 21.5}
        assert not inbox.get("robots.r1.ros.sensors.private")
    finally:
        await nc.close()


def test_bridge_starts_without_nats_and_connects_later(ros_context: int, procs: Any, tmp_path: Path) -> None:
    """NATS down at start: the node comes up, retries with backoff, and bridges once the server appears."""
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    bridge = start_bridge(procs, tmp_path, url, ros_context, 0)
    graph = Graph()
    try:
        # No server at all until the bridge has failed to connect at least once (on this shared machine its
        # start-up alone can take over 5 s, so a fixed sleep raced it); it must stay up through that.
        wait_for(lambda: "cannot connect to NATS" in procs.child("nats_bridge").output(), 60.0,
                 "the bridge's first failed connection attempt", period=0.2)  # fmt: skip
        assert bridge.poll() is None, "bridge exited while NATS was unreachable"
        conf = tmp_path / "late.conf"
        conf.write_text(f"listen: 127.0.0.1:{port}\njetstream {{ store_dir: {str(tmp_path / 'js')!r} }}\n")
        procs.start("late-nats", [shutil.which("nats-server"), "-c", str(conf)])
        wait_port(port)

        async def run() -> None:
            nc = await nats.connect(url)
            inbox = Inbox()
            await nc.subscribe("robots.r1.>", cb=inbox.cb)
            odom = Odometry()
            odom.child_frame_id = "late"

            def arrived() -> bool:
                graph.odom_pub.publish(odom)
                return bool(inbox.get("robots.r1.ros.odom"))

            await until(arrived, "odometry after NATS came up", period=0.2)

            # Reports made while NATS was down were kept in the outbox and arrive first; wait for a fresh one.
            def fresh_report() -> dict[str, str] | None:
                reports = [health_values(m) for m in inbox.get("robots.r1.health.nats_bridge")]
                return next((v for v in reports if v["connects"] == "1"), None)

            values = await until(fresh_report, "a health report made after connecting")
            assert int(values["connect_failures"]) >= 1 and values["link_state"] == "connected"
            js = nc.jetstream()
            assert (await js.stream_info("EVENTS_r1")).config.subjects == ["robots.r1.alerts", "robots.r1.deploy.>"]
            await nc.close()

        asyncio.run(run())
    finally:
        graph.close()


# ---------------------------------------------------------------------------------------- services
SERVICE_PARAMS = """
/**/nats_bridge:
  ros__parameters:
    robot_id: r1
    nats_url: {url}
    health_period_s: 0.3
    out:
      names: [odom]
      odom: {{topic: /odom, type: nav_msgs/msg/Odometry}}
    in:
      names: [cmd_vel]
      cmd_vel: {{topic: /cmd_vel, type: geometry_msgs/msg/Twist}}
    services:
      names: [estop, pause, ack]
      estop: {{service: /robot_sim/estop, type: std_srvs/srv/SetBool, timeout_s: 2.0}}
      pause: {{service: /robot_sim/pause, type: std_srvs/srv/SetBool, timeout_s: 2.0}}
      ack: {{service: /health_monitor_tree/acknowledge_alert,
             type: robot_platform_interfaces/srv/AcknowledgeAlert, timeout_s: 1.0}}
/**/robot_sim:
  ros__parameters:
    robot_id: r1
    odom_rate_hz: 20.0
    imu_rate_hz: 1.0
    scan_rate_hz: 1.0
"""
ESTOP = "robots.r1.srv.robot_sim.estop"


def test_service_call_estops_real_sim(ros_domain: int, nats_server: Any, procs: Any, tmp_path: Path) -> None:
    """A plain nats-py request e-stops the real simulator through the bridge; errors come back as Rp-Error."""
    params = tmp_path / "robot.yaml"
    params.write_text(SERVICE_PARAMS.format(url=nats_server.url))
    src = str(REPO / "src" / "robot_platform")
    env = ros_env(ros_domain, {"PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")})
    for name, module in (("robot_sim", "robot_platform.sim.node"), ("nats_bridge", "robot_platform.bridge.node")):
        procs.start(name, [sys.executable, "-m", module, "--ros-args", "--params-file", str(params)], env=env)
    asyncio.run(service_scenario(nats_server.url))


async def service_scenario(url: str) -> None:
    nc = await nats.connect(url)
    inbox = Inbox()
    await nc.subscribe("robots.r1.>", cb=inbox.cb)
    forward = {"linear": {"x": 0.5}}
    try:
        await until(lambda: inbox.get("robots.r1.health.nats_bridge"), "the bridge's health report")

        def odom() -> dict[str, Any]:
            return msgpack.unpackb(inbox.get("robots.r1.ros.odom")[-1].data)

        async def drive_until(predicate: Any, what: str) -> None:
            """Keep commanding forward motion (10 Hz, like a teleop) until ``predicate`` holds."""
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                await nc.publish("robots.r1.cmd.cmd_vel", msgpack.packb(forward), headers=command_headers())
                await asyncio.sleep(0.1)
                if inbox.get("robots.r1.ros.odom") and predicate():
                    return
            raise TimeoutError(f"timed out waiting for {what}")

        await drive_until(lambda: odom()["twist"]["twist"]["linear"]["x"] > 0.4, "the robot moving under cmd_vel")

        # The service may be discovered by the bridge's client a moment after the sim starts: retry
        # only on 'unavailable', which is itself an answer (never a hang).
        async def call(subject: str, body: bytes, timeout: float = 5.0) -> Any:
            return await nc.request(subject, body, timeout=timeout)

        deadline = time.monotonic() + WAIT_S
        while True:
            reply = await call(ESTOP, msgpack.packb({"data": True}))
            error = (reply.headers or {}).get("Rp-Error", "")
            if not error.startswith("unavailable") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert not error, error
        assert msgpack.unpackb(reply.data) == {"success": True, "message": "e-stop latched"}
        assert reply.headers["Ros-Type"] == "std_srvs/srv/SetBool"

        # Despite cmd_vel still coming in at 10 Hz, odometry shows the robot stopped.
        n0 = len(inbox.get("robots.r1.ros.odom"))
        for _ in range(15):
            await nc.publish("robots.r1.cmd.cmd_vel", msgpack.packb(forward), headers=command_headers())
            await asyncio.sleep(0.1)
        after = [msgpack.unpackb(m.data) for m in inbox.get("robots.r1.ros.odom")[n0 + 5 :]]
        assert len(after) >= 10, "odometry stopped flowing"
        assert all(o["twist"]["twist"]["linear"]["x"] == 0.0 for o in after)
        xs = [o["pose"]["pose"]["position"]["x"] for o in after]
        assert max(xs) - min(xs) < 1e-6, f"robot kept moving while e-stopped: {xs[0]} -> {xs[-1]}"

        # Refusals answer at once with Rp-Error and never reach ROS.
        reply = await call("robots.r1.srv.robot_sim.inject_fault", msgpack.packb({"fault": "x"}))
        assert reply.headers["Rp-Error"].startswith("not_allowed: ") and reply.data == b""
        reply = await call(ESTOP, b"\xc1garbage")
        assert reply.headers["Rp-Error"].startswith("malformed: ")
        reply = await call(ESTOP, msgpack.packb({"data": "yes"}))
        assert reply.headers["Rp-Error"].startswith("wrong_type: ")
        reply = await call(ESTOP, msgpack.packb({"data": True}), timeout=5.0)  # still fine after the refusals
        assert msgpack.unpackb(reply.data)["success"] is True
        # health_monitor_tree is not running: the allowlisted ack has no server -> 'unavailable', fast.
        t0 = time.monotonic()
        reply = await call("robots.r1.srv.health_monitor_tree.acknowledge_alert",
                           msgpack.packb({"alert_id": "a1", "user": "otto"}))  # fmt: skip
        assert reply.headers["Rp-Error"].startswith("unavailable: ") and time.monotonic() - t0 < 1.0

        # Releasing the e-stop through NATS lets cmd_vel move the robot again.
        reply = await call(ESTOP, msgpack.packb({"data": False}))
        assert msgpack.unpackb(reply.data) == {"success": True, "message": "e-stop released"}
        await drive_until(lambda: odom()["twist"]["twist"]["linear"]["x"] > 0.4, "motion after the release")

        def counted() -> dict[str, str] | None:
            values = health_values(inbox.get("robots.r1.health.nats_bridge")[-1])
            return values if values.get(f"in.{ESTOP}.delivered") == "3" else None

        values = await until(counted, "service counters in the health report")
        assert values["in.<other_srv>.errors"] == "1"  # inject_fault: not allowlisted
        assert int(values[f"in.{ESTOP}.errors"]) >= 2  # malformed + wrong_type (+ 'unavailable' retries)
        assert values["errors.malformed"] == "1" and values["errors.wrong_type"] == "1"
        assert int(values["errors.unavailable"]) >= 1
    finally:
        await nc.close()
