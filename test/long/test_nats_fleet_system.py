"""Fleet topology with real servers: a hub and two robot nats-servers (leaf nodes, generated secured
configs), two robot ROS graphs on separate ROS_DOMAIN_IDs, each with its own nats_bridge process, and a
control-mode nats_bridge on a third domain mirroring the fleet into ROS and sending its commands.

Checks: each robot's odometry reaches the control side under its own subjects and in
/fleet/<id>/odom on the control graph; a command sent from the
control side reaches only the targeted robot's graph; r1's credentials cannot publish under r2's
subjects (the hub refuses it), and a spoofed r2 subject published on r1's server does not cross the leaf;
the hub is stopped for 10 s while r1 publishes alerts, and after it returns every alert is in the hub's
FLEET_EVENTS stream exactly once (robot stream EVENTS_r1 sourced over the leaf link).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import nats
import nats.js.errors
import pytest
from geometry_msgs.msg import Twist, Vector3
from nav_msgs.msg import Odometry

from helpers import REPO, DomainReservation, RosNodeThread, free_port, ros_env, wait_port
from robot_platform.messaging.envelope import Envelope
from robot_platform.site_setup.nats_config import Endpoint, Fleet, render_hub, render_robot, write_private

WAIT_S = 25.0
BRIDGE_PARAMS = """
/**/nats_bridge:
  ros__parameters:
    robot_id: {robot}
    nats_url: {url}
    health_period_s: 0.5
    out:
      names: [odom]
      odom: {{topic: /odom, type: nav_msgs/msg/Odometry}}
    in:
      names: [cmd_vel]
      cmd_vel: {{topic: /cmd_vel, type: geometry_msgs/msg/Twist}}
"""
CONTROL_PARAMS = """
/**/nats_bridge:
  ros__parameters:
    robot_id: control
    mode: control
    nats_url: {url}
    health_period_s: 0.5
    max_payload_bytes: 65536
    nats_user: control
    nats_password_file: {password_file}
    fleet_robots: [r1, r2]
    commands:
      names: [cmd_vel]
      cmd_vel: {{topic: /cmd_vel, type: geometry_msgs/msg/Twist}}
    mirror:
      topics: [/odom]
      robots: [r1, r2]
"""
HUB_DOWN_S = 10.0
SOURCE_RESUME_TIMEOUT_S = 150.0  # the hub's source consumer retries with backoff after a hub restart


class RobotGraph(RosNodeThread):
    """One robot's ROS graph in this process: its own context on its own domain."""

    def __init__(self, name: str, domain: int, x: float | None) -> None:
        super().__init__(f"fleet_test_{name}", domain)
        self.odom = Odometry()
        self.odom.pose.pose.position.x = x
        self.odom.header.frame_id, self.odom.child_frame_id = "odom", "base_link"  # REP-105, same on every robot
        self.pub = self.node.create_publisher(Odometry, "/odom", 10)
        self.cmds: list[Twist] = []
        self.node.create_subscription(Twist, "/cmd_vel", self.cmds.append, 10)
        if x is not None:
            self.node.create_timer(0.1, lambda: self.pub.publish(self.odom))
        self.fleet: dict[str, list[Odometry]] = {"r1": [], "r2": []}
        self.fleet_cmd = self.node.create_publisher(Twist, "/fleet/r1/cmd_vel", 10)
        for robot, received in self.fleet.items():
            self.node.create_subscription(Odometry, f"/fleet/{robot}/odom", received.append, 10)
        self.start()


async def until(predicate: Any, what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        await asyncio.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def three_domains() -> Any:
    reservations = [DomainReservation() for _ in range(3)]
    try:
        yield tuple(r.domain_id for r in reservations)
    finally:
        for r in reservations:
            r.release()


def test_fleet_two_robots_through_hub(procs: Any, tmp_path: Path, three_domains: tuple[int, int, int]) -> None:
    exe = shutil.which("nats-server")
    hub_port, leaf_port = free_port(), free_port()
    ports = {"r1": free_port(), "r2": free_port()}
    fleet = Fleet.generate(["r1", "r2"])
    hub_conf = tmp_path / "hub.conf"
    write_private(hub_conf, render_hub(fleet, Endpoint(port=hub_port), leaf_port, str(tmp_path / "js-hub")))
    procs.start("hub", [exe, "-c", str(hub_conf)])
    wait_port(hub_port)
    for robot, port in ports.items():
        conf = tmp_path / f"{robot}.conf"
        text = render_robot(
            robot, fleet.robots[robot], Endpoint(port=port), f"127.0.0.1:{leaf_port}", str(tmp_path / f"js-{robot}")
        )
        write_private(conf, text)
        procs.start(f"nats-{robot}", [exe, "-c", str(conf)])
        wait_port(port)
    assert oct(hub_conf.stat().st_mode & 0o777) == "0o600"

    src = str(REPO / "src" / "robot_platform")
    graphs = {}
    bridges = {}
    try:
        for (robot, port), domain, x in zip(ports.items(), three_domains[:2], (1.0, 2.0), strict=True):
            params = tmp_path / f"bridge-{robot}.yaml"
            params.write_text(BRIDGE_PARAMS.format(robot=robot, url=f"nats://127.0.0.1:{port}"))
            env = ros_env(domain, {"PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")})
            argv = [sys.executable, "-m", "robot_platform.bridge.node", "--ros-args", "--params-file", str(params)]
            bridges[robot] = procs.start(f"bridge-{robot}", argv, env=env)
            graphs[robot] = RobotGraph(robot, domain, x)
        asyncio.run(wait_robot_streams(ports))
        password_file = tmp_path / "control.password"
        write_private(password_file, fleet.control_password)
        params = tmp_path / "bridge-control.yaml"
        params.write_text(CONTROL_PARAMS.format(url=f"nats://127.0.0.1:{hub_port}", password_file=password_file))
        env = ros_env(three_domains[2], {"PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")})
        argv = [sys.executable, "-m", "robot_platform.bridge.node", "--ros-args", "--params-file", str(params)]
        bridges["control"] = procs.start("bridge-control", argv, env=env)
        graphs["control"] = RobotGraph("control", three_domains[2], None)
        asyncio.run(scenario(fleet, hub_port, ports, graphs))
        asyncio.run(hub_outage(fleet, hub_port, ports, procs, exe, hub_conf))
        for robot, proc in bridges.items():
            assert proc.poll() is None, f"bridge {robot} died"
    finally:
        for graph in graphs.values():
            graph.close()


def stop_process(procs: Any, name: str) -> None:
    for child in procs.children:
        if child.name == name and child.running():
            child.popen.terminate()
            child.popen.wait(timeout=10)


async def wait_robot_streams(ports: dict[str, int]) -> None:
    """The robot bridges create EVENTS_<id> on their local servers when they connect."""
    for robot, port in ports.items():
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        try:
            js = nc.jetstream()

            async def exists(js: Any = js, robot: str = robot) -> bool:
                try:
                    await js.stream_info(f"EVENTS_{robot}")
                except nats.js.errors.NotFoundError:
                    return False
                return True

            deadline = time.monotonic() + WAIT_S
            while not await exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert await exists(), f"EVENTS_{robot} never created by the {robot} bridge"
        finally:
            await nc.close()


async def hub_messages(hub_url: str, password: str) -> list[tuple[str, str]]:
    """(subject, Nats-Msg-Id) of every message in the hub's FLEET_EVENTS stream."""
    nc = await nats.connect(hub_url, user="control", password=password)
    try:
        js = nc.jetstream()
        info = await js.stream_info("FLEET_EVENTS")
        out: list[tuple[str, str]] = []
        if info.state.messages == 0:  # empty stream: first_seq is 0, and message 0 is a bad request
            return out
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg("FLEET_EVENTS", seq)
            out.append((msg.subject, (msg.headers or {}).get("Nats-Msg-Id", "")))
        return out
    finally:
        await nc.close()


async def hub_outage(fleet: Fleet, hub_port: int, ports: dict[str, int], procs: Any, exe: str, conf: Path) -> None:
    hub_url = f"nats://127.0.0.1:{hub_port}"
    r1 = await nats.connect(f"nats://127.0.0.1:{ports['r1']}")
    sent: list[str] = []

    async def alert(n: int) -> None:
        msg_id = f"alert-{n}-{uuid.uuid4().hex}"
        headers = Envelope(type_name="robot_platform_interfaces/msg/Alert", msg_id=msg_id, robot_id="r1").headers()
        await r1.publish("robots.r1.alerts", msgpack.packb({"code": f"TEST_{n}"}), headers=headers)
        sent.append(msg_id)

    try:
        await alert(0)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and len(await hub_messages(hub_url, fleet.control_password)) < 1:
            await asyncio.sleep(0.3)
        assert [m for _, m in await hub_messages(hub_url, fleet.control_password)] == sent

        stop_process(procs, "hub")
        t_down = time.monotonic()
        n = 1
        while time.monotonic() - t_down < HUB_DOWN_S:  # the robot keeps working while the hub is away
            await alert(n)
            n += 1
            await asyncio.sleep(1.0)
        procs.start("hub-again", [exe, "-c", str(conf)])
        wait_port(hub_port)

        deadline = time.monotonic() + SOURCE_RESUME_TIMEOUT_S
        got: list[tuple[str, str]] = []
        while time.monotonic() < deadline:
            try:
                got = await hub_messages(hub_url, fleet.control_password)
            except (nats.errors.Error, OSError):
                got = []
            if len(got) >= len(sent):
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(2.0)  # anything extra (a duplicate) would show up now
        got = await hub_messages(hub_url, fleet.control_password)
        ids = [m for _, m in got]
        assert sorted(ids) == sorted(sent), f"hub has {len(ids)} events, robot sent {len(sent)}"
        assert len(set(ids)) == len(ids)
        assert {s for s, _ in got} == {"robots.r1.alerts"}
    finally:
        await r1.close()


async def bad_input_on_mirror(control: Any, seen: dict[str, list[Any]], fleet_view: dict[str, list]) -> None:
    """Malformed, unknown-type, wrong-field-type and oversized telemetry on the mirror's inbound path:
    rejected and counted by the control-mode bridge, which keeps mirroring."""
    odom_headers = lambda type_name="nav_msgs/msg/Odometry": Envelope(  # noqa: E731
        type_name=type_name, msg_id=uuid.uuid4().hex, robot_id="r1"
    ).headers()
    bad = [
        (b"\xc1junk", odom_headers()),
        (msgpack.packb({"child_frame_id": "x"}), odom_headers("nope_msgs/msg/Nope")),
        (msgpack.packb({"pose": {"pose": {"position": {"x": "far"}}}}), odom_headers()),
        (b"\x80" + bytes(70_000), odom_headers()),
    ]
    for data, headers in bad:
        await control.publish("robots.r1.ros.odom", data, headers=headers)
    await control.flush()
    # the oversized body is refused on its size before any decoding: it counts as oversized only
    expected = {"errors.malformed": 1, "errors.unknown_type": 1, "errors.wrong_type": 1, "errors.oversized": 1}

    def counted() -> dict[str, str] | None:
        reports = seen.get("robots.control.health.nats_bridge", [])
        if not reports:
            return None
        body = msgpack.unpackb(reports[-1].data)
        values = {kv["key"]: kv["value"] for kv in body["status"][0]["values"]}
        return values if all(int(values.get(k, "0")) >= n for k, n in expected.items()) else None

    values = await until(counted, f"mirror rejection counters {expected}")
    for key, n in expected.items():
        assert int(values[key]) == n, (key, values[key])
    before = len(fleet_view["r1"])
    await until(lambda: len(fleet_view["r1"]) > before + 2, "mirroring continues after bad input")


async def scenario(fleet: Fleet, hub_port: int, ports: dict[str, int], graphs: dict[str, RobotGraph]) -> None:
    hub_url = f"nats://127.0.0.1:{hub_port}"
    control = await nats.connect(hub_url, user="control", password=fleet.control_password)
    seen: dict[str, list[Any]] = {}

    async def on_msg(msg: Any) -> None:
        seen.setdefault(msg.subject, []).append(msg)

    await control.subscribe("robots.>", cb=on_msg)
    try:
        # Odometry of both robots arrives at the hub under each robot's own subjects.
        await until(
            lambda: seen.get("robots.r1.ros.odom") and seen.get("robots.r2.ros.odom"), "odometry of both robots"
        )
        for robot, x in (("r1", 1.0), ("r2", 2.0)):
            msg = seen[f"robots.{robot}.ros.odom"][-1]
            assert msg.headers["Robot-Id"] == robot
            assert msgpack.unpackb(msg.data)["pose"]["pose"]["position"]["x"] == x

        # The control graph sees each robot under /fleet/<id>/odom.
        fleet_view = graphs["control"].fleet
        await until(lambda: fleet_view["r1"] and fleet_view["r2"], "/fleet/r1 and /fleet/r2 odom on the control graph")
        assert fleet_view["r1"][-1].pose.pose.position.x == 1.0
        assert fleet_view["r2"][-1].pose.pose.position.x == 2.0
        # one TF tree per robot on the control graph: the mirror prefixes frame ids with the robot id
        last = fleet_view["r1"][-1]
        assert (last.header.frame_id, last.child_frame_id) == ("r1/odom", "r1/base_link")
        assert fleet_view["r2"][-1].header.frame_id == "r2/odom"
        assert not graphs["r1"].fleet["r1"], "robot graphs must not see the fleet mirror"

        # A command for r2 reaches r2's graph only; r1's server never even sees it.
        r1_local = await nats.connect(f"nats://127.0.0.1:{ports['r1']}")
        leaked: list[str] = []

        async def on_leak(msg: Any) -> None:
            leaked.append(msg.subject)

        await r1_local.subscribe("robots.*.cmd.>", cb=on_leak)
        await r1_local.flush()
        await asyncio.sleep(0.5)  # let the subscription's interest propagate over the leaf link
        twist = msgpack.packb({"linear": {"x": 0.7}})

        async def send_to_r2() -> bool:
            headers = Envelope(type_name="geometry_msgs/msg/Twist", msg_id=uuid.uuid4().hex).headers()
            await control.publish("robots.r2.cmd.cmd_vel", twist, headers=headers)
            return bool(graphs["r2"].cmds)

        deadline = time.monotonic() + WAIT_S
        while not await send_to_r2() and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
        assert graphs["r2"].cmds and graphs["r2"].cmds[-1].linear.x == 0.7
        await asyncio.sleep(1.0)  # any leak to r1 would have arrived by now
        assert graphs["r1"].cmds == []
        assert leaked == []
        await bad_input_on_mirror(control, seen, fleet_view)

        # A command published in the control graph on /fleet/r1/cmd_vel reaches r1's /cmd_vel only.
        async def from_control_graph() -> bool:
            graphs["control"].fleet_cmd.publish(Twist(angular=Vector3(z=0.3)))
            await asyncio.sleep(0.3)
            return any(c.angular.z == 0.3 for c in graphs["r1"].cmds)

        deadline = time.monotonic() + WAIT_S
        while not await from_control_graph() and time.monotonic() < deadline:
            pass
        assert any(c.angular.z == 0.3 for c in graphs["r1"].cmds), "/fleet/r1/cmd_vel never reached r1"
        assert not any(c.angular.z == 0.3 for c in graphs["r2"].cmds)
        await r1_local.close()

        # r1's credentials cannot publish under r2's subjects: the hub refuses it.
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        r1_on_hub = await nats.connect(hub_url, user="r1", password=fleet.robots["r1"], error_cb=on_error)
        await r1_on_hub.publish("robots.r2.alerts", b"spoof")
        await r1_on_hub.publish("robots.r1.alerts", msgpack.packb({"ok": True}))
        await r1_on_hub.flush()
        await until(lambda: errors, "a permissions violation")
        assert 'permissions violation for publish to "robots.r2.alerts"' in errors[0]
        await r1_on_hub.close()
        # A spoofed r2 subject published on r1's own server does not cross r1's leaf link.
        on_r1 = await nats.connect(f"nats://127.0.0.1:{ports['r1']}")
        await on_r1.publish("robots.r2.ros.odom", b"spoof")
        await on_r1.publish("robots.r1.presence", b"marker")
        await on_r1.flush()
        await until(lambda: seen.get("robots.r1.presence"), "r1's legitimate marker at the hub")
        await on_r1.close()
        assert all(m.data != b"spoof" for m in seen.get("robots.r2.ros.odom", []))
        assert all(m.data != b"spoof" for m in seen.get("robots.r2.alerts", []))
        assert seen.get("robots.r1.alerts")
    finally:
        await control.close()
