"""The audit trail at the control server: ``fleet.audit.query`` over the hub's ``FLEET_AUDIT`` stream.

Why a stream: ws_agent publishes every command, service call, subscription and refusal as an event on
``audit.<robot>`` (ws/audit.py; ``audit.<agent>`` for what names no robot, e.g. a failed login). Plain
publishes are gone once delivered; fleet_registry keeps them in ``FLEET_AUDIT`` (messaging/streams.py:
``audit.>``, 30 days, 256 MiB, oldest dropped first, the events' ``Nats-Msg-Id`` deduplicated) so
"who stopped r2 yesterday?" has an answer. Only the console's ws_agent may publish ``audit.>`` on the
hub (site_setup/nats_config.py), so a robot cannot write into another's trail.

``fleet.audit.query`` (served by fleet_registry, called through ws_agent's ``/fleet/audit/query``; the
built-in roles give it to admin only: the trail names users, their addresses and everything they did)::

    {robot?: id|"*", user?: exact, op?: exact (connect, subscribe, publish, call_service, ...),
     target?: substring of the name, verdict?: any|allowed|refused,
     since_s?: seconds back from now (default a day), until_s?: seconds back (end of the range),
     limit?: 1..1000}

answers ``{entries: [...], truncated}``: the newest ``limit`` matching events, newest first, each
``{at, robot, user, role, client, op, target, subject, type, allowed, reason, agent}``. A query reads at
most the newest ``SCAN_CAP`` events of the range within ``QUERY_BUDGET_S``; ``truncated`` says it stopped
before the oldest.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgpack
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from robot_platform.messaging import subjects
from robot_platform.messaging.streams import AUDIT_HUB_STREAM, AUDIT_SUBJECTS
from robot_platform.ops import hub_query
from robot_platform.ops.errors import LogQueryError

QUERY_SUBJECT = "fleet.audit.query"
QUERY_KEYS = ("robot", "user", "op", "target", "verdict", "since_s", "until_s", "limit")
VERDICTS = ("any", "allowed", "refused")
DEFAULT_SINCE_S = 24 * 3600.0
DEFAULT_LIMIT, MAX_LIMIT = 200, 1000
MAX_TEXT_CHARS = 256
SCAN_CAP = 50_000  # audit events a query reads at most (the newest of the range)
QUERY_BUDGET_S = 3.0  # below ws_agent's default service_timeout_s (5 s)
ENTRY_KEYS = ("user", "role", "client", "op", "target", "subject", "type", "reason", "agent")


class AuditQueryError(LogQueryError):
    """An audit query's arguments are invalid: which argument, and why (same reply shape as log queries)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.args = (f"audit query: {field}: {reason}" if field else f"audit query: {reason}",)


@dataclass(frozen=True)
class AuditQuery:
    """A validated ``fleet.audit.query`` request (times are seconds back from now)."""

    robot: str = "*"
    user: str = ""
    op: str = ""
    target: str = ""
    verdict: str = "any"
    since_s: float = DEFAULT_SINCE_S
    until_s: float = 0.0
    limit: int = DEFAULT_LIMIT

    def matches(self, entry: dict[str, Any], start: float, end: float) -> bool:
        if not start <= entry["at"] <= end:
            return False
        if (self.user and entry["user"] != self.user) or (self.op and entry["op"] != self.op):
            return False
        if self.target and self.target.lower() not in entry["target"].lower():
            return False
        return self.verdict == "any" or entry["allowed"] == (self.verdict == "allowed")


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key) or ""
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
        raise AuditQueryError(key, f"must be a string of at most {MAX_TEXT_CHARS} characters")
    return value.strip()


def parse_query(args: Any) -> AuditQuery:
    """Validate a request; AuditQueryError names the argument at fault."""
    args = AuditQueryError.check_arguments(args, QUERY_KEYS)
    robot = hub_query.robot_arg(args, AuditQueryError, check=subjects.check_token)
    verdict = args.get("verdict") or "any"
    if verdict not in VERDICTS:
        raise AuditQueryError("verdict", f"must be one of {', '.join(VERDICTS)}")
    since_s, until_s = hub_query.time_range(args, AuditQueryError, DEFAULT_SINCE_S)
    limit = hub_query.limit_arg(args, AuditQueryError, DEFAULT_LIMIT, MAX_LIMIT)
    return AuditQuery(robot, _text(args, "user"), _text(args, "op"), _text(args, "target"), verdict,
                      since_s, until_s, limit)  # fmt: skip


def decode_event(subject: str, data: bytes) -> dict[str, Any] | None:
    """One stored audit event as a reply entry; None for a record that is not one (skipped)."""
    try:
        body = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("ts_ns"), int):
        return None
    entry: dict[str, Any] = {"at": body["ts_ns"] / 1e9, "robot": subject.partition(".")[2]}
    for key in ENTRY_KEYS:
        entry[key] = str(body.get(key) or "")
    entry["allowed"] = bool(body.get("allowed"))
    return entry


async def run_query(nc: Any, q: AuditQuery, stream: str = AUDIT_HUB_STREAM, budget_s: float = QUERY_BUDGET_S,
                    scan_cap: int = SCAN_CAP) -> dict[str, Any]:  # fmt: skip
    """The reply of ``fleet.audit.query`` (see the module docstring). A missing stream is no events."""
    now = time.time()
    start, end = now - q.since_s, now - q.until_s
    config = ConsumerConfig(
        name=f"audit_{uuid.uuid4().hex[:12]}", ack_policy=AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True,
        filter_subjects=[AUDIT_SUBJECTS if q.robot == "*" else f"{AUDIT_SUBJECTS[:-1]}{q.robot}"],
        deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=datetime.fromtimestamp(start, tz=UTC),
    )  # fmt: skip
    newest: deque[dict[str, Any]] = deque(maxlen=q.limit)

    def keep(msg: Any) -> None:
        entry = decode_event(msg.subject, msg.data)
        if entry is not None and q.matches(entry, start, end):
            newest.append(entry)

    found, cut = await hub_query.read_stream(nc, stream, config, keep, budget_s, scan_cap, newest=True)
    return {"entries": list(reversed(newest)), "truncated": cut} if found else {"entries": [], "truncated": False}
