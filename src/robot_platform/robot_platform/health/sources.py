"""Data caches the checks read: filled by ROS/NATS callbacks, read by the tree tick.

Why a cache: subscription callbacks and the tick run on different threads (and the NATS client on its
own asyncio thread). Callbacks only store what arrived, under a lock, in O(1); the tick computes ages,
rates and anomalies from the cache, so no callback ever waits for a check and a check never waits for
the middleware.

Also holds the *extractors*: small functions that pull the numbers a check needs out of a ROS message.
They use attribute access only, so they are tested with plain objects and this module imports no rclpy.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from robot_platform.health.starvation import LoadGuard

# Arrival stamps kept per topic for the rate estimate: enough for 10 s at 100 Hz. Older stamps are
# dropped (deque maxlen, drop-oldest), which only shortens the window a rate can be measured over.
ARRIVALS_MAX = 1000


@dataclass(frozen=True)
class Sample:
    """The latest value seen on a topic and when it arrived (tree clock, seconds)."""

    value: Any
    stamp: float


class TopicFeed:
    """Arrival times and latest extracted value of one topic.

    Args:
        topic: topic name (for labels and messages).
        msg_type: ROS type string, e.g. ``sensor_msgs/msg/LaserScan``.
        extract: message -> value the checks need (``None`` keeps only the arrival).
    """

    def __init__(self, topic: str, msg_type: str, extract: Callable[[Any], Any] | None = None) -> None:
        self.topic = topic
        self.msg_type = msg_type
        self.extract = extract
        self._lock = threading.Lock()
        self._arrivals: deque[float] = deque(maxlen=ARRIVALS_MAX)
        self._latest: Sample | None = None
        self._first: float | None = None
        self._count = 0
        self._extract_errors = 0

    def on_message(self, msg: Any, now: float) -> None:
        """Callback entry: record the arrival and the extracted value. Never raises on odd messages."""
        self.on_arrivals((now,), msg)

    def on_arrivals(self, stamps: Sequence[float], newest: Any, decode: Callable[[Any], Any] | None = None) -> None:
        """Record a batch of arrivals (oldest first) and the values of the newest message (``decode``d first
        if given: raw CDR bytes); the checks read only the newest (health/ros_drain.py). Stamps are kept
        in order (one earlier than the last recorded counts at the last), so a rate can stop at the first
        stamp out of its window. Never raises on odd messages."""
        if not stamps:
            return
        value = None
        failed = False
        if self.extract is not None:
            try:
                value = self.extract(newest if decode is None else decode(newest))
            except (AttributeError, TypeError, ValueError, RuntimeError):
                failed = True  # wrong shape: counted; the arrival still counts for silence/rate checks
        with self._lock:
            last = self._arrivals[-1] if self._arrivals else stamps[0]
            for stamp in stamps:
                last = stamp if stamp > last else last
                self._arrivals.append(last)
                if self._first is None:
                    self._first = last
            self._count += len(stamps)
            if failed:
                self._extract_errors += 1
            else:
                self._latest = Sample(value, last)

    def latest(self) -> Sample | None:
        with self._lock:
            return self._latest

    def first_arrival(self) -> float | None:
        """When the first message arrived (tree clock), ``None`` before that."""
        with self._lock:
            return self._first

    def last_arrival(self) -> float | None:
        with self._lock:
            return self._arrivals[-1] if self._arrivals else None

    def age(self, now: float) -> float | None:
        """Seconds since the last message, ``None`` if none arrived yet."""
        last = self.last_arrival()
        return None if last is None else max(0.0, now - last)

    def max_gap(self, since: float, now: float) -> float:
        """Longest stretch of ``[since, now]`` without a message (the whole span if none arrived in it).

        Why: "this topic kept arriving through that span" is the evidence a witness gives (LoadGuard).
        Walks the stored arrivals newest first, so it costs the messages of the span only.
        """
        worst, later = 0.0, now
        with self._lock:
            for t in reversed(self._arrivals):
                if t > now:
                    continue
                worst = max(worst, later - max(t, since))
                later = t
                if t <= since:
                    return worst
        return max(worst, later - since)  # history does not reach back to ``since``: silent before

    def rate(self, now: float, window_s: float) -> float:
        """Messages per second over the last ``window_s`` seconds."""
        if window_s <= 0:
            return 0.0
        start = now - window_s
        n = 0
        with self._lock:
            for t in reversed(self._arrivals):  # newest first, in order: stop at the window's start
                if t <= start:
                    break
                n += 1
        return n / window_s

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    @property
    def extract_errors(self) -> int:
        with self._lock:
            return self._extract_errors


class LinkStatus:
    """Connected/disconnected state of an external link (NATS), set from the client's callbacks."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._up = False
        self._changed_at: float | None = None
        self._detail = "never connected"

    def set(self, up: bool, now: float, detail: str = "") -> None:
        with self._lock:
            if up != self._up or self._changed_at is None:
                self._changed_at = now
            self._up = up
            self._detail = detail or ("connected" if up else "disconnected")

    def get(self) -> tuple[bool, float | None, str]:
        """(up, when it last changed, detail)."""
        with self._lock:
            return self._up, self._changed_at, self._detail


class GraphCache:
    """Names of the nodes currently in the ROS graph, and the publishing nodes of each topic the tree reads
    (refreshed by the node on a timer)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: frozenset[str] = frozenset()
        self._stamp: float | None = None
        self._publishers: dict[str, frozenset[str]] = {}

    def set_publishers(self, topic: str, nodes: Iterable[str]) -> None:
        """The nodes publishing ``topic`` now. An empty answer keeps the last known ones: a node that
        stopped publishing (or died) is still the source its silent topic came from."""
        names = frozenset(nodes)
        if names:
            with self._lock:
                self._publishers[topic] = names

    def publishers(self, topic: str) -> frozenset[str]:
        """The nodes last seen publishing ``topic`` (empty if never seen)."""
        with self._lock:
            return self._publishers.get(topic, frozenset())

    def set(self, names: Iterable[str], now: float) -> None:
        with self._lock:
            self._names = frozenset(names)
            self._stamp = now

    def get(self) -> tuple[frozenset[str], float | None]:
        with self._lock:
            return self._names, self._stamp


class DataHub:
    """Every cache the tree reads, keyed by topic or link name. Built by the tree builder."""

    def __init__(self) -> None:
        self.topics: dict[str, TopicFeed] = {}
        self.links: dict[str, LinkStatus] = {}
        self.graph = GraphCache()
        self.load = LoadGuard()  # the monitor feeds it every tick; topic checks ask it before raising

    def feed(self, topic: str, msg_type: str, extract: Callable[[Any], Any] | None) -> TopicFeed:
        """Get or create the feed of ``topic``; a second check on it shares the feed."""
        existing = self.topics.get(topic)
        if existing is not None:
            if existing.extract is None and extract is not None:
                existing.extract = extract
            return existing
        feed = TopicFeed(topic, msg_type, extract)
        self.topics[topic] = feed
        return feed

    def link(self, name: str) -> LinkStatus:
        return self.links.setdefault(name, LinkStatus(name))

    def witnesses(self, topic: str, since: float, now: float, max_gap_s: float) -> list[str]:
        """Other topics published by a node that publishes ``topic`` and that arrived through all of
        ``[since, now]`` with no pause over ``max_gap_s``: proof that the node ran and its messages reached
        the monitor while ``topic`` was silent (see :class:`~.starvation.LoadGuard`). [] if the publisher
        of ``topic`` is unknown (not in the graph yet) or no sibling qualifies."""
        source = self.graph.publishers(topic)
        if not source:
            return []
        return sorted(
            other
            for other, feed in self.topics.items()
            if other != topic and self.graph.publishers(other) & source and feed.max_gap(since, now) <= max_gap_s
        )


# ---- extractors: ROS message -> plain numbers (attribute access only) ----------------------------


def _vec3(v: Any) -> tuple[float, float, float]:
    return (float(v.x), float(v.y), float(v.z))


def extract_odometry(msg: Any) -> dict[str, Any]:
    """nav_msgs/Odometry -> planar speed (m/s), position and yaw rate."""
    lin = msg.twist.twist.linear
    pos = msg.pose.pose.position
    return {
        "speed": math.hypot(float(lin.x), float(lin.y)),
        "position": _vec3(pos),
        "yaw_rate": float(msg.twist.twist.angular.z),
    }


def extract_twist(msg: Any) -> dict[str, float]:
    """geometry_msgs/Twist (or TwistStamped) -> commanded planar speed (m/s)."""
    twist = getattr(msg, "twist", msg)
    return {"speed": math.hypot(float(twist.linear.x), float(twist.linear.y))}


def extract_battery(msg: Any) -> dict[str, float]:
    """sensor_msgs/BatteryState -> charge fraction 0..1 (NaN when the driver does not know)."""
    return {"percentage": float(msg.percentage), "voltage": float(msg.voltage)}


def extract_imu(msg: Any) -> dict[str, tuple[float, ...]]:
    """sensor_msgs/Imu -> orientation quaternion, angular velocity and linear acceleration."""
    o = msg.orientation
    return {
        "orientation": (float(o.x), float(o.y), float(o.z), float(o.w)),
        "angular_velocity": _vec3(msg.angular_velocity),
        "linear_acceleration": _vec3(msg.linear_acceleration),
    }


def extract_pose(msg: Any) -> dict[str, Any]:
    """geometry_msgs/PoseWithCovarianceStamped or PoseStamped -> position."""
    pose = msg.pose.pose if hasattr(msg.pose, "pose") else msg.pose
    return {"position": _vec3(pose.position)}


EXTRACTORS: dict[str, Callable[[Any], Any]] = {
    "nav_msgs/msg/Odometry": extract_odometry,
    "geometry_msgs/msg/Twist": extract_twist,
    "geometry_msgs/msg/TwistStamped": extract_twist,
    "sensor_msgs/msg/BatteryState": extract_battery,
    "sensor_msgs/msg/Imu": extract_imu,
    "geometry_msgs/msg/PoseWithCovarianceStamped": extract_pose,
    "geometry_msgs/msg/PoseStamped": extract_pose,
}
