"""Reading the hub's ``FLEET_LOGS`` stream: one scan used by the CLI and by the console's log query.

:func:`scan_logs` (``robot-platform logs``, and :func:`run_query` behind ``fleet.logs.query``) reads
the stream through an ephemeral, memory-only pull consumer filtered on the server by robot and minimum
level (``robots.<id>.logs.<level>`` subjects); node, text and time are checked here with
:class:`.logs.LogFilter`.

``fleet.logs.query`` (served by fleet_registry, called by the console through ws_agent's
``/fleet/logs/query``) takes ``{robot?, level?, node?, grep?, since_s?, limit?}`` (see
:func:`parse_query`) and answers the *newest* ``limit`` matching entries, oldest first, as
:meth:`.logs.LogEntry.to_dict` dicts. It reads the newest ``SCAN_CAP`` records of the robot/level
subjects in the window (``since_s`` ago, or the whole stream; :func:`tail_start` finds where they begin)
and filters node and text here; ``truncated: true`` says older records of the window were not read
(the cap, or ``budget_s`` reached: the request answers rather than time out).
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

from robot_platform.messaging import streams
from robot_platform.ops import hub_query, logs
from robot_platform.ops.errors import HubUnavailableError, LogQueryError, LogRecordError

QUERY_SUBJECT = "fleet.logs.query"
FETCH_BATCH = 200
FETCH_WAIT_S = 1.0
CONSUMER_INACTIVE_S = 30.0
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
MAX_GREP_CHARS = 256
MAX_NODE_CHARS = 256
QUERY_BUDGET_S = 3.0  # below ws_agent's default service_timeout_s (5 s)
SCAN_CAP = 20_000  # robot/level-matching records a query reads at most (the newest ones)
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
    args = LogQueryError.check_arguments(args, QUERY_KEYS)
    robot = hub_query.robot_arg(args, LogQueryError)
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
    since = hub_query.seconds_back(args, LogQueryError, "since_s", None)
    limit = hub_query.limit_arg(args, LogQueryError, DEFAULT_LIMIT, MAX_LIMIT)
    node = _text(args, "node", "", MAX_NODE_CHARS)
    return QuerySpec(robot, level, node, grep, since, limit)


def _text(args: dict[str, Any], key: str, default: str, max_chars: int) -> str:
    value = args.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > max_chars:
        raise LogQueryError(key, f"must be a string of at most {max_chars} characters")
    return value


def _consumer_config(name: str, filter_subjects: list[str], since: float | None = None,
                     start_seq: int | None = None) -> ConsumerConfig:  # fmt: skip
    """An ephemeral, memory-only pull consumer of FLEET_LOGS (reads from the start, ``since`` or ``start_seq``)."""
    config = ConsumerConfig(
        name=name, filter_subjects=filter_subjects, ack_policy=AckPolicy.NONE,
        inactive_threshold=CONSUMER_INACTIVE_S, mem_storage=True, deliver_policy=DeliverPolicy.ALL,
    )  # fmt: skip
    if start_seq is not None:
        config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = start_seq
    elif since is not None:
        # The stream's time is the hub's arrival time, which comes after the record's stamp: records
        # stamped after ``since`` are all delivered; the filter drops earlier ones that arrived late.
        config.deliver_policy = DeliverPolicy.BY_START_TIME
        config.opt_start_time = datetime.fromtimestamp(since, tz=UTC)
    return config


async def _add_consumer(nc: Any, config: ConsumerConfig) -> Any:
    try:
        return await nc.jetstream().add_consumer(streams.LOGS_HUB_STREAM, config)
    except nats.js.errors.NotFoundError:
        stream = streams.LOGS_HUB_STREAM
        raise HubUnavailableError(str(nc.connected_url), f"stream {stream} does not exist yet") from None


async def _pending(nc: Any, filter_subjects: list[str], since: float | None = None,
                   start_seq: int | None = None) -> int:  # fmt: skip
    """How many records of the filter subjects a consumer from ``since`` / ``start_seq`` would read."""
    name = f"logs_probe_{uuid.uuid4().hex[:12]}"
    info = await _add_consumer(nc, _consumer_config(name, filter_subjects, since, start_seq))
    with contextlib.suppress(nats.errors.Error, TimeoutError):
        await nc.jetstream().delete_consumer(streams.LOGS_HUB_STREAM, name)
    return int(info.num_pending)


async def tail_start(nc: Any, filter_subjects: list[str], cap: int, since: float | None = None) -> int | None:
    """The stream sequence from which at most ``cap`` records of the filter subjects remain (the newest
    ones), or None when every record since ``since`` fits. A bisection over sequences with probe
    consumers (a few dozen short requests for millions of records), so a query reads the newest records
    of a busy window rather than its oldest."""
    if await _pending(nc, filter_subjects, since=since) <= cap:
        return None
    state = (await nc.jetstream().stream_info(streams.LOGS_HUB_STREAM)).state
    lo, hi = int(state.first_seq), int(state.last_seq) + 1  # pending(lo) > cap >= pending(hi) == 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if await _pending(nc, filter_subjects, start_seq=mid) > cap:
            lo = mid
        else:
            hi = mid
    return hi


async def scan_logs(
    nc: Any,
    robot: str,
    min_level: str,
    flt: logs.LogFilter,
    emit: Callable[[logs.LogEntry], None],
    follow: bool = False,
    stop: asyncio.Event | None = None,
    deadline: float | None = None,
    start_seq: int | None = None,
) -> tuple[int, bool]:
    """Send every matching record of ``FLEET_LOGS`` to ``emit`` (then keep tailing if ``follow``);
    from stream sequence ``start_seq`` if given (``flt.since`` still filters).

    Returns (how many matched, whether the scan stopped at ``deadline`` (monotonic) before the end).
    HubUnavailableError if the stream does not exist yet.
    """
    js = nc.jetstream()
    name = f"logs_{uuid.uuid4().hex[:12]}"
    info = await _add_consumer(nc, _consumer_config(name, logs.level_subjects(robot, min_level), flt.since, start_seq))
    pending = info.num_pending
    psub = await js.pull_subscribe_bind(consumer=name, stream=streams.LOGS_HUB_STREAM)
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
            await js.delete_consumer(streams.LOGS_HUB_STREAM, name)
    return matched, False


async def run_query(nc: Any, spec: QuerySpec, budget_s: float = QUERY_BUDGET_S,
                    scan_cap: int = SCAN_CAP) -> dict[str, Any]:  # fmt: skip
    """The reply of ``fleet.logs.query``: ``{entries: [...] (newest ``limit``, oldest first), truncated}``.

    Reads at most the newest ``scan_cap`` records of the robot/level subjects in the window (node and
    text are filtered here); ``truncated`` says older records of the window were not read (cap or
    ``budget_s`` reached).
    """
    newest: deque[logs.LogEntry] = deque(maxlen=spec.limit)
    deadline = time.monotonic() + budget_s
    flt = spec.log_filter(time.time())
    try:
        start = await tail_start(nc, logs.level_subjects(spec.robot, spec.level), scan_cap, flt.since)
        _, out_of_time = await scan_logs(nc, spec.robot, spec.level, flt, newest.append, deadline=deadline,
                                         start_seq=start)  # fmt: skip
    except HubUnavailableError:
        return {"entries": [], "truncated": False}  # no robot ever sent a record: an empty answer
    return {"entries": [e.to_dict() for e in newest], "truncated": out_of_time or start is not None}
