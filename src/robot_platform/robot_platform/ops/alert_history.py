"""Alert history at the control server: ``fleet.alerts.query`` over the hub's ``FLEET_EVENTS`` stream.

Why a stream and not a table: every raise, acknowledgement, escalation and clear a robot's health node
publishes on ``robots.<id>.alerts`` is already stored on the robot (``EVENTS_<id>``, store and forward)
and sourced into the hub's ``FLEET_EVENTS`` (messaging/streams.py: 7 days, 10 min duplicate window, and the
size limit ``EVENTS_MAX_BYTES``). Each message is a whole Alert (msgpack) with who acknowledged it, and
``values.raised_at`` (the raise time, kept across restarts of the health node, see health/monitor.py), so
the history of an alert is the sequence of its messages: nothing to keep in sync.

``fleet.alerts.query`` (served by fleet_registry next to ``fleet.logs.query``, called by the console
through ws_agent's ``/fleet/alerts/query``) takes::

    {robot?: id|"*", severity?: info|warn|error|critical|0..3 (minimum), code?: exact or "PREFIX*",
     since_s?: seconds back from now, until_s?: seconds back from now (end of the range),
     state?: any|active|cleared|acknowledged|unacknowledged, limit?: 1..1000}

and answers ``{alerts: [...], truncated}``: one entry per alert (``alert_id``) whose life overlaps the time
range, newest raise first, with ``raised_at``, ``acknowledged_by``/``acknowledged_at``, ``cleared_at``, the
highest severity and every event (``raise``, ``acknowledge``, ``escalate``, ``reannounce``, ``clear``) with
its time. Silences are in it too: ``SILENCED.<code>`` records (health/operator_actions.py), ``values.by``
and ``values.until`` saying who silenced the check and until when. ``truncated`` says the scan stopped
(``SCAN_CAP`` records or the time budget) before the end.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgpack
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from robot_platform.messaging import subjects
from robot_platform.messaging.streams import EVENTS_HUB_STREAM
from robot_platform.ops import hub_query
from robot_platform.ops.errors import LogQueryError

QUERY_SUBJECT = "fleet.alerts.query"
QUERY_KEYS = ("robot", "severity", "code", "since_s", "until_s", "state", "limit")
STATES = ("any", "active", "cleared", "acknowledged", "unacknowledged")
SEVERITIES = {"info": 0, "warn": 1, "error": 2, "critical": 3}
DEFAULT_SINCE_S = 24 * 3600.0  # without since_s: the last day
DEFAULT_LIMIT, MAX_LIMIT = 200, 1000
MAX_CODE_CHARS = 128
SCAN_CAP = 50_000  # alert messages a query reads at most
QUERY_BUDGET_S = 3.0  # below ws_agent's default service_timeout_s (5 s)


class AlertQueryError(LogQueryError):
    """An alert query's arguments are invalid: which argument, and why (same reply shape as log queries)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.args = (f"alert query: {field}: {reason}" if field else f"alert query: {reason}",)


@dataclass(frozen=True)
class AlertQuery:
    """A validated ``fleet.alerts.query`` request (times are seconds back from now)."""

    robot: str = "*"
    min_severity: int = 0
    code: str = ""
    since_s: float = DEFAULT_SINCE_S
    until_s: float = 0.0
    state: str = "any"
    limit: int = DEFAULT_LIMIT

    def code_matches(self, code: str) -> bool:
        if not self.code:
            return True
        return code.startswith(self.code[:-1]) if self.code.endswith("*") else code == self.code


def parse_query(args: Any) -> AlertQuery:
    """Validate a request; AlertQueryError names the argument at fault."""
    args = AlertQueryError.check_arguments(args, QUERY_KEYS)
    robot = hub_query.robot_arg(args, AlertQueryError)
    sev = args.get("severity", 0)
    if isinstance(sev, str) and sev.lower() in SEVERITIES:
        sev = SEVERITIES[sev.lower()]
    if isinstance(sev, bool) or not isinstance(sev, int) or not 0 <= sev <= 3:
        raise AlertQueryError("severity", f"must be one of {', '.join(SEVERITIES)} or 0..3 (the minimum)")
    code = args.get("code") or ""
    if not isinstance(code, str) or len(code) > MAX_CODE_CHARS or "*" in code[:-1]:
        raise AlertQueryError("code", f"must be a fault code or a 'PREFIX*' of at most {MAX_CODE_CHARS} characters")
    since_s, until_s = hub_query.time_range(args, AlertQueryError, DEFAULT_SINCE_S)
    state = args.get("state", "any")
    if state not in STATES:
        raise AlertQueryError("state", f"must be one of {', '.join(STATES)}")
    limit = hub_query.limit_arg(args, AlertQueryError, DEFAULT_LIMIT, MAX_LIMIT)
    return AlertQuery(robot, sev, code, since_s, until_s, state, limit)


def _stamp(body: dict[str, Any]) -> float:
    s = body.get("stamp") or {}
    return float(s.get("sec", 0)) + float(s.get("nanosec", 0)) / 1e9


@dataclass
class AlertHistory:
    """Everything the stream says about one alert id, folded message by message (:meth:`add`)."""

    alert_id: str
    robot: str
    code: str
    check: str
    severity: int = 0
    message: str = ""
    raised_at: float | None = None
    acknowledged_by: str = ""
    acknowledged_at: float | None = None
    cleared_at: float | None = None
    active: bool = True
    values: dict[str, str] = field(default_factory=dict)  # of the latest message (SILENCED.*: by, until)
    events: list[dict[str, Any]] = field(default_factory=list)

    def add(self, body: dict[str, Any]) -> None:
        at, severity = _stamp(body), int(body.get("severity", 0))
        values = {kv.get("key"): kv.get("value") for kv in body.get("values") or [] if isinstance(kv, dict)}
        with contextlib.suppress(KeyError, TypeError, ValueError):
            self.raised_at = float(values["raised_at"])
        self.values = {str(k): str(v) for k, v in values.items()}
        by = str(body.get("acknowledged_by") or "") if body.get("acknowledged") else ""
        if not body.get("active", False):
            event = "clear"
            self.cleared_at, self.active = at, False
        elif not self.events:
            event = "raise"
        elif by and by != self.acknowledged_by:
            event = "acknowledge"
        elif severity != self.events[-1]["severity"]:
            event = "escalate"
        else:
            event = "reannounce"  # the same state again (a restarted health node confirming it)
        if by and by != self.acknowledged_by:
            self.acknowledged_by, self.acknowledged_at = by, at
        if body.get("active"):
            self.message, self.active = str(body.get("message", "")), True
        if self.raised_at is None:
            self.raised_at = at
        self.severity = max(self.severity, severity)
        entry: dict[str, Any] = {"at": at, "event": event, "severity": severity}
        if event == "acknowledge":
            entry["by"] = by
        self.events.append(entry)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id, "robot": self.robot, "code": self.code, "check": self.check,
            "severity": self.severity, "message": self.message, "raised_at": self.raised_at,
            "acknowledged_by": self.acknowledged_by, "acknowledged_at": self.acknowledged_at,
            "cleared_at": self.cleared_at, "active": self.active, "values": self.values, "events": self.events,
        }  # fmt: skip

    def matches(self, q: AlertQuery, start: float, end: float) -> bool:
        if q.robot not in ("*", self.robot) or self.severity < q.min_severity or not q.code_matches(self.code):
            return False
        raised = self.raised_at if self.raised_at is not None else 0.0
        if raised > end or (self.cleared_at is not None and self.cleared_at < start):
            return False
        return {
            "any": True,
            "active": self.active,
            "cleared": not self.active,
            "acknowledged": bool(self.acknowledged_by),
            "unacknowledged": not self.acknowledged_by,
        }[q.state]


def fold(bodies: list[dict[str, Any]]) -> dict[str, AlertHistory]:
    """Alert messages (stream order) -> one history per alert id. Bad records are skipped."""
    out: dict[str, AlertHistory] = {}
    for body in bodies:
        alert_id, robot, code = body.get("alert_id"), body.get("robot_id"), body.get("code")
        if not (isinstance(alert_id, str) and alert_id and isinstance(robot, str) and isinstance(code, str)):
            continue
        history = out.get(alert_id)
        if history is None:
            check = str(body.get("source", "")).rsplit("/", 1)[-1]
            history = out[alert_id] = AlertHistory(alert_id, robot, code, check)
        history.add(body)
    return out


def answer(histories: dict[str, AlertHistory], q: AlertQuery, now: float, truncated: bool) -> dict[str, Any]:
    """The reply: matching alerts, newest raise first, at most ``limit``."""
    start, end = now - q.since_s, now - q.until_s
    hits = [h for h in histories.values() if h.matches(q, start, end)]
    hits.sort(key=lambda h: h.raised_at or 0.0, reverse=True)
    return {"alerts": [h.to_dict() for h in hits[: q.limit]], "truncated": truncated}


async def read_alerts(
    nc: Any, q: AlertQuery, stream: str = EVENTS_HUB_STREAM, budget_s: float = QUERY_BUDGET_S, subject: str = ""
) -> tuple[list[dict[str, Any]], bool]:
    """Every stored alert message of ``q.robot`` (ephemeral memory-only pull consumer), oldest first.

    From the stream's start, not the range's: an alert raised before the range and still active (or
    cleared inside it) has its raise, and maybe no other message, before the range. Alert subjects are
    low-volume (a few messages per fault), so the whole retention (7 days) fits ``SCAN_CAP``.

    Returns (decoded bodies in stream order, truncated). A stream that does not exist yet is no alerts.
    ``subject`` reads another msgpack subject of the stream instead (alert exports: deploy statuses).
    """
    config = ConsumerConfig(
        name=f"alerts_{uuid.uuid4().hex[:12]}", filter_subjects=[subject or f"{subjects.ROOT}.{q.robot}.alerts"],
        ack_policy=AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True, deliver_policy=DeliverPolicy.ALL,
    )  # fmt: skip
    bodies: list[dict[str, Any]] = []

    def keep(msg: Any) -> None:
        with contextlib.suppress(ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError):
            body = msgpack.unpackb(msg.data)
            if isinstance(body, dict):
                bodies.append(body)

    _, cut = await hub_query.read_stream(nc, stream, config, keep, budget_s, SCAN_CAP)
    return bodies, cut


async def run_query(nc: Any, q: AlertQuery, stream: str = EVENTS_HUB_STREAM) -> dict[str, Any]:
    """The reply of ``fleet.alerts.query`` (see the module docstring)."""
    now = time.time()
    bodies, truncated = await read_alerts(nc, q, stream)
    return answer(fold(bodies), q, now, truncated)
