"""What the bridge does with each message, without ROS or NATS objects: plain, unit-testable logic.

Outbound (ROS -> NATS): rate limit (keep latest), encode, size check, envelope, hand to ``send``; a route
with an overview rate also sends a keep-latest copy of what it sent, as it is (same body and headers),
at that lower rate on ``robots.<id>.overview.<topic>``: a fleet overview (the console's table at 2 Hz)
takes that subject and leaves the full rate on the robot unless a detail view asks for it.
Inbound (NATS -> ROS): size check, envelope, allowlist (subject + type), duplicate drop, type hash,
decode + validate (NaN/inf refused unless the allowlist entry opts in: every command, whether sent by
a script or forwarded by ws_agent from a browser, passes here); the result is a ready ROS message for
the node to publish. Every rejection is a typed error counted per topic/subject and kind, logged
(throttled), and never stops the bridge.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from robot_platform.bridge.rate_limit import KeepLatestLimiter
from robot_platform.messaging import subjects
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.envelope import DuplicateFilter, Envelope, EnvelopeFactory, stamp_of
from robot_platform.messaging.errors import BridgeError, EnvelopeError
from robot_platform.messaging.rostypes import type_name_of

SendFn = Callable[[str, bytes, dict[str, str]], None]
LogFn = Callable[[str], None]


@dataclass
class TopicStats:
    """Counters of one topic (out) or one command subject (in)."""

    out: int = 0
    received: int = 0
    delivered: int = 0
    dropped_rate: int = 0
    duplicates: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    codec_ns: int = 0  # total time spent encoding (out) or decoding (in)

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "in": self.received,
            "delivered": self.delivered,
            "dropped_rate": self.dropped_rate,
            "duplicates": self.duplicates,
            "errors": dict(self.errors),
            "codec_ms": round(self.codec_ns / 1e6, 3),
        }


def decode_inbound(
    codec: Codec,
    cls: type,
    data: bytes,
    subject: str,
    stats: TopicStats,
    type_hash: str = "",
    allow_non_finite: bool = False,
) -> Any:
    """Decode an inbound message into ``cls`` for every inbound path (commands, fleet mirror, services).

    Refuses a sender's type hash that differs from ours (the same name, another layout), and NaN/inf
    unless ``allow_non_finite`` (commands: the allowlist entry's opt-in; mirrored telemetry: always);
    adds the decode time to ``stats`` whether or not the decode succeeds.
    """
    if type_hash:
        local_hash = codec.registry.type_hash(cls)
        if type_hash != local_hash:
            raise EnvelopeError(subject, "Ros-Type-Hash", f"{type_hash} differs from local {local_hash}")
    t0 = time.perf_counter_ns()
    try:
        return codec.decode(cls, data, subject, allow_non_finite=allow_non_finite)
    finally:
        stats.codec_ns += time.perf_counter_ns() - t0


@dataclass
class OutRoute:
    """One ROS topic going out to one subject."""

    topic: str
    type_name: str
    cls: type
    subject: str
    type_hash: str
    limiter: KeepLatestLimiter[Any]
    stats: TopicStats
    overview_subject: str = ""
    overview: KeepLatestLimiter[tuple[bytes, dict[str, str]]] | None = None
    overview_out: int = 0
    # Set by the ROS glue when the subscription takes raw CDR: the message is deserialized only when the
    # rate limit lets it go out (e.g. 10 of the IMU's 50 a second), not for every one taken.
    decode: Callable[[Any], Any] | None = None


def _earliest(a: float | None, b: float | None) -> float | None:
    """The earlier of two due times, None meaning none."""
    return b if a is None else a if b is None else min(a, b)


class BridgeCore:
    """Per-message logic of one bridge process (shared by robot and control modes)."""

    def __init__(
        self,
        robot_id: str,
        codec: Codec,
        send: SendFn,
        allowlist: subjects.CommandAllowlist | None = None,
        log: LogFn | None = None,
        dedup_capacity: int = 10_000,
    ) -> None:
        self.robot_id = subjects.check_robot_id(robot_id)
        self.codec = codec
        self._send = send
        self.allowlist = allowlist or subjects.CommandAllowlist(robot_id, [])
        self._log = log or (lambda _m: None)
        self.dedup = DuplicateFilter(dedup_capacity)
        self.envelopes = EnvelopeFactory(robot_id)
        self.routes: dict[str, OutRoute] = {}
        self.in_stats: dict[str, TopicStats] = {}
        self._lock = threading.Lock()  # in_stats grows in the NATS thread, snapshot() runs in the ROS one
        self.error_totals: dict[str, int] = {}

    # ------------------------------------------------------------------ out
    def add_out_route(
        self, topic: str, type_name: str, max_rate_hz: float = 0.0, subject: str = "", overview_rate_hz: float = 0.0
    ) -> OutRoute:
        """Register a topic to bridge out; UnknownTypeError / SubjectError if the config is wrong.
        ``overview_rate_hz`` > 0: also a copy at most that often on ``robots.<id>.overview.<topic>``."""
        cls = self.codec.registry.load(type_name)
        route = OutRoute(
            topic=subjects.check_topic(topic),
            type_name=type_name_of(cls),
            cls=cls,
            subject=subject or subjects.telemetry(self.robot_id, topic),
            type_hash=self.codec.registry.type_hash(cls),
            limiter=KeepLatestLimiter(max_rate_hz),
            stats=TopicStats(),
        )
        if overview_rate_hz > 0:
            route.overview_subject = subjects.overview(self.robot_id, topic)
            route.overview = KeepLatestLimiter(overview_rate_hz)
        self.routes[topic] = route
        return route

    def on_ros_message(self, route: OutRoute, msg: Any, now: float | None = None) -> bool:
        """Handle one message from ROS; True if it was sent now (False: held by the rate limit or failed)."""
        now = time.monotonic() if now is None else now
        before = route.limiter.dropped
        item = route.limiter.offer(msg, now)
        route.stats.dropped_rate += route.limiter.dropped - before
        return item is not None and self._send_out(route, item, now)

    def flush_due(self, now: float | None = None) -> float | None:
        """Send held messages whose time has come; return the next due time (monotonic) or None."""
        now = time.monotonic() if now is None else now
        next_due: float | None = None
        for route in list(self.routes.values()):
            item = route.limiter.poll(now)
            if item is not None:
                self._send_out(route, item, now)
            next_due = _earliest(next_due, route.limiter.next_due())
            if route.overview is not None:
                copy = route.overview.poll(now)
                if copy is not None:
                    self._send_overview(route, copy)
                next_due = _earliest(next_due, route.overview.next_due())
        return next_due

    def _send_out(self, route: OutRoute, msg: Any, now: float) -> bool:
        t0 = time.perf_counter_ns()
        try:
            if route.decode is not None:
                msg = route.decode(msg)
            body = self.codec.encode(msg, route.subject)
        except BridgeError as exc:
            self._count_error(route.stats, exc, route.topic)
            return False
        finally:
            route.stats.codec_ns += time.perf_counter_ns() - t0
        headers = self.envelopes.headers(route.type_name, route.type_hash, route.topic, stamp_of(msg))
        self._send(route.subject, body, headers)
        route.stats.out += 1
        if route.overview is not None:
            copy = route.overview.offer((body, headers), now)
            if copy is not None:
                self._send_overview(route, copy)
        return True

    def _send_overview(self, route: OutRoute, copy: tuple[bytes, dict[str, str]]) -> None:
        body, headers = copy
        self._send(route.overview_subject, body, headers)
        route.overview_out += 1

    # ------------------------------------------------------------------ in
    def on_command(self, subject: str, headers: dict[str, str] | None, data: bytes) -> tuple[str, Any] | None:
        """Validate one NATS command; (ROS topic, ROS message) to publish, or None if rejected/duplicate."""
        with self._lock:
            stats = self.in_stats.setdefault(subject if self._known_subject(subject) else "<other>", TopicStats())
        stats.received += 1
        type_header = (headers or {}).get("Ros-Type", "")
        try:
            self.codec.check_size(subject, data)
            rule = self.allowlist.check(subject, type_header)
            env = Envelope.from_headers(subject, headers)
            if self.dedup.seen(env.msg_id):
                stats.duplicates += 1
                return None
            cls = self.codec.registry.load(rule.type_name)
            msg = decode_inbound(self.codec, cls, data, subject, stats, env.type_hash, rule.allow_non_finite)
        except BridgeError as exc:
            self._count_error(stats, exc, subject)
            return None
        stats.delivered += 1
        return rule.topic, msg

    def _known_subject(self, subject: str) -> bool:
        # Counters are keyed by allowlisted subjects only, so a flood of random subjects cannot grow them.
        return any(rule.subject == subject for rule in self.allowlist.rules)

    # ------------------------------------------------------------------ shared
    def _count_error(self, stats: TopicStats, exc: BridgeError, where: str) -> None:
        stats.errors[exc.kind] = stats.errors.get(exc.kind, 0) + 1
        with self._lock:
            total = self.error_totals.get(exc.kind, 0) + 1
            self.error_totals[exc.kind] = total
        if total <= 10 or total & (total - 1) == 0:  # first ten, then at powers of two: no log flood
            self._log(f"{where}: dropped ({exc.kind}, {total} so far): {exc}")

    @staticmethod
    def _route_counters(route: OutRoute) -> dict[str, Any]:
        counters = route.stats.as_dict()
        if route.overview is not None:
            counters["overview"] = route.overview_out
        return counters

    def snapshot(self) -> dict[str, Any]:
        """All counters, for the health subject, /diagnostics and Prometheus."""
        with self._lock:
            inbound = {s: st.as_dict() for s, st in self.in_stats.items()}
            errors = dict(self.error_totals)
        return {
            "robot_id": self.robot_id,
            "out": {t: self._route_counters(r) for t, r in list(self.routes.items())},
            "in": inbound,
            "errors": errors,
        }
