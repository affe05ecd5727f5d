"""rosbridge v2 parsing, status/fragment/publish encodings, and topic <-> subject mapping of ws_agent."""

from __future__ import annotations

import json
import math

import cbor2
import msgpack
import pytest

from robot_platform.ws import protocol
from robot_platform.ws.errors import FrameTooLargeError, ProtocolError, TopicError
from robot_platform.ws.topics import Mode, TopicMapper


def parse_text(text: str) -> protocol.Request:
    return protocol.parse(protocol.decode_frame(text, 10_000))


def test_roslibjs_subscribe_shape_parses() -> None:
    req = parse_text(
        json.dumps({"op": "subscribe", "id": "subscribe:/odom:1", "type": "nav_msgs/msg/Odometry", "topic": "/odom",
                    "compression": "none", "throttle_rate": 100, "queue_length": 1, "fragment_size": None})
    )  # fmt: skip
    assert req == protocol.Subscribe("/odom", "subscribe:/odom:1", "nav_msgs/msg/Odometry", 100, 1, 0, "none")


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"op": "subscribe"}, "topic"),
        ({"op": "subscribe", "topic": 5}, "topic"),
        ({"op": "subscribe", "topic": "/a", "throttle_rate": "10"}, "throttle_rate"),
        ({"op": "subscribe", "topic": "/a", "throttle_rate": -1}, "throttle_rate"),
        ({"op": "subscribe", "topic": "/a", "queue_length": True}, "queue_length"),
        ({"op": "subscribe", "topic": "/a", "compression": "png"}, "compression"),
        ({"op": "publish", "topic": "/a", "msg": [1, 2]}, "msg"),
        ({"op": "advertise", "topic": "/a"}, "type"),
        ({"op": "call_service", "service": "/s", "args": "x"}, "args"),
        ({"op": "set_level", "level": "loud"}, "level"),
        ({"op": "subscribe", "topic": "/a", "id": {"x": 1}}, "id"),
    ],
)
def test_wrong_field_types_are_typed_errors(message: dict, field: str) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.parse(message)
    assert info.value.field == field
    assert field in str(info.value)


def test_unknown_op_and_bad_frames() -> None:
    with pytest.raises(ProtocolError, match="unknown op 'explode'"):
        protocol.parse({"op": "explode", "id": "7"})
    with pytest.raises(ProtocolError, match="not valid JSON"):
        protocol.decode_frame("{nope", 100)
    with pytest.raises(ProtocolError, match="top level"):
        protocol.decode_frame("[1, 2]", 100)
    with pytest.raises(ProtocolError):
        protocol.decode_frame("[" * 100_000 + "]" * 100_000, 10**6)  # recursion bomb
    with pytest.raises(FrameTooLargeError) as info:
        protocol.decode_frame("x" * 101, 100)
    assert (info.value.size, info.value.limit) == (101, 100)


def test_binary_msgpack_frames_and_auth_shapes() -> None:
    frame = msgpack.packb({"op": "auth", "user": "alice", "secret": "s3cret"})
    req = protocol.parse(protocol.decode_frame(frame, 1000))
    assert req == protocol.Auth("alice", "s3cret")
    assert "s3cret" not in repr(req)
    assert protocol.parse({"op": "auth", "client": "bob", "mac": "m"}) == protocol.Auth("bob", "m")
    with pytest.raises(ProtocolError):
        protocol.parse({"op": "auth", "user": "bob"})


def test_status_and_service_response_are_rosbridge_shaped() -> None:
    assert json.loads(protocol.status("error", "bad", "id1")) == {"op": "status", "level": "error", "msg": "bad",
                                                                   "id": "id1"}  # fmt: skip
    resp = json.loads(protocol.service_response("/s", "c1", {"success": True}, True))
    assert resp == {"op": "service_response", "service": "/s", "values": {"success": True}, "result": True, "id": "c1"}


def test_publish_encodings_bytes_and_non_finite_floats() -> None:
    msg = {"data": b"\x00\x01\xff", "ranges": [1.0, math.inf, math.nan]}
    decoded = json.loads(protocol.publish_json("/scan", msg))
    assert decoded == {"op": "publish", "topic": "/scan", "msg": {"data": "AAH/", "ranges": [1.0, None, None]}}
    body = msgpack.packb(msg, use_bin_type=True)
    fast = msgpack.unpackb(protocol.publish_msgpack("/scan", body), raw=False)
    assert fast["op"] == "publish" and fast["topic"] == "/scan" and fast["msg"]["data"] == b"\x00\x01\xff"
    assert math.isinf(fast["msg"]["ranges"][1])
    via_cbor = cbor2.loads(protocol.publish_cbor("/scan", msg))
    assert via_cbor["msg"]["data"] == b"\x00\x01\xff" and via_cbor["topic"] == "/scan"


def test_fragments_round_trip_and_respect_size() -> None:
    frame = protocol.publish_json("/big", {"text": "x" * 1000})
    parts = protocol.fragment(frame, 100, "m1")
    assert len(parts) == math.ceil(len(frame) / 100)
    fragments = [json.loads(p) for p in parts]
    assert all(f["op"] == "fragment" and f["id"] == "m1" and len(f["data"]) <= 100 for f in fragments)
    assert protocol.defragment(list(reversed(fragments))) == frame
    assert protocol.fragment(frame, 0, "m2") == [frame]
    assert protocol.fragment(frame, len(frame), "m3") == [frame]


# ---------------------------------------------------------------------------------------- topics
def test_robot_mode_bare_names_mean_this_robot() -> None:
    m = TopicMapper(Mode.ROBOT, "r1")
    assert m.subscribe("/odom").subject == "robots.r1.ros.odom"
    assert m.subscribe("/robots/r1/odom").subject == "robots.r1.ros.odom"
    assert m.subscribe("/scan/front").subject == "robots.r1.ros.scan.front"
    assert m.subscribe("/alerts").subject == "robots.r1.alerts"
    assert m.subscribe("/health").subject == "robots.r1.health"
    assert m.subscribe("/health/nats_bridge").subject == "robots.r1.health.nats_bridge"
    assert m.subscribe("/frames/front").subject == "robots.r1.frames.front"
    assert m.publish("/cmd_vel").subject == "robots.r1.cmd.cmd_vel"
    assert m.service("/robot_sim/estop").subject == "robots.r1.srv.robot_sim.estop"
    with pytest.raises(TopicError, match="serves robot 'r1' only"):
        m.subscribe("/robots/r2/odom")


def test_fleet_mode_needs_the_robot_and_maps_back() -> None:
    m = TopicMapper(Mode.FLEET)
    t = m.subscribe("/robots/r7/odom")
    assert (t.robot_id, t.ros_name, t.subject) == ("r7", "/odom", "robots.r7.ros.odom")
    assert m.publish("/robots/r7/cmd_vel").subject == "robots.r7.cmd.cmd_vel"
    assert m.name_for("robots.r7.ros.odom") == "/robots/r7/odom"
    assert m.name_for("robots.r7.alerts") == "/robots/r7/alerts"
    with pytest.raises(TopicError, match="fleet mode"):
        m.subscribe("/odom")


@pytest.mark.parametrize(
    "name", ["odom", "/a b", "/robots/*/odom", "/a/>", "/a.b", "/robots/r1/alerts/x", "/frames", ""]
)
def test_names_that_could_inject_into_subjects_are_refused(name: str) -> None:
    with pytest.raises(TopicError):
        TopicMapper(Mode.ROBOT, "r1").subscribe(name)


def test_fleet_wildcard_subscribe_only() -> None:
    m = TopicMapper(Mode.FLEET)
    t = m.subscribe("/robots/*/presence")
    assert (t.robot_id, t.subject) == ("*", "robots.*.presence")
    assert m.subscribe("/robots/*/odom").subject == "robots.*.ros.odom"
    assert m.subscribe("/robots/*/health/nats_bridge").subject == "robots.*.health.nats_bridge"
    for bad in ("/robots/*/a b", "/robots/*/>", "/robots/*/alerts/x", "/robots/*"):
        with pytest.raises(TopicError):
            m.subscribe(bad)
    with pytest.raises(TopicError):
        m.publish("/robots/*/cmd_vel")
    with pytest.raises(TopicError):
        TopicMapper(Mode.ROBOT, "r1").subscribe("/robots/*/presence")


def test_wildcard_publish_frames_name_the_robot() -> None:
    body = msgpack.packb({"online": True})
    assert json.loads(protocol.publish_json("/robots/*/presence", {"online": True}, "r3"))["robot"] == "r3"
    fast = msgpack.unpackb(protocol.publish_msgpack("/robots/*/presence", body, "r3"))
    assert fast == {"op": "publish", "topic": "/robots/*/presence", "robot": "r3", "msg": {"online": True}}
    assert cbor2.loads(protocol.publish_cbor("/robots/*/presence", {"online": True}, "r3"))["robot"] == "r3"
    assert "robot" not in json.loads(protocol.publish_json("/odom", {}))
