"""The health tree's topics, read once per tick instead of once per message (rclpy glue).

Why: the checks only need, per topic, when messages arrived (silence, rate) and the newest one's values
(odometry, IMU, battery: read by the tick from :meth:`.sources.TopicFeed.latest`). A subscription run by
rclpy's executor wakes the node's executor for every message, and each wake-up (Jazzy) rebuilds a wait set
of every entity of the node and wraps the callback in a task: ~1 ms of a core per message here, 8-12 % of
a core for the default telemetry (80 messages/s; bench/RESULTS.md, "Robot agent footprint"). A reader
thread of its own (as nats_bridge has) still woke 80 times a second, and added a thread writing the
feeds while the tick read them.

So the subscriptions are created in a :class:`~robot_platform.bridge.ros_reader.ReaderGroup` (never run by
an executor) with a history deep enough to hold a tick's messages (:data:`DRAIN_DEPTH`), and the tick,
on the node's executor thread, first takes everything queued (:meth:`TopicDrain.drain`): raw CDR bytes,
no Python message built, plus the middleware's reception time of each, so arrival times are as exact as
with a callback. Only the newest message of a topic whose checks read values is deserialized, once per
tick. Feeds, drain and checks all run on the executor's one thread: nothing to lock against.

A topic faster than ``DRAIN_DEPTH`` messages per tick loses the oldest arrivals of a tick (KEEP_LAST):
its measured rate saturates at ``DRAIN_DEPTH * tick_rate_hz`` (500/s at the default 5 Hz), far above any
``min_rate_hz`` a check could ask of it. QoS overrides (``qos_overrides.<topic>.subscription.*``) still
apply, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rclpy.exceptions import InvalidHandle
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.qos_overriding_options import QoSOverridingOptions

from robot_platform.bridge.ros_batch import cdr_decoder
from robot_platform.bridge.ros_reader import ReaderGroup
from robot_platform.health.sources import TopicFeed

DRAIN_DEPTH = 100  # messages kept per topic between two ticks (KEEP_LAST); see the module docstring


@dataclass
class _Drained:
    subscription: Any
    feed: TopicFeed
    decode: Callable[[bytes], Any] | None  # raw CDR -> message; None when no check reads values


class TopicDrain:
    """The health node's topic subscriptions, emptied into their feeds by :meth:`drain`."""

    def __init__(self, node: Node, clock: Callable[[], float]) -> None:
        self._node = node
        self._clock = clock
        self._group = ReaderGroup()
        self._entries: list[_Drained] = []

    def add(self, msg_class: type, topic: str, qos: QoSProfile, feed: TopicFeed) -> None:
        """Subscribe ``topic`` (raw, history ``DRAIN_DEPTH``) for ``feed``."""
        deep = QoSProfile(
            history=qos.history,
            depth=max(qos.depth, DRAIN_DEPTH),
            reliability=qos.reliability,
            durability=qos.durability,
        )
        sub = self._node.create_subscription(
            msg_class,
            topic,
            _never_called,
            deep,
            callback_group=self._group,
            raw=True,
            qos_overriding_options=QoSOverridingOptions.with_default_policies(),
        )
        decode = None if feed.extract is None else cdr_decoder(msg_class)
        self._entries.append(_Drained(sub, feed, decode))

    def drain(self) -> int:
        """Take every queued message of every topic into its feed (call from the tick); return how many."""
        total = 0
        now_mono, now_wall_ns = self._clock(), time.time_ns()
        for entry in self._entries:
            stamps: list[float] = []
            newest: bytes | None = None
            try:
                handle = entry.subscription.handle
                with handle:
                    while len(stamps) < DRAIN_DEPTH:
                        taken = handle.take_message(entry.subscription.msg_type, True)
                        if taken is None:
                            break
                        newest, info = taken
                        received_ns = info.get("received_timestamp") or 0
                        # The middleware's reception time (system clock) on the tree's monotonic clock;
                        # an rmw without it (0) counts the message as arrived now.
                        lag_s = max(0, now_wall_ns - received_ns) / 1e9 if received_ns else 0.0
                        stamps.append(now_mono - lag_s)
            except InvalidHandle:  # destroyed during shutdown: nothing more to read
                continue
            if stamps:
                entry.feed.on_arrivals(stamps, newest, entry.decode)
                total += len(stamps)
        return total


def _never_called(_msg: Any) -> None:  # the ReaderGroup keeps every executor away from these subscriptions
    raise AssertionError("health topics are drained by the tick, never by an executor")
