"""Control-side mirror logic: subject -> /fleet/<id>/<topic>, validation, pinning, duplicates."""

from __future__ import annotations

import uuid

import msgpack
import pytest
from nav_msgs.msg import Odometry
from std_msgs.msg import String

from robot_platform.bridge.mirror import Mirror
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.envelope import Envelope

ODOM = msgpack.packb({"pose": {"pose": {"position": {"x": 3.0}}}})


def headers(type_name: str = "nav_msgs/msg/Odometry", msg_id: str | None = None, **extra: str) -> dict[str, str]:
    h = Envelope(type_name=type_name, msg_id=msg_id or uuid.uuid4().hex).headers()
    h.update(extra)
    return h


@pytest.fixture
def mirror() -> Mirror:
    return Mirror(Codec(max_payload_bytes=4096), ["/odom", "/robot_state"], robots=["r1", "r2"])


def test_subscriptions(mirror: Mirror) -> None:
    assert mirror.subscriptions() == ["robots.*.ros.odom", "robots.*.ros.robot_state"]


def test_mirrors_under_fleet_namespace(mirror: Mirror) -> None:
    out = mirror.on_message("robots.r2.ros.odom", headers(), ODOM)
    assert out is not None
    assert (out.robot_id, out.ros_topic, out.cls) == ("r2", "/fleet/r2/odom", Odometry)
    assert out.msg.pose.pose.position.x == 3.0
    assert mirror.snapshot()["mirror"]["robots.r2.ros.odom"]["delivered"] == 1


@pytest.mark.parametrize(
    ("subject", "hdrs", "data", "kind"),
    [
        ("robots.r3.ros.odom", headers(), ODOM, "not_allowed"),  # robot not mirrored
        ("robots.r1.ros.scan", headers(), ODOM, "not_allowed"),  # topic not mirrored
        ("robots.r1.cmd.odom", headers(), ODOM, "not_allowed"),
        ("robots.r1.ros.odom", headers("nope_msgs/msg/Nope"), ODOM, "unknown_type"),
        ("robots.r1.ros.odom", headers(**{"Ros-Type-Hash": "RIHS01_00"}), ODOM, "bad_envelope"),
        ("robots.r1.ros.odom", {"Ros-Type": "nav_msgs/msg/Odometry"}, ODOM, "bad_envelope"),
        ("robots.r1.ros.odom", headers(), b"\xc1", "malformed"),
        ("robots.r1.ros.odom", headers(), msgpack.packb({"pose": {"x": 1}}), "unknown_field"),
        ("robots.r1.ros.odom", headers(), msgpack.packb({"child_frame_id": 1}), "wrong_type"),
        ("robots.r1.ros.odom", headers(), b"\x80" * 5000, "oversized"),
        ("robots.*.ros.odom", headers(), ODOM, "bad_subject"),
    ],
)
def test_rejections(mirror: Mirror, subject: str, hdrs: dict, data: bytes, kind: str) -> None:
    assert mirror.on_message(subject, hdrs, data) is None
    assert mirror.snapshot()["mirror_errors"] == {kind: 1}


def test_type_is_pinned_per_topic(mirror: Mirror) -> None:
    assert mirror.on_message("robots.r1.ros.robot_state", headers("std_msgs/msg/String"), msgpack.packb({})) is not None
    assert mirror.on_message("robots.r1.ros.robot_state", headers(), ODOM) is None
    assert mirror.snapshot()["mirror_errors"] == {"bad_envelope": 1}
    again = mirror.on_message("robots.r1.ros.robot_state", headers("std_msgs/String"), msgpack.packb({"data": "x"}))
    assert again is not None and again.msg == String(data="x")


def test_duplicates_dropped(mirror: Mirror) -> None:
    msg_id = uuid.uuid4().hex
    assert mirror.on_message("robots.r1.ros.odom", headers(msg_id=msg_id), ODOM) is not None
    assert mirror.on_message("robots.r1.ros.odom", headers(msg_id=msg_id), ODOM) is None
    assert mirror.snapshot()["mirror"]["robots.r1.ros.odom"]["duplicates"] == 1


def test_any_robot_when_none_configured() -> None:
    m = Mirror(Codec(), ["/odom"])
    assert m.on_message("robots.zz9.ros.odom", headers(), ODOM).ros_topic == "/fleet/zz9/odom"


def test_made_up_robot_ids_cannot_grow_the_mirror_without_end() -> None:
    """With no robot list, each new id costs counters, a pinned type and ROS publishers: capped."""
    m = Mirror(Codec(), ["/odom"], max_robots=3)
    for i in range(3):
        assert m.on_message(f"robots.r{i}.ros.odom", headers(), ODOM) is not None
    for i in range(3, 500):
        assert m.on_message(f"robots.r{i}.ros.odom", headers(), ODOM) is None
    assert m.on_message("robots.r1.ros.odom", headers(), ODOM) is not None  # known robots go on
    snap = m.snapshot()
    assert len(snap["mirror"]) == 4  # r0..r2 and <other>
    assert snap["mirror"]["<other>"]["errors"] == {"not_allowed": 497}
    assert len(m._pinned) == 3


def test_overview_topics_come_from_the_robots_decimated_copy() -> None:
    """/odom from robots.<id>.overview.odom (what keeps the leaf links at 2 Hz), the rest at full rate;
    the other kind of the same topic is refused, so nothing is mirrored twice."""
    m = Mirror(Codec(), ["/odom", "/scan"], overview_topics=["/odom", "/not_mirrored"])
    assert m.subscriptions() == ["robots.*.overview.odom", "robots.*.ros.scan"]
    out = m.on_message("robots.r1.overview.odom", headers(), ODOM)
    assert out is not None and out.ros_topic == "/fleet/r1/odom" and out.msg.pose.pose.position.x == 3.0
    assert m.on_message("robots.r1.ros.odom", headers(), ODOM) is None
    assert m.on_message("robots.r1.overview.scan", headers(), ODOM) is None
    assert m.snapshot()["mirror_errors"] == {"not_allowed": 2}
