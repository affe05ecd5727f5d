"""Client sessions and hub: bounded latest-wins queues, throttling, drop counters, a stalled client."""

from __future__ import annotations

import threading
import time
import uuid

import msgpack

from robot_platform.messaging.envelope import Envelope
from robot_platform.ws import protocol
from robot_platform.ws.client_session import ClientSession, SessionLimits
from robot_platform.ws.fanout import Hub
from robot_platform.ws.outgoing import Outgoing, Pending


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def out(i: int, subject: str = "robots.r1.ros.odom", size: int = 0) -> Outgoing:
    body = msgpack.packb({"i": i, "pad": b"x" * size}, use_bin_type=True)
    return Outgoing(subject, "nav_msgs/msg/Odometry", body, "r1")


def sub_req(topic: str = "/odom", **kw: object) -> protocol.Subscribe:
    return protocol.Subscribe(topic=topic, id=kw.pop("id", "s1"), **kw)  # type: ignore[arg-type]


def values(batch: list) -> list[int]:
    return [msgpack.unpackb(p.out.body)["i"] for p in batch if isinstance(p, Pending)]


def test_full_queue_keeps_the_latest_and_counts_drops() -> None:
    s = ClientSession("c1")
    sub, created = s.subscribe(sub_req(queue_length=3), "robots.r1.ros.odom")
    assert created
    for i in range(10):
        s.offer(sub, out(i))
    assert values(s.take(0)) == [7, 8, 9]
    assert sub.dropped_queue == 7 and sub.delivered == 3
    assert s.counters()["topics"]["/odom"]["dropped_queue"] == 7


def test_queue_length_zero_uses_default_and_is_capped() -> None:
    s = ClientSession("c1", limits=SessionLimits(default_queue_length=2, max_queue_length=5))
    sub, _ = s.subscribe(sub_req(), "robots.r1.ros.odom")
    assert sub.depth == 2
    sub, created = s.subscribe(sub_req(queue_length=1000, id="s2"), "robots.r1.ros.odom")
    assert sub.depth == 5 and not created and sub.ids == {"s1", "s2"}


def test_throttle_rate_sends_latest_at_the_throttled_rate() -> None:
    clock = FakeClock()
    s = ClientSession("c1", clock=clock)
    sub, _ = s.subscribe(sub_req(throttle_rate=100, queue_length=1), "robots.r1.ros.odom")
    s.offer(sub, out(0))
    assert values(s.take(0)) == [0]
    for i in range(1, 6):  # arrive within the 100 ms window: only the newest survives
        clock.t += 0.01
        s.offer(sub, out(i))
    assert s.take(0) == []
    clock.t += 0.06
    assert values(s.take(0)) == [5]
    assert sub.dropped_queue == 4


def test_round_robin_between_topics_and_control_first() -> None:
    s = ClientSession("c1", limits=SessionLimits(batch_max=4))
    a, _ = s.subscribe(sub_req("/a", queue_length=100), "robots.r1.ros.a")
    b, _ = s.subscribe(sub_req("/b", queue_length=100), "robots.r1.ros.b")
    for i in range(10):
        s.offer(a, out(i, "robots.r1.ros.a"))
    s.offer(b, out(100, "robots.r1.ros.b"))
    s.send_control(protocol.status("error", "x"))
    batch = s.take(0)
    assert isinstance(batch[0], str) and '"status"' in batch[0]
    assert 100 in values(batch)  # the busy topic /a did not starve /b


def test_byte_cap_bounds_a_client() -> None:
    s = ClientSession("c1", limits=SessionLimits(max_queue_bytes=10_000))
    sub, _ = s.subscribe(sub_req(queue_length=100), "robots.r1.ros.odom")
    for i in range(50):
        s.offer(sub, out(i, size=1000))
    assert s.queued_bytes <= 10_000
    assert sub.dropped_bytes > 0


def test_unsubscribe_by_id_and_render_fragments() -> None:
    s = ClientSession("c1")
    sub, _ = s.subscribe(sub_req(id="a", fragment_size=50), "robots.r1.ros.odom")
    s.subscribe(sub_req(id="b", fragment_size=50), "robots.r1.ros.odom")
    assert s.unsubscribe("/odom", "a") is None  # id b still subscribed
    s.offer(sub, out(1, size=200))
    frames = s.render(s.take(0))
    assert len(frames) > 1 and all('"op":"fragment"' in f for f in frames)
    assert s.unsubscribe("/odom", "b") is sub
    s.offer(sub, out(2))  # after unsubscribe: ignored
    assert s.take(0) == []


def test_take_wakes_on_offer_and_returns_none_when_closed() -> None:
    s = ClientSession("c1")
    sub, _ = s.subscribe(sub_req(), "robots.r1.ros.odom")
    got: list = []
    t = threading.Thread(target=lambda: got.append(s.take(5.0)))
    t.start()
    time.sleep(0.05)
    s.offer(sub, out(3))
    t.join(2.0)
    assert values(got[0]) == [3]
    s.close()
    assert s.take(5.0) is None


def headers() -> dict[str, str]:
    return Envelope(type_name="nav_msgs/msg/Odometry", msg_id=uuid.uuid4().hex, robot_id="r1").headers()


def test_hub_stalled_client_stays_bounded_and_others_keep_receiving() -> None:
    interest: list[tuple[str, bool]] = []
    hub = Hub(lambda s, on: interest.append((s, on)), 1 << 20)
    stalled, healthy = ClientSession("stalled"), ClientSession("healthy")
    for session in (stalled, healthy):
        hub.add_session(session)
        sub, _ = session.subscribe(sub_req(queue_length=5), "robots.r1.ros.odom")
        hub.link(session, sub)
    assert interest == [("robots.r1.ros.odom", True)]
    received: list[int] = []
    stop = threading.Event()

    def healthy_reader() -> None:
        while not stop.is_set():
            batch = healthy.take(0.2)
            if batch:
                received.extend(values(batch))

    reader = threading.Thread(target=healthy_reader)
    reader.start()
    n = 2000
    t0 = time.perf_counter()
    for i in range(n):
        hub.deliver("robots.r1.ros.odom", headers(), msgpack.packb({"i": i}))
    elapsed = time.perf_counter() - t0
    deadline = time.monotonic() + 5
    while (not received or received[-1] != n - 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    reader.join(2)
    stalled_sub = stalled.subscriptions()[0]
    assert len(stalled_sub.pending) == 5 and stalled_sub.dropped_queue == n - 5  # bounded, drops counted
    assert received[-1] == n - 1  # the healthy client got the newest message
    assert elapsed < 2.0  # delivery never waited for the stalled client
    assert hub.snapshot()["dropped"] >= n - 5
    hub.remove_session(stalled)
    hub.remove_session(healthy)
    assert interest[-1] == ("robots.r1.ros.odom", False)
    assert hub.snapshot()["dropped"] >= n - 5  # totals survive the sessions


def test_hub_rejects_bad_envelopes_and_oversize_without_forwarding() -> None:
    hub = Hub(lambda s, on: None, 100)
    s = ClientSession("c1")
    hub.add_session(s)
    sub, _ = s.subscribe(sub_req(), "robots.r1.ros.odom")
    hub.link(s, sub)
    assert hub.deliver("robots.r1.ros.odom", None, msgpack.packb({"i": 1})) == 0
    assert hub.deliver("robots.r1.ros.odom", headers(), b"x" * 101) == 0
    assert hub.deliver("robots.r1.ros.other", headers(), msgpack.packb({"i": 1})) == 0
    assert hub.counters.errors == {"bad_envelope": 1, "oversized": 1}
    assert hub.counters.no_interest == 1
    assert s.take(0) == []


def test_malformed_body_is_counted_not_sent() -> None:
    s = ClientSession("c1")
    sub, _ = s.subscribe(sub_req(), "robots.r1.ros.odom")
    s.offer(sub, Outgoing("robots.r1.ros.odom", "x/msg/Y", b"\xc1garbage"))
    assert s.render(s.take(0)) == []
    assert s.render_errors == 1 and sub.errors == 1


def test_closed_session_is_unlinked_and_its_drops_kept() -> None:
    interest: list[tuple[str, bool]] = []
    hub = Hub(lambda s, on: interest.append((s, on)), 1 << 20)
    s = ClientSession("c1")
    hub.add_session(s)
    sub, _ = s.subscribe(sub_req(queue_length=1), "robots.r1.ros.odom")
    hub.link(s, sub)
    for i in range(3):
        hub.deliver("robots.r1.ros.odom", headers(), msgpack.packb({"i": i}))
    s.close()  # e.g. the stall watchdog closes it before the connection handler cleans up
    hub.remove_session(s)
    assert interest[-1] == ("robots.r1.ros.odom", False)
    assert hub.subjects() == [] and hub.snapshot()["dropped"] == 2


def test_hub_routes_by_subscription_so_overlapping_subjects_are_not_duplicated() -> None:
    hub = Hub(lambda s, on: None, 1 << 20)
    fleet, one = ClientSession("fleet"), ClientSession("one")
    for session, topic, subject in ((fleet, "/robots/*/presence", "robots.*.presence"),
                                    (one, "/robots/r3/presence", "robots.r3.presence")):  # fmt: skip
        hub.add_session(session)
        sub, _ = session.subscribe(sub_req(topic), subject)
        hub.link(session, sub)
    body = msgpack.packb({"i": 1})
    # nats-server delivers the message once per matching subscription, each tagged with its pattern
    assert hub.deliver("robots.r3.presence", headers(), body, "robots.*.presence") == 1
    assert hub.deliver("robots.r3.presence", headers(), body, "robots.r3.presence") == 1
    (frame,) = fleet.render(fleet.take(0))
    assert '"robot":"r3"' in frame and '"topic":"/robots/*/presence"' in frame
    (frame,) = one.render(one.take(0))
    assert '"robot"' not in frame
