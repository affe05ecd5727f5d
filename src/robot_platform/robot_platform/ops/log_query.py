"""Reading the hub's ``FLEET_LOGS`` stream: one scan used by the CLI and by the console's log query.

:func:`scan_logs` (``robot-platform logs``, and :func:`run_query` behind ``fleet.logs.query``) reads
the stream through an ephemeral, memory-only pull consumer filtered on the server by robot and minimum
level (``robots.<id>.logs.<level>`` subjects); node, text and time are checked here with
:class:`.logs.LogFilter`.

``fleet.logs.query`` (served by fleet_registry, called by the console through ws_agent's
``/fleet/logs/query``) takes ``{robot?, level?, node?, grep?, since_s?, limit?}`` (see
:func:`parse_query`) and answers the *newest* ``limit`` matching entries, oldest first, as
:meth:`.logs.LogEntry.to_dict` dicts. The scan reads forward from ``since_s`` ago (the whole stream
without it); one that runs past ``budget_s`` stops and says so (``truncated: true``) rather than make
the caller's request time out - its entries are then the newest of the part read, i.e. not the newest
of the window: narrow ``since_s`` (or the level/robot filters, applied on the server) and ask again.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from robot_platform.bridge import subjects
from robot_platform.bridge.errors import SubjectError

from . import logs
from .errors import HubUnavailableError, LogQueryError, LogRecordError

QUERY_SUBJECT = "fleet.logs.query"
FETCH_BATCH = 200
FETCH_WAIT_S = 1.0
CONSUMER_INACTIVE_S = 30.0
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
MAX_GREP_CHARS = 256
MAX_NODE_CHARS = 256
QUERY_BUDGET_S = 3.0  # below ws_agent's default service_timeout_s (5 s)
QUERY_KEYS = ("robot", "level", "node", "grep", "since_s", "limit")


@dataclass(frozen=True)
class QuerySpec:
    """A validated ``fleet.logs.query`` request."""

    robot: str = "*"
    level: str = "debug"
    node: str = ""
    grep: str = ""
    since_s: float | None = None
    limit: int = DEFAULT_LIMIT

    def log_filter(self, now: float) -> logs.LogFilter:
        since = None if self.since_s is None else now - self.since_s
        return logs.LogFilter(node=self.node, grep=re.compile(self.grep) if self.grep else None, since=since)


def parse_query(args: Any) -> QuerySpec:
    """Validate the arguments of a query; LogQueryError names the argument at fault."""
    if not isinstance(args, dict):
        raise LogQueryError("", f"arguments must be an object, not {type(args).__name__}")
    unknown = sorted(str(k) for k in args if k not in QUERY_KEYS)
    if unknown:
        raise LogQueryError(unknown[0], f"unknown argument; use {', '.join(QUERY_KEYS)}")
    robot = _text(args, "robot", "*", 64) or "*"
    if robot != "*":
        try:
            subjects.check_robot_id(robot)
        except SubjectError as exc:
            raise LogQueryError("robot", str(exc)) from None
    level = _text(args, "level", "debug", 16) or "debug"
    try:
        level = logs.parse_level(level)
    except ValueError as exc:
        raise LogQueryError("level", str(exc)) from None
    grep = _text(args, "grep", "", MAX_GREP_CHARS)
    if grep:
        try:
            re.compile(grep)
        except re.error as exc:
            raise LogQueryError("grep", f"not a valid regular expression: {exc}") from None
    since = args.get("since_s")
    if since is not None and (isinstance(since, bool) or not isinstance(since, int | float) or not since >= 0):
        raise LogQueryError("since_s", "must be a number of seconds >= 0 (how far back from now)")
    limit = args.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise LogQueryError("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    node = _text(args, "node", "", MAX_NODE_CHARS)
    return QuerySpec(robot, level, node, grep, None if since is None else float(since), limit)


def _text(args: dict[str, Any], key: str, default: str, max_chars: int) -> str:
    value = args.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > max_chars:
        raise LogQueryError(key, f"must be a string of at most {max_chars} characters")
    return value


async def scan_logs(
    nc: Any,
    robot: str,
    min_level: str,
    flt: logs.LogFilter,
    emit: Callable[[logs.LogEntry], None],
    follow: bool = False,
    stop: asyncio.Event | None = None,
    deadline: float | None = None,
) -> tuple[int, bool]:
    """Send every matching record of ``FLEET_LOGS`` to ``emit`` (then keep tailing if ``follow``).

    Returns (how many matched, whether the scan stopped at ``deadline`` (monotonic) before the end).
    HubUnavailableError if the stream does not exist yet.
    """
    js = nc.jetstream()
    name = f"logs_{uuid.uuid4().hex[:12]}"
    config = ConsumerConfig(
        name=name, filter_subjects=logs.level_subjects(robot, min_level), ack_policy=AckPolicy.NONE,
        inactive_threshold=CONSUMER_INACTIVE_S, mem_storage=True, deliver_policy=DeliverPolicy.ALL,
    )  # fmt: skip
    if flt.since is not None:
        # The stream's time is the hub's arrival time, which comes after the record's stamp: records
        # stamped after ``since`` are all delivered; the filter drops earlier ones that arrived late.
        config.deliver_policy = DeliverPolicy.BY_START_TIME
        config.opt_start_time = datetime.fromtimestamp(flt.since, tz=UTC)
    try:
        info = await js.add_consumer(logs.HUB_STREAM, config)
    except nats.js.errors.NotFoundError:
        raise HubUnavailableError(str(nc.connected_url), f"stream {logs.HUB_STREAM} does not exist yet") from None
    pending = info.num_pending
    psub = await js.pull_subscribe_bind(consumer=name, stream=logs.HUB_STREAM)
    matched = 0
    try:
        while stop is None or not stop.is_set():
            if not follow and pending == 0:
                return matched, False
            if deadline is not None and time.monotonic() >= deadline:
                return matched, True
            try:
                batch = await psub.fetch(FETCH_BATCH, timeout=FETCH_WAIT_S)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for msg in batch:
                pending = msg.metadata.num_pending
                try:
                    entry = logs.decode_entry(msg.subject, msg.headers, msg.data)
                except LogRecordError:
                    continue
                if flt.matches(entry):
                    matched += 1
                    emit(entry)
    finally:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await psub.unsubscribe()
            await js.delete_consumer(logs.HUB_STREAM, name)
    return matched, False


async def run_query(nc: Any, spec: QuerySpec, budget_s: float = QUERY_BUDGET_S) -> dict[str, Any]:
    """The reply of ``fleet.logs.query``: ``{entries: [...] (newest ``limit``, oldest first), truncated}``."""
    newest: deque[logs.LogEntry] = deque(maxlen=spec.limit)
    try:
        _, truncated = await scan_logs(
            nc, spec.robot, spec.level, spec.log_filter(time.time()), newest.append,
            deadline=time.monotonic() + budget_s,
        )  # fmt: skip
    except HubUnavailableError:
        return {"entries": [], "truncated": False}  # no robot ever sent a record: an empty answer
    return {"entries": [e.to_dict() for e in newest], "truncated": truncated}
