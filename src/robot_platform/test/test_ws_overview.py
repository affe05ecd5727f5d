"""The choice between a topic's full rate and the robots' overview copy (ws/overview.py, ws/fanout.py).

What it would catch: a fleet overview client (500 ms) pulling the full 20 Hz over every leaf link; a
detail view (100 ms) stuck on the 2 Hz copy; the agent staying at the full rate after the detail view
left or slowed down; a switch that loses the subscription (no source) or keeps both; overview messages
not reaching the topic's clients as the topic they subscribed.
"""

from __future__ import annotations

import uuid

import msgpack
import pytest

from robot_platform.messaging import subjects
from robot_platform.messaging.envelope import Envelope
from robot_platform.messaging.errors import SubjectError
from robot_platform.ws import protocol
from robot_platform.ws.client_session import ClientSession
from robot_platform.ws.fanout import Hub
from robot_platform.ws.outgoing import Pending
from robot_platform.ws.overview import OverviewPolicy

FULL, OVERVIEW = "robots.r1.ros.odom", "robots.r1.overview.odom"
POLICY = OverviewPolicy.of(["/odom"], 2.0)


def test_policy_picks_the_overview_only_when_every_client_is_slow_enough() -> None:
    assert POLICY.source(FULL, [0.5]) == OVERVIEW  # the fleet overview: 500 ms = the 2 Hz period
    assert POLICY.source(FULL, [0.5, 1.0]) == OVERVIEW
    assert POLICY.source(FULL, [0.5, 0.1]) == FULL  # a detail view asks for 10 Hz
    assert POLICY.source(FULL, [0.0]) == FULL  # no throttle: every message
    assert POLICY.source(FULL, [0.4]) == FULL
    assert POLICY.source(FULL, []) == FULL
    assert POLICY.source("robots.*.ros.odom", [2.0]) == "robots.*.overview.odom"  # /robots/*/odom
    assert POLICY.source("robots.r1.ros.scan", [1.0]) == "robots.r1.ros.scan"  # no overview copy of it
    assert POLICY.source("robots.r1.ros.odom.extra", [1.0]) == "robots.r1.ros.odom.extra"
    assert POLICY.source("robots.r1.alerts", [1.0]) == "robots.r1.alerts"
    assert OverviewPolicy().source(FULL, [5.0]) == FULL  # no overview topics configured (robot mode)


def test_policy_refuses_bad_config_and_names_subjects_by_the_scheme() -> None:
    with pytest.raises(SubjectError):
        OverviewPolicy.of(["odom"], 2.0)
    with pytest.raises(ValueError):
        OverviewPolicy.of(["/odom"], 0.0)
    assert subjects.overview("r1", "/a/b") == "robots.r1.overview.a.b"
    assert subjects.parse("robots.r1.overview.a.b").topic == "/a/b"
    assert subjects.overview_of("robots.r1.alerts") is None


def subscribe(hub: Hub, session: ClientSession, throttle_ms: int, topic: str = "/robots/r1/odom") -> None:
    sub, created = session.subscribe(protocol.Subscribe(topic=topic, id="s1", throttle_rate=throttle_ms), FULL)
    if created:
        hub.link(session, sub)
    else:
        hub.retune(sub)


def unsubscribe(hub: Hub, session: ClientSession, topic: str = "/robots/r1/odom") -> None:
    removed = session.unsubscribe(topic, None)
    assert removed is not None
    hub.unlink(session, removed)


def test_hub_switches_sources_with_its_clients_throttles() -> None:
    interest: list[tuple[str, bool]] = []
    hub = Hub(lambda s, on: interest.append((s, on)), 1 << 20, overview=POLICY)
    overview_a, overview_b, detail = ClientSession("a"), ClientSession("b"), ClientSession("d")
    subscribe(hub, overview_a, 500)
    subscribe(hub, overview_b, 500)
    assert interest == [(OVERVIEW, True)] and hub.source_of(FULL) == OVERVIEW
    subscribe(hub, detail, 100)  # a detail view opens: full rate first, then the copy is dropped
    assert interest[1:] == [(FULL, True), (OVERVIEW, False)] and hub.source_of(FULL) == FULL
    unsubscribe(hub, detail)  # it leaves: back to the copy
    assert interest[3:] == [(OVERVIEW, True), (FULL, False)]
    subscribe(hub, overview_a, 100)  # the console's detail view is setOptions on the same subscription
    assert interest[5:] == [(FULL, True), (OVERVIEW, False)]
    subscribe(hub, overview_a, 500)  # and closing it puts the overview throttle back
    assert interest[7:] == [(OVERVIEW, True), (FULL, False)]
    subscribe(hub, overview_b, 1000)  # still slow enough: nothing changes
    assert len(interest) == 9
    unsubscribe(hub, overview_a)
    unsubscribe(hub, overview_b)
    assert interest[9:] == [(OVERVIEW, False)] and hub.source_of(FULL) is None
    assert hub.snapshot()["source_switches"] == 4


def test_overview_messages_reach_the_topics_clients_as_that_topic() -> None:
    hub = Hub(lambda s, on: None, 1 << 20, overview=POLICY)
    client = ClientSession("a")
    hub.add_session(client)
    subscribe(hub, client, 500)
    env = Envelope(type_name="nav_msgs/msg/Odometry", msg_id=uuid.uuid4().hex, robot_id="r1", topic="/odom")
    assert hub.deliver(OVERVIEW, env.headers(), msgpack.packb({"i": 7}), pattern=OVERVIEW) == 1
    batch = [p for p in client.take(1.0) or [] if isinstance(p, Pending)]
    assert len(batch) == 1 and batch[0].topic == "/robots/r1/odom"
    assert msgpack.unpackb(batch[0].out.body) == {"i": 7}
    assert hub.snapshot()["overview_subjects"] == 1


def test_without_a_policy_the_hub_subscribes_the_clients_subject() -> None:
    interest: list[tuple[str, bool]] = []
    hub = Hub(lambda s, on: interest.append((s, on)), 1 << 20)
    client = ClientSession("a")
    subscribe(hub, client, 500)
    unsubscribe(hub, client)
    assert interest == [(FULL, True), (FULL, False)]


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def odom_headers() -> dict[str, str]:
    return Envelope(type_name="nav_msgs/msg/Odometry", msg_id=uuid.uuid4().hex, robot_id="r1", topic="/odom").headers()


def test_a_silent_overview_copy_falls_back_to_the_full_rate_and_is_tried_again() -> None:
    """A robot whose bridge sends no copy (an older release) must still show its odometry."""
    interest: list[tuple[str, bool]] = []
    clock = Clock()
    hub = Hub(lambda s, on: interest.append((s, on)), 1 << 20, overview=POLICY, clock=clock)
    client = ClientSession("a")
    hub.add_session(client)
    subscribe(hub, client, 500)
    assert hub.source_of(FULL) == OVERVIEW
    clock.t += 2.0  # the copy arrives: stays on it
    hub.deliver(OVERVIEW, odom_headers(), msgpack.packb({"i": 1}), pattern=OVERVIEW)
    clock.t += 2.5
    hub.deliver("robots.r2.health", None, b"", pattern="robots.r2.health")  # any message drives the check
    assert hub.source_of(FULL) == OVERVIEW  # heard 2.5 s ago: within the 3 s grace
    clock.t += 1.0
    hub.deliver("robots.r2.health", None, b"", pattern="robots.r2.health")
    assert hub.source_of(FULL) == FULL and hub.snapshot()["overview_fallbacks"] == 1  # silent 3.5 s
    assert hub.deliver(FULL, odom_headers(), msgpack.packb({"i": 2}), pattern=FULL) == 1  # served at full rate
    subscribe(hub, client, 1000)  # an option change meanwhile keeps the full rate
    assert hub.source_of(FULL) == FULL
    clock.t += 30.5  # the fallback ends: the copy is tried again
    hub.deliver("robots.r2.health", None, b"", pattern="robots.r2.health")
    assert hub.source_of(FULL) == OVERVIEW
    assert interest == [(OVERVIEW, True), (FULL, True), (OVERVIEW, False), (OVERVIEW, True), (FULL, False)]
    unsubscribe(hub, client)
    clock.t += 10.0  # no client: nothing to fall back
    hub.deliver("robots.r2.health", None, b"", pattern="robots.r2.health")
    assert hub.source_of(FULL) is None and hub.snapshot()["overview_fallbacks"] == 1
