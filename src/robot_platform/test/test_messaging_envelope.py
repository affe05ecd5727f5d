"""Envelope headers and duplicate detection."""

from __future__ import annotations

import pytest
from nav_msgs.msg import Odometry
from std_msgs.msg import String

from robot_platform.messaging.envelope import DuplicateFilter, Envelope, EnvelopeFactory, stamp_of
from robot_platform.messaging.errors import EnvelopeError


def test_factory_headers_round_trip() -> None:
    factory = EnvelopeFactory("r1")
    a = factory.make("nav_msgs/msg/Odometry", "RIHS01_x", "/odom", "1.000000002")
    b = factory.make("nav_msgs/msg/Odometry", "RIHS01_x", "/odom")
    c = factory.make("sensor_msgs/msg/Imu", "RIHS01_y", "/imu")
    assert (a.seq, b.seq, c.seq) == (1, 2, 1)
    assert a.msg_id != b.msg_id and a.origin == b.origin
    headers = a.headers()
    assert headers["Nats-Msg-Id"] == a.msg_id  # JetStream dedups on it too
    assert headers["Content-Type"] == "application/msgpack"
    assert all(isinstance(v, str) for v in headers.values())
    assert Envelope.from_headers("s", headers) == a


def test_factory_fast_headers_match_make_and_share_its_sequence() -> None:
    """headers() (the bridge's per-message path) gives what make().headers() gives, same counters."""
    fast, slow = EnvelopeFactory("r1", origin="o1"), EnvelopeFactory("r1", origin="o1")
    for stamp in ("1.000000002", "", "3.000000004"):
        h = fast.headers("nav_msgs/msg/Odometry", "RIHS01_x", "/odom", stamp)
        ref = slow.make("nav_msgs/msg/Odometry", "RIHS01_x", "/odom", stamp).headers()
        assert int(h.pop("Rp-Sent-Ns")) > 0 and int(ref.pop("Rp-Sent-Ns")) > 0
        assert h == ref
    mixed = fast.make("nav_msgs/msg/Odometry", "RIHS01_x", "/odom")  # both paths count the same sequence
    assert (mixed.seq, mixed.msg_id) == (4, "o1-4")
    assert Envelope.from_headers("s", fast.headers("std_msgs/msg/String", "RIHS01_y", "/chatter")).seq == 1


@pytest.mark.parametrize(
    ("headers", "bad"),
    [
        (None, "Ros-Type"),
        ({}, "Ros-Type"),
        ({"Nats-Msg-Id": "x"}, "Ros-Type"),
        ({"Ros-Type": "std_msgs/msg/String"}, "Nats-Msg-Id"),
        ({"Ros-Type": "t", "Nats-Msg-Id": "x", "Rp-Seq": "-1"}, "Rp-Seq"),
        ({"Ros-Type": "t", "Nats-Msg-Id": "x", "Rp-Sent-Ns": "soon"}, "Rp-Sent-Ns"),
        ({"Ros-Type": "t", "Nats-Msg-Id": "x", "Content-Type": "application/json"}, "Content-Type"),
        ({"Ros-Type": "t" * 300, "Nats-Msg-Id": "x"}, "Ros-Type"),
    ],
)
def test_bad_headers(headers: dict | None, bad: str) -> None:
    with pytest.raises(EnvelopeError) as err:
        Envelope.from_headers("robots.r1.cmd.x", headers)
    assert err.value.header == bad


def test_stamp_of() -> None:
    odom = Odometry()
    odom.header.stamp.sec, odom.header.stamp.nanosec = 5, 42
    assert stamp_of(odom) == "5.000000042"
    assert stamp_of(String()) == ""


def test_duplicate_filter_is_bounded_lru() -> None:
    dup = DuplicateFilter(capacity=3)
    assert [dup.seen(x) for x in "abc"] == [False, False, False]
    assert dup.seen("a") is True  # a becomes most recent
    assert dup.seen("d") is False  # evicts b
    assert len(dup) == 3
    assert dup.seen("b") is False
    assert dup.seen("a") is True
    assert dup.duplicates == 2
    with pytest.raises(ValueError):
        DuplicateFilter(0)
