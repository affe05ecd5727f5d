"""The Foxglove side of ws_agent as pure logic: schemas, protocol parsing, catalog, gateway. No servers.

The real npm client against a real agent is test/test_foxglove_system.py."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import Any

import msgpack
import pytest
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.serialization import deserialize_message, serialize_message
from std_srvs.srv import SetBool

from robot_platform.messaging.codec import Codec
from robot_platform.messaging.rostypes import TypeRegistry
from robot_platform.ws import access
from robot_platform.ws import foxglove_protocol as fp
from robot_platform.ws.access import AccessControl
from robot_platform.ws.audit import Auditor
from robot_platform.ws.errors import ProtocolError
from robot_platform.ws.fanout import Hub
from robot_platform.ws.foxglove_catalog import BridgeRoutes, Catalog, Route, load_bridge_routes
from robot_platform.ws.foxglove_gateway import FoxgloveGateway, FoxgloveSession
from robot_platform.ws.gateway import Gateway, GatewayLimits
from robot_platform.ws.outgoing import Outgoing
from robot_platform.ws.ros_schemas import SchemaError, SchemaStore
from robot_platform.ws.topics import Mode, TopicMapper

SECRETS = {"vera": "viewer-pw", "otto": "operator-pw"}
ROUTES = BridgeRoutes(
    topics=(Route("/odom", "nav_msgs/msg/Odometry"),),
    commands=(Route("/cmd_vel", "geometry_msgs/msg/Twist"),),
    services=(Route("/robot_sim/estop", "std_srvs/srv/SetBool"),),
)


# ---------------------------------------------------------------------------------------- schemas
def test_odometry_schema_has_each_dependency_once_named_as_fields_name_them() -> None:
    text = SchemaStore().message("nav_msgs/msg/Odometry")
    names = [line[5:] for line in text.splitlines() if line.startswith("MSG: ")]
    assert len(names) == len(set(names))
    assert {"std_msgs/Header", "builtin_interfaces/Time", "geometry_msgs/PoseWithCovariance"} <= set(names)
    assert text.startswith("# This represents an estimate") or "std_msgs/Header header" in text


def test_service_halves_and_missing_types() -> None:
    request, response = SchemaStore().service("std_srvs/srv/SetBool")
    assert "bool data" in request and "bool success" in response and "---" not in request + response
    with pytest.raises(SchemaError):
        SchemaStore().message("nav_msgs/msg/NoSuchType")
    with pytest.raises(SchemaError):
        SchemaStore().message("../../etc/passwd")


# ---------------------------------------------------------------------------------------- protocol
def test_parse_client_messages_and_refuse_bad_ones() -> None:
    assert fp.parse('{"op":"subscribe","subscriptions":[{"id":1,"channelId":2}]}', 1000) == fp.Subscribe(((1, 2),))
    req = fp.parse(b"\x02" + struct.pack("<III", 5, 7, 3) + b"cdr" + b"xy", 1000)
    assert req == fp.ServiceRequest(5, 7, "cdr", b"xy")
    assert fp.parse(b"\x01" + struct.pack("<I", 9) + b"abc", 1000) == fp.MessageData(9, b"abc")
    for bad in ('{"op":"subscribe","subscriptions":[{"id":-1,"channelId":2}]}', '{"op":"getParameters"}', "[]",
                "nope", b"", b"\x07", b"\x02\x00"):  # fmt: skip
        with pytest.raises(ProtocolError):
            fp.parse(bad, 1000)
    with pytest.raises(ProtocolError):
        fp.parse("x" * 2000, 1000)


# ---------------------------------------------------------------------------------------- catalog
def test_catalog_reads_the_bridge_config_and_names_fleet_topics(tmp_path: Path) -> None:
    cfg = tmp_path / "robot.yaml"
    cfg.write_text("/**/nats_bridge:\n  ros__parameters:\n    out:\n      names: [odom, custom, gone]\n"
                   "      odom: {topic: /odom, type: nav_msgs/msg/Odometry}\n"
                   "      custom: {topic: /x, type: std_msgs/msg/String, subject: other}\n"
                   "      gone: {topic: /g, type: nav_msgs/msg/NoSuchType}\n"
                   "    in: {names: [cmd_vel],\n"
                   "         cmd_vel: {topic: /cmd_vel, type: geometry_msgs/msg/Twist}}\n")  # fmt: skip
    routes = load_bridge_routes(cfg)
    assert [r.name for r in routes.topics] == ["/odom", "/g"]  # a custom subject is skipped
    catalog = Catalog(Mode.FLEET, routes)
    assert len(catalog.schema_errors) == 1  # the missing type gets no channel, the others do
    channels, _ = catalog.add_robot("r1")
    assert [c.name for c in channels] == ["/robots/r1/odom"]
    assert catalog.add_robot("r1") == ([], []) and catalog.add_robot("bad-id") == ([], [])
    assert catalog.skipped_robots == 1 and catalog.command_type("/cmd_vel") == "geometry_msgs/msg/Twist"


# ---------------------------------------------------------------------------------------- gateway
class FakeNats:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []
        self.reply: Any = ({}, msgpack.packb({"success": True, "message": "stopped"}))

    def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        self.sent.append((subject, body, headers))

    def request(self, subject: str, body: bytes, headers: dict[str, str], timeout: float, reply: Any) -> None:
        self.sent.append((subject, body, headers))
        reply(self.reply, "")


@pytest.fixture
def fox(tmp_path: Path) -> tuple[FoxgloveGateway, FakeNats]:
    users = tmp_path / "users.yaml"
    roles = {"vera": "viewer", "otto": "operator"}
    users.write_text("users:\n" + "".join(
        f"  {u}: {{role: {r}, secret_hash: '{access.hash_secret(SECRETS[u])}'}}\n" for u, r in roles.items()
    ))  # fmt: skip
    nats = FakeNats()
    gw = Gateway(TopicMapper(Mode.ROBOT, "r1"), AccessControl.from_file(users), Hub(lambda s, on: None, 1 << 20),
                 nats, Auditor("r1", nats.publish, logging.getLogger("test")), Codec(TypeRegistry()), "r1",
                 GatewayLimits(max_client_msgs_per_s=0))  # fmt: skip
    fg = FoxgloveGateway(gw, Catalog(Mode.ROBOT, ROUTES), "r1")
    fg.add_robot("r1")
    return fg, nats


def login(fg: FoxgloveGateway, user: str) -> FoxgloveSession:
    return fg.open(fg.gw.access.authenticate(user, SECRETS[user]), "127.0.0.1:9")


def drain(session: FoxgloveSession) -> list[Any]:
    out = []
    for frame in session.take(0) or []:
        out.append(json.loads(frame) if isinstance(frame, str) else frame)
    return out


def test_viewer_sees_channels_decodes_cdr_and_is_refused_cmd_vel(fox: tuple[FoxgloveGateway, FakeNats]) -> None:
    fg, nats = fox
    s = login(fg, "vera")
    info, adv = drain(s)
    assert info["op"] == "serverInfo" and info["capabilities"] == ["clientPublish", "services"]
    (channel,) = adv["channels"]
    assert (channel["topic"], channel["encoding"], channel["schemaEncoding"]) == ("/odom", "cdr", "ros2msg")
    fg.handle(s, json.dumps({"op": "subscribe", "subscriptions": [{"id": 42, "channelId": channel["id"]}]}))
    odom = Odometry()
    odom.pose.pose.position.x = 2.5
    (sub,) = s.subscriptions()
    s.offer(sub, Outgoing("robots.r1.ros.odom", "nav_msgs/msg/Odometry", Codec().encode(odom), "r1"))
    (wire,) = s.render_wire(s.take(0))
    frame = wire[2:] if wire[1] < 126 else wire[4:]  # server frames are unmasked; small ones: 2-byte header
    op, sub_id, _stamp = struct.unpack_from("<BIQ", frame)
    assert (op, sub_id) == (1, 42)
    assert deserialize_message(frame[13:], Odometry).pose.pose.position.x == 2.5
    fg.handle(s, json.dumps({"op": "advertise", "channels": [
        {"id": 1, "topic": "/cmd_vel", "encoding": "cdr", "schemaName": "geometry_msgs/msg/Twist"}]}))  # fmt: skip
    (status,) = drain(s)
    assert status["level"] == fp.ERROR and "may not publish" in status["message"]
    audits = [msgpack.unpackb(b) for subj, b, _ in nats.sent if subj.startswith("audit.")]
    assert any(a["op"] == "advertise" and not a["allowed"] for a in audits)
    assert not [x for x in nats.sent if x[0].startswith("robots.r1.cmd")]


def test_operator_publishes_allowlisted_cdr_and_calls_a_service(fox: tuple[FoxgloveGateway, FakeNats]) -> None:
    fg, nats = fox
    s = login(fg, "otto")
    kinds = [m["op"] for m in drain(s)]
    assert kinds == ["serverInfo", "advertise", "advertiseServices"]
    fg.handle(s, json.dumps({"op": "advertise", "channels": [
        {"id": 3, "topic": "/battery_state", "encoding": "cdr", "schemaName": "sensor_msgs/msg/BatteryState"},
        {"id": 1, "topic": "/cmd_vel", "encoding": "cdr", "schemaName": "geometry_msgs/msg/Twist"}]}))  # fmt: skip
    (status,) = drain(s)
    assert "not an allowlisted command" in status["message"]
    twist = Twist()
    twist.linear.x = 0.4
    fg.handle(s, b"\x01" + struct.pack("<I", 1) + serialize_message(twist))
    fg.handle(s, b"\x01" + struct.pack("<I", 1) + b"\x00\x01garbage")
    statuses = drain(s)
    assert len(statuses) == 1 and statuses[0]["level"] == fp.ERROR, statuses
    (cmd,) = [x for x in nats.sent if x[0] == "robots.r1.cmd.cmd_vel"]
    assert msgpack.unpackb(cmd[1])["linear"]["x"] == 0.4 and cmd[2]["Rp-User"] == "otto"
    req = SetBool.Request(data=True)
    fg.handle(s, b"\x02" + struct.pack("<III", 2, 9, 3) + b"cdr" + serialize_message(req))
    (resp,) = drain(s)
    _op, service_id, call_id, n = struct.unpack_from("<BIII", resp)
    assert (service_id, call_id) == (2, 9)
    assert deserialize_message(resp[13 + n :], SetBool.Response).message == "stopped"


# ---------------------------------------------------------------------------------------- CDR
def _samples() -> list[Any]:
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from sensor_msgs.msg import BatteryState, Image, Imu, LaserScan
    from std_msgs.msg import String

    odom = Odometry(child_frame_id="base_link")
    odom.header.frame_id, odom.pose.pose.position.x = "odom", 1.5
    odom.pose.covariance = [0.1 * i for i in range(36)]
    scan = LaserScan(ranges=[1.0, float("inf"), 2.5], angle_min=-1.0)
    status = DiagnosticStatus(name="a", values=[KeyValue(key="k", value="v")])
    battery = BatteryState(cell_voltage=[3.7, 3.8], location="x", serial_number="sn", present=True)
    image = Image(encoding="rgb8", height=1, width=7, data=bytes(range(7)))
    return [odom, scan, LaserScan(intensities=[1.0]), Imu(), battery, BatteryState(), Twist(), image,
            DiagnosticArray(status=[status, DiagnosticStatus()]), String(data="hey")]  # fmt: skip


@pytest.mark.parametrize("msg", _samples(), ids=lambda m: type(m).__name__)
def test_cdr_from_dict_decodes_like_rclpy_cdr(msg: Any) -> None:
    """Same length and same message back; only padding bytes may differ (Fast CDR leaves them unset)."""
    from robot_platform.messaging.codec import unpack
    from robot_platform.ws.cdr import CdrEncoder

    codec = Codec()
    ours = CdrEncoder(codec.registry).encode(type(msg), unpack(codec.encode(msg)))
    reference = serialize_message(msg)
    assert len(ours) == len(reference)
    assert deserialize_message(ours, type(msg)) == msg


def test_cdr_declines_what_it_cannot_encode() -> None:
    from robot_platform.ws.cdr import CdrEncoder, CdrUnsupported

    enc = CdrEncoder(TypeRegistry())
    with pytest.raises(CdrUnsupported):
        enc.encode(Twist, {"linear": {"x": "fast"}, "angular": {}})
    with pytest.raises(CdrUnsupported):
        enc.encode(Twist, {"linear": {"x": 1.0}})
