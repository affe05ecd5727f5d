"""Control-side mirror: robots' telemetry from NATS republished into the control server's ROS graph.

``robots.<id>.ros.<topic>`` becomes ``<namespace>/<id><topic>`` (``robots.r1.ros.odom`` ->
``/fleet/r1/odom``), so RViz on the control server shows the whole fleet. Only configured topics and
robots are mirrored. The type comes from the envelope, must be installed locally with the same type
hash, and is pinned per mirrored topic: a robot cannot switch a topic's type under a running publisher.
With no robot list, at most ``max_robots`` robot ids are mirrored (first come): each one costs counters,
a pinned type and a ROS publisher per topic, so ids a sender makes up must not grow them without end.

``overview_topics`` (a subset of the topics; the shipped config/control.yaml: /odom) are mirrored from
the robots' decimated copy ``robots.<id>.overview.<topic>`` (2 Hz, nats_bridge
``out.<n>.overview_rate_hz``) instead of
``robots.<id>.ros.<topic>``. Why: the mirror subscribes every robot's topic on the hub, and that
interest is what pulls a topic across each robot's leaf link: mirroring /odom at the robots' 20 Hz
kept ~200 kbit/s on every link whatever the console showed, and republishing it into ROS took 13.8 %
of a core for six robots (bench/RESULTS.md). A site that wants the full rate in RViz empties the list;
the robots must send the copy (config/robot.yaml's odom route does), else nothing of that topic comes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from robot_platform.bridge.core import TopicStats, decode_inbound
from robot_platform.messaging import subjects
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.envelope import DuplicateFilter, Envelope
from robot_platform.messaging.errors import BridgeError, EnvelopeError, NotAllowedError


@dataclass(frozen=True)
class Mirrored:
    robot_id: str
    ros_topic: str  # on the control graph, e.g. /fleet/r1/odom
    cls: type
    msg: Any


DEFAULT_MAX_ROBOTS = 256


class Mirror:
    """Validates mirrored messages; the node owns the ROS publishers."""

    def __init__(
        self,
        codec: Codec,
        topics: Iterable[str],
        robots: Iterable[str] = (),
        namespace: str = "/fleet",
        dedup_capacity: int = 10_000,
        log: Any = None,
        max_robots: int = DEFAULT_MAX_ROBOTS,
        overview_topics: Iterable[str] = (),
    ) -> None:
        self.codec = codec
        self.topics = {subjects.check_topic(t) for t in topics}
        self.overview_topics = {subjects.check_topic(t) for t in overview_topics} & self.topics
        self.robots = {subjects.check_robot_id(r) for r in robots}  # empty = every robot
        self.namespace = subjects.check_topic(namespace)
        self.dedup = DuplicateFilter(dedup_capacity)
        self._pinned: dict[str, type] = {}
        self.max_robots = max_robots
        self._mirrored_robots: set[str] = set()  # robots with at least one message mirrored
        self._log = log or (lambda _m: None)
        self._lock = threading.Lock()
        self.stats: dict[str, TopicStats] = {}
        self.error_totals: dict[str, int] = {}

    def subscriptions(self) -> list[str]:
        """NATS subjects to subscribe: one wildcard over robots per mirrored topic (its overview copy for
        the overview topics)."""
        return [f"{subjects.ROOT}.*.{self._kind(t)}.{subjects.topic_tokens(t)}" for t in sorted(self.topics)]

    def _kind(self, topic: str) -> str:
        return "overview" if topic in self.overview_topics else "ros"

    def on_message(self, subject: str, headers: dict[str, str] | None, data: bytes) -> Mirrored | None:
        """Mirrored message to publish, or None (rejected and counted, or duplicate)."""
        key = subject
        try:
            parsed = subjects.parse(subject)
            if parsed.topic not in self.topics or parsed.kind != self._kind(parsed.topic):
                key = "<other>"
                raise NotAllowedError(subject, "", "topic is not mirrored")
            if self.robots and parsed.robot_id not in self.robots:
                key = "<other>"
                raise NotAllowedError(subject, "", f"robot {parsed.robot_id} is not mirrored")
            with self._lock:
                full = parsed.robot_id not in self._mirrored_robots and len(self._mirrored_robots) >= self.max_robots
            if full:
                key = "<other>"
                raise NotAllowedError(
                    subject, "", f"already {self.max_robots} robots mirrored; list the fleet in mirror.robots"
                )
            stats = self._stats(key)
            stats.received += 1
            self.codec.check_size(subject, data)
            env = Envelope.from_headers(subject, headers)
            if self.dedup.seen(env.msg_id):
                stats.duplicates += 1
                return None
            ros_topic = f"{self.namespace}/{parsed.robot_id}{parsed.topic}"
            cls = self.codec.registry.load(subjects.normalize_type(env.type_name))
            pinned = self._pinned.setdefault(ros_topic, cls)
            if pinned is not cls:
                raise EnvelopeError(subject, "Ros-Type", f"{ros_topic} already carries {pinned.__name__}")
            # Telemetry, not a command: inf/NaN are normal there (LaserScan ranges, unknown covariance).
            msg = decode_inbound(self.codec, cls, data, subject, stats, env.type_hash, allow_non_finite=True)
        except BridgeError as exc:
            self._count(key, exc)
            return None
        stats.delivered += 1
        with self._lock:
            self._mirrored_robots.add(parsed.robot_id)
        return Mirrored(parsed.robot_id, ros_topic, cls, msg)

    def _stats(self, key: str) -> TopicStats:
        with self._lock:
            return self.stats.setdefault(key, TopicStats())

    def _count(self, key: str, exc: BridgeError) -> None:
        stats = self._stats(key)
        with self._lock:
            stats.errors[exc.kind] = stats.errors.get(exc.kind, 0) + 1
            total = self.error_totals.get(exc.kind, 0) + 1
            self.error_totals[exc.kind] = total
        if total <= 10 or total & (total - 1) == 0:
            self._log(f"mirror {key}: dropped ({exc.kind}, {total} so far): {exc}")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "mirror": {k: s.as_dict() for k, s in self.stats.items()},
                "mirror_errors": dict(self.error_totals),
            }
