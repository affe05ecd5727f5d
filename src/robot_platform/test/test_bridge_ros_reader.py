"""OutReader: the bridge's outbound subscriptions read by their own thread, on a real in-process ROS graph."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from robot_platform.bridge.core import BridgeCore
from robot_platform.bridge.ros_reader import OutReader
from robot_platform.messaging.codec import Codec

QOS = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, line: str) -> None:
        self.lines.append(line)

    error = warning


class Batches:
    """Stands in for NatsLink.batch: counts the bursts the reader hands over. With ``handed`` (how many
    messages were handed on so far) only those in which it grew, as the real outbox wakes its sender
    only for those. ``current`` numbers the batch in progress (0: none)."""

    def __init__(self, handed: Callable[[], int] | None = None) -> None:
        self.count = 0
        self.current = 0
        self._opened = 0
        self._handed = handed

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        self._opened += 1
        self.current = self._opened
        before = self._handed() if self._handed else 0
        try:
            yield
        finally:
            self.current = 0
            if self._handed is None or self._handed() != before:
                self.count += 1


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def node(context: Context) -> Iterator[Node]:
    n = Node("reader_test", context=context)
    try:
        yield n
    finally:
        n.destroy_node()


def connect(node: Node, pub: Any) -> None:
    wait_until(lambda: pub.get_subscription_count() > 0, 10.0, "the subscription to match the publisher")


def test_reader_delivers_in_order_in_bursts_and_the_executor_never_takes(node: Node, context: Context) -> None:
    got: list[str] = []
    batches = Batches(lambda: len(got))
    reader = OutReader(context, lambda _now: None, batches, Log())
    sub = node.create_subscription(String, "/burst", lambda m: got.append(m.data), QOS, callback_group=reader.group)
    reader.add(sub, lambda m: got.append(m.data))
    pub = node.create_publisher(String, "/burst", QOS)
    connect(node, pub)
    for i in range(200):
        pub.publish(String(data=str(i)))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    for _ in range(20):  # the node's executor must leave the reader's subscription alone
        executor.spin_once(timeout_sec=0.01)
    assert got == []
    reader.start()
    try:
        wait_until(lambda: len(got) == 200, 10.0, "200 messages through the reader")
    finally:
        reader.stop()
        executor.shutdown()
    assert got == [str(i) for i in range(200)]
    assert batches.count <= 10  # queued messages go out in bursts (64 per take), not one wake each


def test_reader_releases_rate_limited_messages_when_due(node: Node, context: Context) -> None:
    sent: list[tuple[str, bytes, dict[str, str]]] = []
    core = BridgeCore("r1", Codec(), lambda s, b, h: sent.append((s, b, h)))
    route = core.add_out_route("/limited", "std_msgs/msg/String", max_rate_hz=5.0)
    reader = OutReader(context, core.flush_due, Batches(), Log())
    handle = partial(core.on_ros_message, route)
    sub = node.create_subscription(String, "/limited", handle, QOS, callback_group=reader.group)
    reader.add(sub, handle)
    pub = node.create_publisher(String, "/limited", QOS)
    connect(node, pub)
    reader.start()
    try:
        for text in ("first", "middle", "last"):
            pub.publish(String(data=text))
        # "first" goes at once; "last" replaces "middle" and must be released ~0.2 s later with no new message.
        wait_until(lambda: len(sent) == 2, 3.0, "the held message to be released")
    finally:
        reader.stop()
    assert [b for _, b, _ in sent] == [core.codec.encode(String(data=t)) for t in ("first", "last")]
    stats = core.snapshot()["out"]["/limited"]
    assert (stats["out"], stats["dropped_rate"]) == (2, 1)


def test_takes_and_due_releases_of_a_round_share_one_batch(node: Node, context: Context) -> None:
    """With a read period, what a round takes and what the rate limits release then go to NATS in one
    batch (one wake-up of the NATS thread). Would catch: the releases flushed apart from the takes."""
    batches = Batches()
    sent: list[tuple[bytes, int]] = []  # (body, batch it was sent in)
    core = BridgeCore("r1", Codec(), lambda s, b, h: sent.append((b, batches.current)))
    limited = core.add_out_route("/held", "std_msgs/msg/String", max_rate_hz=5.0)
    free = core.add_out_route("/free", "std_msgs/msg/String")
    reader = OutReader(context, core.flush_due, batches, Log(), min_period_s=0.5)
    pubs = {}
    for route in (limited, free):
        handle = partial(core.on_ros_message, route)
        reader.add(node.create_subscription(String, route.topic, handle, QOS, callback_group=reader.group), handle)
        pubs[route.topic] = node.create_publisher(String, route.topic, QOS)
        connect(node, pubs[route.topic])
    pubs["/held"].publish(String(data="h1"))
    pubs["/held"].publish(String(data="h2"))  # held 0.2 s by the rate limit
    reader.start()
    try:
        wait_until(lambda: len(sent) == 1, 3.0, "the first message")
        pubs["/free"].publish(String(data="f1"))  # arrives while the reader waits out its period
        wait_until(lambda: len(sent) == 3, 3.0, "the free message and the released one")
    finally:
        reader.stop()
    body = {core.codec.encode(String(data=t)): t for t in ("h1", "h2", "f1")}
    (first, b1), (second, b2), (third, b3) = sent
    assert (body[first], body[second], body[third]) == ("h1", "f1", "h2")
    assert b1 != b2 and b2 == b3 != 0, f"batches {b1}, {b2}, {b3}"


def test_reader_picks_up_subscriptions_added_while_running(node: Node, context: Context) -> None:
    got: list[str] = []
    reader = OutReader(context, lambda _now: None, Batches(), Log())
    reader.start()
    try:
        handle: Callable[[Any], None] = lambda m: got.append(m.data)  # noqa: E731
        sub = node.create_subscription(String, "/late", handle, QOS, callback_group=reader.group)
        reader.add(sub, handle)
        pub = node.create_publisher(String, "/late", QOS)
        connect(node, pub)
        pub.publish(String(data="hello"))
        wait_until(lambda: got == ["hello"], 5.0, "a message on a topic added after start")
        t0 = time.monotonic()
    finally:
        reader.stop()
    assert time.monotonic() - t0 < 1.0  # stop wakes the thread; it does not wait out its idle timeout


def test_reader_failure_is_logged_and_stops_the_node(node: Node, context: Context) -> None:
    log = Log()
    reader = OutReader(context, lambda _now: None, Batches(), log)

    def broken(_msg: Any) -> None:
        raise RuntimeError("bug in a handler")

    sub = node.create_subscription(String, "/broken", broken, QOS, callback_group=reader.group)
    reader.add(sub, broken)
    pub = node.create_publisher(String, "/broken", QOS)
    connect(node, pub)
    reader.start()
    try:
        pub.publish(String(data="x"))
        wait_until(lambda: not context.ok(), 5.0, "the context to be shut down")
    finally:
        reader.stop()
    assert any("bug in a handler" in line and "stopping the node" in line for line in log.lines)
    assert not any(t.name == "nats_bridge-ros-out" and t.is_alive() for t in threading.enumerate())


def test_reader_with_a_period_takes_in_rounds_and_keeps_reception_times(node: Node, context: Context) -> None:
    """robot_agent's capture reader (~1.5 s). Would catch: a message per wake-up again (the rounds), lost
    messages between rounds, or arrival times that are the round's instead of the middleware's."""
    got: list[tuple[str, int]] = []
    batches = Batches(lambda: len(got))
    reader = OutReader(context, lambda _now: None, batches, Log(), min_period_s=0.2)
    handle: Callable[[Any, dict[str, Any]], None] = lambda m, info: got.append((m.data, info["received_timestamp"]))  # noqa: E731
    sub = node.create_subscription(String, "/rounds", lambda m: None, QOS, callback_group=reader.group)
    reader.add(sub, handle, with_info=True)
    pub = node.create_publisher(String, "/rounds", QOS)
    connect(node, pub)
    reader.start()
    try:
        t0 = time.monotonic()
        for i in range(100):  # 200 Hz for 0.5 s
            pub.publish(String(data=str(i)))
            time.sleep(max(0.0, t0 + (i + 1) * 0.005 - time.monotonic()))
        wait_until(lambda: len(got) == 100, 10.0, "100 messages through the reader")
    finally:
        reader.stop()
    assert [d for d, _ in got] == [str(i) for i in range(100)]
    assert batches.count <= 6, f"{batches.count} rounds for 0.5 s at 0.2 s each"
    stamps = [ns for _, ns in got]
    assert stamps == sorted(stamps) and (stamps[-1] - stamps[0]) / 1e9 > 0.3, "the middleware's reception times"
