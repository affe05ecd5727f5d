"""ROS service calls through NATS request/reply: allowlist, request validation, replies (no rclpy here).

A caller (ws_agent for the touch panel and console, a script, another service) sends a NATS request on
``robots.<id>.srv.<service path, / as .>`` whose body is the msgpack map of the service's Request
(``{"data": true}`` for std_srvs/srv/SetBool). The bridge answers on the request's reply subject:

    success   body: msgpack map of the Response (``{"success": true, "message": "..."}``);
              headers Content-Type application/msgpack, Ros-Type pkg/srv/Type, Robot-Id
    failure   empty body, header ``Rp-Error: <kind>: <message>`` (kinds: not_allowed, unavailable,
              timeout, busy, malformed, unknown_field, wrong_type, out_of_range, bad_envelope, oversized,
              no_reply, failed)

Only allowlisted services are called (exact subject; the type is fixed by the allowlist, and a
``Ros-Type`` header, when a caller sends one, must name that type). Requests are checked with the
bridge's codec before any ROS call, so a malformed body never reaches a service. Calls are
asynchronous: at most ``max_pending`` at once (more are refused as ``busy``), each with a deadline
after which the caller gets ``timeout`` and a late response is dropped. Every outcome is counted per
subject (the same counter shape as inbound commands, so /diagnostics and Prometheus show them).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robot_platform.bridge.core import TopicStats, decode_inbound
from robot_platform.messaging import subjects
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.envelope import CONTENT_TYPE, H_CONTENT_TYPE, H_ROBOT, H_TYPE
from robot_platform.messaging.errors import BridgeError, ServiceCallError, SubjectError
from robot_platform.messaging.rostypes import SERVICE_TYPE_RE

H_ERROR = "Rp-Error"
H_USER = "Rp-User"
MAX_ERROR_CHARS = 500
OTHER = "<other_srv>"  # counter key of requests on subjects that are not allowlisted (bounded key set)

ReplyFn = Callable[[str, bytes, dict[str, str]], None]
LogFn = Callable[[str], None]


def normalize_service_type(type_name: str) -> str:
    """'pkg/Type' or 'pkg/srv/Type' -> 'pkg/srv/Type'; SubjectError if it is neither."""
    match = SERVICE_TYPE_RE.fullmatch(type_name or "")
    if not match:
        raise SubjectError(str(type_name), "service type must look like pkg/srv/Type")
    return f"{match.group(1)}/srv/{match.group(2)}"


@dataclass(frozen=True)
class ServiceRule:
    """One allowlisted service: config name, ROS service name, service type, NATS request subject."""

    name: str
    service: str
    type_name: str
    subject: str
    timeout_s: float
    allow_non_finite: bool = False  # NaN/inf in the Request reach ROS only where a site opted in


class ServiceAllowlist:
    """Services callable through NATS: exact subjects with exact types, nothing else (no patterns)."""

    def __init__(
        self, robot_id: str, rules: list[tuple[str, str, str, float]] | list[tuple[str, str, str, float, bool]]
    ) -> None:
        """``rules``: (name, service, type, timeout_s[, allow_non_finite]) per allowlisted service."""
        self.robot_id = subjects.check_robot_id(robot_id)
        self._by_subject: dict[str, ServiceRule] = {}
        for name, service, type_name, timeout_s, *opt_in in rules:
            if not timeout_s > 0:
                raise SubjectError(str(timeout_s), f"timeout of service {name!r} must be > 0 s")
            rule = ServiceRule(
                name, subjects.check_topic(service), normalize_service_type(type_name),
                subjects.service(robot_id, service), float(timeout_s), bool(opt_in and opt_in[0]),
            )  # fmt: skip
            if rule.subject in self._by_subject:
                raise SubjectError(service, "listed twice in the service allowlist")
            self._by_subject[rule.subject] = rule

    @property
    def rules(self) -> list[ServiceRule]:
        return list(self._by_subject.values())

    def get(self, subject: str) -> ServiceRule | None:
        return self._by_subject.get(subject)

    def check(self, subject: str, type_header: str | None) -> ServiceRule:
        """The rule granting a call on ``subject``; ServiceCallError ``not_allowed`` if the subject or the
        type is not granted."""
        rule = self._by_subject.get(subject)
        if rule is None:
            raise ServiceCallError(
                subject, "not_allowed", "service not in nats_bridge's services allowlist (services.names)"
            )
        if type_header:
            try:
                normalized = normalize_service_type(type_header)
            except SubjectError:
                normalized = ""
            if normalized != rule.type_name:
                raise ServiceCallError(
                    subject, "not_allowed", f"type {type_header[:100]!r} refused: only {rule.type_name} is served here"
                )
        return rule


@dataclass
class PendingCall:
    """A ROS call in flight: whom to answer, until when, and the handle to cancel it (the rclpy future)."""

    call_id: int
    rule: ServiceRule
    reply_to: str
    deadline: float
    handle: Any = None


class ServiceRouter:
    """Per-request logic of the service bridge; the node supplies the ROS calls and the NATS replies.

    Threads: :meth:`on_request` runs in the NATS thread, :meth:`complete` in the ROS executor (future
    done callback), :meth:`expire` in a ROS timer; the pending table is guarded by one lock, and a call
    is answered exactly once (whoever removes it from the table answers).
    """

    def __init__(
        self,
        robot_id: str,
        codec: Codec,
        allowlist: ServiceAllowlist,
        reply: ReplyFn,
        max_pending: int = 16,
        log: LogFn | None = None,
        audit: LogFn | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.robot_id = subjects.check_robot_id(robot_id)
        self.codec = codec
        self.allowlist = allowlist
        self._reply = reply
        self.max_pending = max_pending
        self._log = log or (lambda _m: None)  # refusals (warnings)
        self._audit = audit or (lambda _m: None)  # accepted calls (who called what)
        self._lock = threading.Lock()
        self._pending: dict[int, PendingCall] = {}
        self._ids = itertools.count(1)
        self.stats: dict[str, TopicStats] = {r.subject: TopicStats() for r in allowlist.rules}
        self.stats[OTHER] = TopicStats()
        self.error_totals: dict[str, int] = {}

    # ------------------------------------------------------------------ NATS thread
    def on_request(
        self, subject: str, reply_to: str, headers: dict[str, str] | None, data: bytes, now: float | None = None
    ) -> tuple[PendingCall, Any] | None:
        """Validate one request. Returns (pending call, ROS Request) for the node to send, or None after
        answering the caller with an error. The call stays pending until :meth:`complete` or :meth:`expire`."""
        now = time.monotonic() if now is None else now
        rule = self.allowlist.get(subject)
        stats = self.stats[rule.subject if rule else OTHER]
        stats.received += 1
        h = headers or {}
        try:
            if not reply_to:
                raise ServiceCallError(subject, "no_reply", "send it as a NATS request (no reply subject given)")
            self.codec.check_size(subject, data)
            rule = self.allowlist.check(subject, h.get(H_TYPE))
            srv = self.codec.registry.load_service(rule.type_name)
            request = (
                decode_inbound(self.codec, srv.Request, data, subject, stats, allow_non_finite=rule.allow_non_finite)
                if data
                else srv.Request()
            )
            with self._lock:
                if len(self._pending) >= self.max_pending:
                    raise ServiceCallError(subject, "busy", f"{self.max_pending} calls already in flight; retry")
                call = PendingCall(next(self._ids), rule, reply_to, now + rule.timeout_s)
                self._pending[call.call_id] = call
        except BridgeError as exc:
            self._fail(stats, subject, reply_to, exc)
            return None
        user = _printable(h.get(H_USER, ""))[:64]
        self._audit(f"service call {rule.service} ({rule.type_name}) from {user or 'unknown user'}")
        return call, request

    def fail(self, call: PendingCall, kind: str, reason: str) -> None:
        """The call could not be made or failed in ROS (``unavailable``, ``failed``): answer it now."""
        if self._take(call.call_id) is not None:
            exc = ServiceCallError(call.rule.subject, kind, reason)
            self._fail(self.stats[call.rule.subject], call.rule.subject, call.reply_to, exc)

    # ------------------------------------------------------------------ ROS threads
    def complete(self, call: PendingCall, response: Any) -> bool:
        """Answer a finished call with its Response; False if it had already timed out (dropped)."""
        if self._take(call.call_id) is None:
            return False
        stats = self.stats[call.rule.subject]
        try:
            body = self.codec.encode(response, call.rule.subject)
        except BridgeError as exc:
            self._fail(stats, call.rule.subject, call.reply_to, exc)
            return True
        headers = {H_CONTENT_TYPE: CONTENT_TYPE, H_TYPE: call.rule.type_name, H_ROBOT: self.robot_id}
        self._reply(call.reply_to, body, headers)
        stats.delivered += 1
        return True

    def expire(self, now: float | None = None) -> list[PendingCall]:
        """Answer ``timeout`` to every call past its deadline; returns them (the node cancels the futures)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            late = [c for c in self._pending.values() if c.deadline <= now]
            for c in late:
                del self._pending[c.call_id]
        for c in late:
            reason = f"{c.rule.service} did not answer within {c.rule.timeout_s:g}s"
            exc = ServiceCallError(c.rule.subject, "timeout", reason)
            self._fail(self.stats[c.rule.subject], c.rule.subject, c.reply_to, exc)
        return late

    def fail_all(self, reason: str) -> None:
        """On shutdown: answer every pending call (``unavailable``) so no caller waits for its timeout."""
        with self._lock:
            calls = list(self._pending.values())
            self._pending.clear()
        for c in calls:
            exc = ServiceCallError(c.rule.subject, "unavailable", reason)
            self._fail(self.stats[c.rule.subject], c.rule.subject, c.reply_to, exc)

    @property
    def pending(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ shared
    def _take(self, call_id: int) -> PendingCall | None:
        with self._lock:
            return self._pending.pop(call_id, None)

    def _fail(self, stats: TopicStats, subject: str, reply_to: str, exc: BridgeError) -> None:
        stats.errors[exc.kind] = stats.errors.get(exc.kind, 0) + 1
        with self._lock:
            total = self.error_totals.get(exc.kind, 0) + 1
            self.error_totals[exc.kind] = total
        if total <= 10 or total & (total - 1) == 0:  # first ten, then at powers of two: no log flood
            self._log(f"{subject}: service request refused ({exc.kind}, {total} so far): {exc}")
        if reply_to:
            message = _printable(f"{exc.kind}: {exc}")[:MAX_ERROR_CHARS]
            self._reply(reply_to, b"", {H_ERROR: message, H_ROBOT: self.robot_id})

    def snapshot(self) -> dict[str, Any]:
        """Counters keyed by request subject, in the shape of BridgeCore's ``in`` group."""
        with self._lock:
            errors = dict(self.error_totals)
        return {"in": {s: st.as_dict() for s, st in self.stats.items()}, "errors": errors}


def _printable(text: str) -> str:
    """One header-safe line: NATS headers are text lines, so no CR/LF or other control characters."""
    return "".join(ch if ch.isprintable() else " " for ch in text)
