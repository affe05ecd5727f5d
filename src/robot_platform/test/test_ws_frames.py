"""Camera frames through ws_agent: binary frame messages, one latest-frame slot per client, one lease per
camera held by the agent (LeaseKeeper with time passed in; the agent's wiring without sockets)."""

from __future__ import annotations

import time

import msgpack
import pytest

from robot_platform.frames.meta import FrameMeta
from robot_platform.ws import protocol
from robot_platform.ws.camera_leases import LeaseKeeper
from robot_platform.ws.client_session import ClientSession
from robot_platform.ws.errors import TopicError
from robot_platform.ws.fanout import Hub
from robot_platform.ws.frame_relay import encode_frame, is_frame_subject
from robot_platform.ws.outgoing import Pending
from robot_platform.ws.server import AgentConfig, WsAgent
from robot_platform.ws.topics import Mode, TopicMapper

SUBJECT = "robots.r1.frames.front"
JPEG = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"


def meta(seq: int = 1) -> FrameMeta:
    return FrameMeta(
        robot_id="r1", camera="front", topic="/camera/image_raw", stamp="1700000000.500000000", seq=seq,
        origin="o", sent_ns=1_700_000_000_600_000_000, msg_id=f"o-{seq}", width=320, height=240,
        encoding="rgb8", quality=80, scale=0.5,
    )  # fmt: skip


def test_frame_subjects() -> None:
    assert is_frame_subject(SUBJECT)
    for subject in ("robots.r1.frames.front.lease", "robots.*.frames.front", "robots.r1.ros.odom", "robots.r1.frames"):
        assert not is_frame_subject(subject)


def test_frame_message_format() -> None:
    msg = msgpack.unpackb(encode_frame("/robots/r1/frames/front", meta(7), JPEG), raw=False)
    assert msg["op"] == "frame" and msg["topic"] == "/robots/r1/frames/front" and msg["data"] == JPEG
    m = msg["meta"]
    assert (m["robot"], m["camera"], m["width"], m["height"], m["seq"], m["format"]) == (
        "r1",
        "front",
        320,
        240,
        7,
        "jpeg",
    )
    assert m["stamp_ms"] == pytest.approx(1_700_000_000_500.0) and m["sent_ms"] == pytest.approx(1_700_000_000_600.0)
    assert m["source_topic"] == "/camera/image_raw" and m["quality"] == 80 and m["scale"] == 0.5


def test_mapper_frames_targets() -> None:
    robot = TopicMapper(Mode.ROBOT, "r1")
    assert robot.subscribe("/frames/front").frames and robot.subscribe("/robots/r1/frames/front").subject == SUBJECT
    assert not robot.subscribe("/odom").frames
    fleet = TopicMapper(Mode.FLEET)
    for name in ("/robots/r1/frames/front/lease", "/robots/*/frames/front"):
        with pytest.raises(TopicError):
            fleet.subscribe(name)


def test_hub_delivers_binary_frames_latest_only() -> None:
    hub = Hub(lambda _s, _w: None, 8 * 1024 * 1024)
    session = ClientSession("c1")
    sub, _ = session.subscribe(
        protocol.Subscribe("/robots/r1/frames/front", queue_length=50), SUBJECT, latest_only=True
    )
    hub.link(session, sub)
    for seq in (1, 2, 3):
        assert hub.deliver(SUBJECT, meta(seq).headers(), JPEG) == 1
    batch = session.take(0)
    assert len(batch) == 1 and isinstance(batch[0], Pending)  # one slot per camera: never a backlog
    assert sub.depth == 1 and sub.dropped_queue == 2
    frames = session.render(batch)
    assert isinstance(frames[0], bytes)
    msg = msgpack.unpackb(frames[0], raw=False)
    assert msg["meta"]["seq"] == 3 and msg["data"] == JPEG
    # A frame with broken headers (or an envelope instead of frame headers) is counted, not forwarded.
    headers = meta(4).headers()
    headers["Rp-Frame-Width"] = "wide"
    assert hub.deliver(SUBJECT, headers, JPEG) == 0
    assert hub.deliver(SUBJECT, {"Ros-Type": "sensor_msgs/msg/Image", "Nats-Msg-Id": "x"}, JPEG) == 0
    assert hub.counters.errors == {"bad_frame": 2}


def test_lease_keeper_grant_renew_release() -> None:
    keeper = LeaseKeeper(ttl_s=6.0, retry_s=1.0, id_prefix="ws_agent-r1")
    assert keeper.due(0.0) == [] and keeper.next_due() is None
    keeper.want(SUBJECT, 10.0)
    keeper.want(SUBJECT, 10.0)  # idempotent: one lease per camera
    (grant,) = keeper.due(10.0)
    assert grant.lease_subject == f"{SUBJECT}.lease" and not grant.release
    body = msgpack.unpackb(grant.body)
    assert body["ttl_s"] == 6.0 and body["lease_id"].startswith("ws_agent-r1-")
    assert keeper.due(10.0) == [] and keeper.next_due() is None  # in flight: nothing more
    keeper.on_reply(grant, {"ok": True, "ttl_s": 6.0, "lease_id": body["lease_id"]}, 10.1)
    assert keeper.next_due() == pytest.approx(12.1)  # renew every ttl/3
    assert keeper.due(12.0) == []
    (renew,) = keeper.due(12.1)
    assert msgpack.unpackb(renew.body)["lease_id"] == body["lease_id"]  # the same lease, renewed
    keeper.on_reply(renew, {"ok": True, "ttl_s": 3.0}, 12.2)  # the robot granted less: renew sooner
    assert keeper.next_due() == pytest.approx(13.2)
    keeper.unwant(SUBJECT, 13.0)
    (release,) = keeper.due(13.0)
    assert release.release and msgpack.unpackb(release.body) == {"lease_id": body["lease_id"], "release": True}
    keeper.on_reply(release, {"ok": True}, 13.1)
    assert keeper.held() == {} and keeper.next_due() is None
    c = keeper.counters
    assert (c.requests, c.granted, c.renewed, c.released, c.failures) == (3, 1, 1, 1, 0)


def test_lease_keeper_retries_and_races() -> None:
    keeper = LeaseKeeper(ttl_s=6.0, retry_s=1.0)
    keeper.want(SUBJECT, 0.0)
    (grant,) = keeper.due(0.0)
    keeper.on_reply(grant, None, 1.0)  # no frame_publisher: retried after retry_s
    assert keeper.next_due() == 2.0 and keeper.counters.failures == 1
    (grant,) = keeper.due(2.0)
    keeper.unwant(SUBJECT, 2.1)  # last client left while the grant was on its way
    keeper.on_reply(grant, {"ok": True, "ttl_s": 6.0}, 2.2)
    (release,) = keeper.due(2.2)  # ... so it is released at once
    assert release.release
    keeper.want(SUBJECT, 2.3)  # and a client came back before the release was answered
    keeper.on_reply(release, {"ok": True}, 2.4)
    (again,) = keeper.due(2.4)
    assert not again.release and keeper.held() == {SUBJECT: msgpack.unpackb(again.body)["lease_id"]}


def test_agent_takes_one_lease_per_watched_camera() -> None:
    """The agent's wiring: first subscribe -> lease wanted; second client -> same lease; last one out -> released."""
    agent = WsAgent(AgentConfig(mode=Mode.ROBOT, robot_id="r1", port=0, anonymous_role="viewer"))
    gw = agent.gateway
    a, b = gw.open(agent.access.anonymous, "a"), gw.open(agent.access.anonymous, "b")
    gw.handle(a, '{"op": "subscribe", "topic": "/frames/front"}')
    gw.handle(b, '{"op": "subscribe", "topic": "/robots/r1/frames/front", "queue_length": 20}')
    gw.handle(a, '{"op": "subscribe", "topic": "/robots/r1/frames/front/lease"}')  # refused: not a camera
    assert list(agent.leases.held()) == [SUBJECT]
    assert len(agent.leases.due(time.monotonic())) == 1
    gw.handle(a, '{"op": "unsubscribe", "topic": "/frames/front"}')
    assert list(agent.leases.held()) == [SUBJECT]  # b still watches
    gw.close(b)
    assert agent.leases.held() == {}
