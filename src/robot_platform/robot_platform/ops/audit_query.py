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

import asyncio
import contextlib
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgpack
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from robot_platform.messaging import subjects
from robot_platform.messaging.errors import SubjectError
from robot_platform.messaging.streams import AUDIT_HUB_STREAM, AUDIT_SUBJECTS
from robot_platform.ops.errors import LogQueryError

QUERY_SUBJECT = "fleet.audit.query"
QUERY_KEYS = ("robot", "user", "op", "target", "verdict", "since_s", "until_s", "limit")
VERDICTS = ("any", "allowed", "refused")
DEFAULT_SINCE_S = 24 * 3600.0
DEFAULT_LIMIT, MAX_LIMIT = 200, 1000
MAX_TEXT_CHARS = 256
SCAN_CAP = 50_000  # audit events a query reads at most (the newest of the range)
QUERY_BUDGET_S = 3.0  # below ws_agent's default service_timeout_s (5 s)
FETCH_BATCH, FETCH_WAIT_S = 500, 0.5
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
    robot = _text(args, "robot") or "*"
    if robot != "*":
        try:
            subjects.check_token(robot)
        except SubjectError as exc:
            raise AuditQueryError("robot", str(exc)) from None
    verdict = args.get("verdict") or "any"
    if verdict not in VERDICTS:
        raise AuditQueryError("verdict", f"must be one of {', '.join(VERDICTS)}")
    times = {}
    for key, default in (("since_s", DEFAULT_SINCE_S), ("until_s", 0.0)):
        value = args.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise AuditQueryError(key, "must be a number of seconds >= 0 (how far back from now)")
        times[key] = float(value)
    if times["until_s"] > times["since_s"]:
        raise AuditQueryError("until_s", "the end of the range must be after its start (until_s <= since_s)")
    limit = args.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise AuditQueryError("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return AuditQuery(robot, _text(args, "user"), _text(args, "op"), _text(args, "target"), verdict,
                      times["since_s"], times["until_s"], limit)  # fmt: skip


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
    js = nc.jetstream()
    name = f"audit_{uuid.uuid4().hex[:12]}"
    config = ConsumerConfig(
        name=name, filter_subjects=[AUDIT_SUBJECTS if q.robot == "*" else f"{AUDIT_SUBJECTS[:-1]}{q.robot}"],
        ack_policy=AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True,
        deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=datetime.fromtimestamp(start, tz=UTC),
    )  # fmt: skip
    try:
        info = await js.add_consumer(stream, config)
        skipped = int(info.num_pending) > scan_cap
        if skipped:  # read the newest scan_cap events of the range only (one stream sequence bound)
            await js.delete_consumer(stream, name)
            last = int((await js.stream_info(stream)).state.last_seq)
            config.deliver_policy, config.opt_start_time = DeliverPolicy.BY_START_SEQUENCE, None
            config.opt_start_seq = max(1, last - scan_cap + 1)
            info = await js.add_consumer(stream, config)
    except nats.js.errors.NotFoundError:
        return {"entries": [], "truncated": False}
    newest: deque[dict[str, Any]] = deque(maxlen=q.limit)
    pending, read, deadline = int(info.num_pending), 0, time.monotonic() + budget_s
    psub = await js.pull_subscribe_bind(consumer=name, stream=stream)
    try:
        while pending > 0 and read < scan_cap and time.monotonic() < deadline:
            try:
                batch = await psub.fetch(FETCH_BATCH, timeout=FETCH_WAIT_S)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for msg in batch:
                pending, read = msg.metadata.num_pending, read + 1
                entry = decode_event(msg.subject, msg.data)
                if entry is not None and q.matches(entry, start, end):
                    newest.append(entry)
    finally:
        with contextlib.suppress(nats.errors.Error, TimeoutError, asyncio.CancelledError):
            await psub.unsubscribe()
            await js.delete_consumer(stream, name)
    return {"entries": list(reversed(newest)), "truncated": skipped or pending > 0}
