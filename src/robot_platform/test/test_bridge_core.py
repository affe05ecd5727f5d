"""BridgeCore: outbound rate limit/encode/envelope and inbound validation, with a fake send (no ROS graph)."""

from __future__ import annotations

import math
import uuid

import msgpack
import pytest
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image

from robot_platform.bridge.core import BridgeCore
from robot_platform.bridge.node import decode_cdr
from robot_platform.bridge.ros_batch import cdr_decoder
from robot_platform.messaging import subjects
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.envelope import Envelope
from robot_platform.messaging.errors import UnknownTypeError

TWIST = {"linear": {"x": 0.5}, "angular": {"z": 0.2}}
CMD = "robots.r1.cmd.cmd_vel"


class Sent(list):
    def __call__(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        self.append((subject, body, headers))


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def logs() -> list[str]:
    return []


@pytest.fixture
def core(sent: Sent, logs: list[str]) -> BridgeCore:
    allow = subjects.CommandAllowlist("r1", [("/cmd_vel", "geometry_msgs/msg/Twist")])
    return BridgeCore("r1", Codec(max_payload_bytes=4096), sent, allow, log=logs.append, dedup_capacity=100)


def headers(type_name: str = "geometry_msgs/msg/Twist", msg_id: str | None = None, **extra: str) -> dict[str, str]:
    h = Envelope(type_name=type_name, msg_id=msg_id or uuid.uuid4().hex).headers()
    h.update(extra)
    return h


def test_out_route_encodes_with_envelope(core: BridgeCore, sent: Sent) -> None:
    route = core.add_out_route("/odom", "nav_msgs/msg/Odometry")
    odom = Odometry()
    odom.pose.pose.position.y = 2.0
    odom.header.stamp.sec = 3
    assert core.on_ros_message(route, odom, now=0.0)
    subject, body, h = sent[0]
    assert subject == "robots.r1.ros.odom"
    assert msgpack.unpackb(body)["pose"]["pose"]["position"]["y"] == 2.0
    env = Envelope.from_headers(subject, h)
    assert (env.type_name, env.topic, env.robot_id, env.seq, env.stamp) == (
        "nav_msgs/msg/Odometry", "/odom", "r1", 1, "3.000000000",
    )  # fmt: skip
    assert env.type_hash.startswith("RIHS01_")
    assert core.snapshot()["out"]["/odom"]["out"] == 1


def test_out_route_custom_subject_and_bad_config(core: BridgeCore) -> None:
    assert core.add_out_route("/alerts", "std_msgs/String", subject="robots.r1.alerts").subject == "robots.r1.alerts"
    with pytest.raises(UnknownTypeError):
        core.add_out_route("/x", "nope/msg/Nope")


def test_out_rate_limit_keeps_latest(core: BridgeCore, sent: Sent) -> None:
    route = core.add_out_route("/odom", "nav_msgs/msg/Odometry", max_rate_hz=10.0)
    for i in range(5):
        msg = Odometry()
        msg.pose.pose.position.x = float(i)
        core.on_ros_message(route, msg, now=i * 0.01)
    assert len(sent) == 1
    assert core.flush_due(now=0.05) == pytest.approx(0.1)
    assert core.flush_due(now=0.1) is None
    assert [msgpack.unpackb(b)["pose"]["pose"]["position"]["x"] for _, b, _ in sent] == [0.0, 4.0]
    assert core.snapshot()["out"]["/odom"]["dropped_rate"] == 3


def test_raw_route_deserializes_only_what_it_sends(core: BridgeCore, sent: Sent, logs: list[str]) -> None:
    route = core.add_out_route("/odom", "nav_msgs/msg/Odometry", max_rate_hz=10.0)
    decoded: list[bytes] = []

    def decode(data: bytes) -> Odometry:
        decoded.append(data)
        return decode_cdr(cdr_decoder(Odometry), "nav_msgs/msg/Odometry", data)

    route.decode = decode  # what nats_bridge's raw subscription sets
    for i in range(5):
        msg = Odometry()
        msg.pose.pose.position.x = float(i)
        core.on_ros_message(route, serialize_message(msg), now=i * 0.01)
    core.flush_due(now=0.1)
    assert [msgpack.unpackb(b)["pose"]["pose"]["position"]["x"] for _, b, _ in sent] == [0.0, 4.0]
    assert len(decoded) == 2, "the three the rate limit dropped were never deserialized"
    # CDR that does not decode is counted and logged; the route goes on.
    assert not core.on_ros_message(route, b"\x00\x01 not CDR", now=1.0)
    assert core.snapshot()["out"]["/odom"]["errors"] == {"invalid_message": 1}
    assert "CDR does not deserialize" in logs[-1]
    assert core.on_ros_message(route, serialize_message(Odometry()), now=2.0)
    assert len(sent) == 3


def test_out_oversized_is_counted_not_sent(core: BridgeCore, sent: Sent, logs: list[str]) -> None:
    route = core.add_out_route("/camera", "sensor_msgs/msg/Image")
    assert not core.on_ros_message(route, Image(data=bytes(5000)), now=0.0)
    assert sent == []
    assert core.snapshot()["out"]["/camera"]["errors"] == {"oversized": 1}
    assert "exceeds the limit of 4096 bytes" in logs[0]


def test_in_valid_command(core: BridgeCore) -> None:
    topic, msg = core.on_command(CMD, headers(), msgpack.packb(TWIST))
    assert topic == "/cmd_vel" and isinstance(msg, Twist)
    assert (msg.linear.x, msg.angular.z) == (0.5, 0.2)
    assert core.snapshot()["in"][CMD]["delivered"] == 1


@pytest.mark.parametrize(
    ("subject", "hdrs", "data", "kind"),
    [
        ("robots.r1.cmd.secret", headers(), msgpack.packb(TWIST), "not_allowed"),
        (CMD, headers("std_msgs/msg/String"), msgpack.packb({"data": "x"}), "not_allowed"),
        (CMD, None, msgpack.packb(TWIST), "not_allowed"),
        (CMD, {"Ros-Type": "geometry_msgs/msg/Twist"}, msgpack.packb(TWIST), "bad_envelope"),
        (CMD, headers(**{"Ros-Type-Hash": "RIHS01_0000"}), msgpack.packb(TWIST), "bad_envelope"),
        (CMD, headers(), b"\xc1", "malformed"),
        (CMD, headers(), msgpack.packb([1]), "malformed"),
        (CMD, headers(), msgpack.packb({"linear": {"x": "1"}}), "wrong_type"),
        (CMD, headers(), msgpack.packb({"linear": {"w": 1.0}}), "unknown_field"),
        (CMD, headers(), msgpack.packb({"linear": {"x": 10}}), None),
        (CMD, headers(), b"\x80" + bytes(5000), "oversized"),
    ],
)
def test_in_rejections_are_counted(core: BridgeCore, subject: str, hdrs: dict | None, data: bytes, kind: str) -> None:
    result = core.on_command(subject, hdrs, data)
    if kind is None:  # control case: a valid integer where a float is expected is accepted
        assert result is not None
        return
    assert result is None
    snap = core.snapshot()
    assert snap["errors"] == {kind: 1}
    key = subject if subject == CMD else "<other>"
    assert snap["in"][key]["errors"] == {kind: 1}


def test_in_duplicates_dropped_once_seen(core: BridgeCore) -> None:
    msg_id = uuid.uuid4().hex
    assert core.on_command(CMD, headers(msg_id=msg_id), msgpack.packb(TWIST)) is not None
    assert core.on_command(CMD, headers(msg_id=msg_id), msgpack.packb(TWIST)) is None
    assert core.snapshot()["in"][CMD]["duplicates"] == 1


def test_counters_do_not_grow_with_random_subjects(core: BridgeCore) -> None:
    for i in range(200):
        core.on_command(f"robots.r1.cmd.junk{i}", headers(), b"")
    assert set(core.snapshot()["in"]) == {"<other>"}


def test_log_is_throttled(core: BridgeCore, logs: list[str]) -> None:
    for _ in range(1000):
        core.on_command(CMD, headers(), b"\xc1")
    assert len(logs) < 25
    assert core.snapshot()["errors"]["malformed"] == 1000


def test_non_finite_commands_refused_unless_the_entry_opts_in(sent: Sent, logs: list[str]) -> None:
    """NaN/±inf in /cmd_vel are refused and counted as out_of_range; /gains opted in and gets them."""
    allow = subjects.CommandAllowlist(
        "r1", [("/cmd_vel", "geometry_msgs/msg/Twist"), ("/gains", "geometry_msgs/msg/Twist", True)]
    )
    core = BridgeCore("r1", Codec(), sent, allow, log=logs.append)
    for value in (math.nan, math.inf, -math.inf):
        body = msgpack.packb({"linear": {"x": 0.5}, "angular": {"z": value}})
        assert core.on_command(CMD, headers(), body) is None
        topic, msg = core.on_command("robots.r1.cmd.gains", headers(), body)
        assert topic == "/gains" and not math.isfinite(msg.angular.z)
    snap = core.snapshot()
    assert snap["in"][CMD]["errors"] == {"out_of_range": 3}
    assert snap["in"][CMD]["delivered"] == 0
    assert snap["in"]["robots.r1.cmd.gains"]["delivered"] == 3
    assert "angular.z" in logs[0] and "not a finite number" in logs[0]
    # The bridge keeps serving valid commands on the refusing topic.
    assert core.on_command(CMD, headers(), msgpack.packb(TWIST)) is not None


def test_a_huge_type_header_is_not_echoed_in_full(core: BridgeCore, logs: list[str]) -> None:
    assert core.on_command(CMD, headers("pkg/msg/" + "T" * 100_000), msgpack.packb(TWIST)) is None
    assert core.snapshot()["errors"] == {"not_allowed": 1}
    assert len(logs) == 1 and len(logs[0]) < 600


def test_overview_copy_is_the_sent_message_at_the_overview_rate(core: BridgeCore, sent: Sent) -> None:
    """20 Hz odometry with a 2 Hz overview: every message on robots.r1.ros.odom, one every 0.5 s (the
    newest held, released when due) on robots.r1.overview.odom with the original's body and headers."""
    route = core.add_out_route("/odom", "nav_msgs/msg/Odometry", overview_rate_hz=2.0)
    assert route.overview_subject == "robots.r1.overview.odom"
    next_due = None
    for i in range(41):  # 2 s at 20 Hz
        now = i * 0.05
        if next_due is not None and now >= next_due:
            core.flush_due(now)
        msg = Odometry()
        msg.pose.pose.position.x = float(i)
        assert core.on_ros_message(route, msg, now=now)
        next_due = core.flush_due(now)
    full = [(b, h) for s, b, h in sent if s == "robots.r1.ros.odom"]
    copies = [(b, h) for s, b, h in sent if s == "robots.r1.overview.odom"]
    assert len(full) == 41 and len(sent) == 41 + len(copies)
    assert len(copies) == 5  # t = 0, then the newest held one at 0.5, 1.0, 1.5, 2.0 (20 Hz input)
    for body, h in copies:
        assert (body, h) in full  # the same message, not a re-encoded one
    xs = [msgpack.unpackb(b)["pose"]["pose"]["position"]["x"] for b, _ in copies]
    assert xs == [0.0, 9.0, 19.0, 29.0, 39.0]
    assert core.snapshot()["out"]["/odom"]["overview"] == 5


def test_overview_holds_the_latest_and_releases_it_when_due(core: BridgeCore, sent: Sent) -> None:
    route = core.add_out_route("/odom", "nav_msgs/msg/Odometry", overview_rate_hz=2.0)
    for i, now in enumerate((0.0, 0.1, 0.2)):
        msg = Odometry()
        msg.pose.pose.position.x = float(i)
        core.on_ros_message(route, msg, now=now)
    assert [s for s, _, _ in sent].count("robots.r1.overview.odom") == 1
    assert core.flush_due(now=0.3) == pytest.approx(0.5)  # the held copy is due at 0.5
    assert core.flush_due(now=0.5) is None
    copies = [b for s, b, _ in sent if s == "robots.r1.overview.odom"]
    assert [msgpack.unpackb(b)["pose"]["pose"]["position"]["x"] for b in copies] == [0.0, 2.0]


def test_no_overview_without_a_rate(core: BridgeCore, sent: Sent) -> None:
    route = core.add_out_route("/odom", "nav_msgs/msg/Odometry")
    core.on_ros_message(route, Odometry(), now=0.0)
    assert [s for s, _, _ in sent] == ["robots.r1.ros.odom"]
    assert "overview" not in core.snapshot()["out"]["/odom"]
