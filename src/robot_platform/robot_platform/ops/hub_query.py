"""What the hub's query requests share: their common arguments and a bounded read of a stream.

``fleet.logs.query`` (:mod:`.log_query`), ``fleet.alerts.query`` (:mod:`.alert_history`) and
``fleet.audit.query`` (:mod:`.audit_query`) take the same ``robot``, ``limit`` and ``since_s`` /
``until_s`` arguments and read a hub stream through an ephemeral, memory-only pull consumer within a
time budget and a cap on records read. Checked and read here once, so the three answer a bad argument
with the same words and bound their reads the same way. Each query's own error class (a
:class:`~robot_platform.ops.errors.LogQueryError`) is passed in, so its replies still name the query.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import ConsumerConfig, DeliverPolicy

from robot_platform.messaging import subjects
from robot_platform.messaging.errors import SubjectError
from robot_platform.ops.errors import LogQueryError

FETCH_BATCH, FETCH_WAIT_S = 500, 0.5


def robot_arg(args: dict[str, Any], error: type[LogQueryError],
              check: Callable[[str], object] = subjects.check_robot_id) -> str:  # fmt: skip
    """``robot``: a robot id (checked by ``check``) or ``"*"`` (the default) for every robot."""
    robot = args.get("robot") or "*"
    if not isinstance(robot, str):
        raise error("robot", "must be a robot id or '*'")
    if robot != "*":
        try:
            check(robot)
        except SubjectError as exc:
            raise error("robot", str(exc)) from None
    return robot


def limit_arg(args: dict[str, Any], error: type[LogQueryError], default: int, maximum: int) -> int:
    """``limit``: how many entries the reply holds at most, an integer from 1 to ``maximum``."""
    limit = args.get("limit", default)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise error("limit", f"must be an integer from 1 to {maximum}")
    return limit


def seconds_back(args: dict[str, Any], error: type[LogQueryError], key: str, default: float | None) -> float | None:
    """A time argument given in seconds back from now (a number >= 0); ``default`` when absent."""
    value = args.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise error(key, "must be a number of seconds >= 0 (how far back from now)")
    return float(value)


def time_range(args: dict[str, Any], error: type[LogQueryError], default_since_s: float) -> tuple[float, float]:
    """``since_s`` and ``until_s`` (seconds back from now; until defaults to now), in order."""
    since_s = seconds_back(args, error, "since_s", default_since_s)
    until_s = seconds_back(args, error, "until_s", 0.0)
    assert since_s is not None and until_s is not None  # both have a default
    if until_s > since_s:
        raise error("until_s", "the end of the range must be after its start (until_s <= since_s)")
    return since_s, until_s


async def read_stream(
    nc: Any,
    stream: str,
    config: ConsumerConfig,
    on_message: Callable[[Any], None],
    budget_s: float,
    cap: int,
    newest: bool = False,
) -> tuple[bool, bool]:
    """Hand the records of an ephemeral pull consumer (``config``, whose ``name`` is unique) to
    ``on_message``, oldest first, until none is pending, ``cap`` records were read or ``budget_s``
    passed; the consumer is deleted at the end. With ``newest``, a consumer that would read more than
    ``cap`` records starts instead at the stream's ``cap``-th last record (the newest ones are read).

    Returns ``(found, cut)``: ``found`` is False when the stream does not exist (nothing read: to the
    caller an empty answer), ``cut`` True when records were left unread.
    """
    js = nc.jetstream()
    try:
        info = await js.add_consumer(stream, config)
        skipped = newest and int(info.num_pending) > cap
        if skipped:  # one stream sequence bound: the newest ``cap`` records of the stream
            await js.delete_consumer(stream, config.name)
            last = int((await js.stream_info(stream)).state.last_seq)
            config.deliver_policy, config.opt_start_time = DeliverPolicy.BY_START_SEQUENCE, None
            config.opt_start_seq = max(1, last - cap + 1)
            info = await js.add_consumer(stream, config)
    except nats.js.errors.NotFoundError:
        return False, False
    pending, read, deadline = int(info.num_pending), 0, time.monotonic() + budget_s
    psub = await js.pull_subscribe_bind(consumer=config.name, stream=stream)
    try:
        while pending > 0 and read < cap and time.monotonic() < deadline:
            try:
                batch = await psub.fetch(FETCH_BATCH, timeout=FETCH_WAIT_S)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for msg in batch:
                pending, read = msg.metadata.num_pending, read + 1
                on_message(msg)
    finally:
        with contextlib.suppress(nats.errors.Error, TimeoutError, asyncio.CancelledError):
            await psub.unsubscribe()
            await js.delete_consumer(stream, config.name)
    return True, skipped or pending > 0
