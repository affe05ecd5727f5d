"""Operator-side NATS calls of the ops CLI (no printing here: the CLI formats what these return)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import nats
import nats.errors
import nats.js.errors

from robot_platform.messaging.connect import Credentials, connect_once
from robot_platform.ops import logs
from robot_platform.ops.actions import call_action
from robot_platform.ops.errors import HubRequestError, HubUnavailableError
from robot_platform.ops.log_query import scan_logs
from robot_platform.ops.registry import RobotRecord
from robot_platform.ops.registry_service import open_bucket, read_records

__all__ = ["HubRequestError", "HubUnavailableError", "call_action", "connect", "list_robots", "query_logs"]


async def connect(url: str, user: str = "", password: str = "") -> Any:
    """A connection for one command (replies to this operator only: _INBOX.<user>); fails fast."""
    try:
        return await connect_once(url, name="robot-platform-cli", credentials=Credentials(user, password))
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise HubUnavailableError(url, f"{type(exc).__name__}: {exc}") from None


async def list_robots(nc: Any) -> list[RobotRecord]:
    try:
        kv = await open_bucket(nc.jetstream(), create=False)
    except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
        return []  # no robot ever announced itself (or fleet_registry never ran)
    return await read_records(kv)


async def query_logs(
    nc: Any,
    robot: str,
    min_level: str,
    flt: logs.LogFilter,
    emit: Callable[[logs.LogEntry], None],
    follow: bool = False,
    stop: asyncio.Event | None = None,
) -> int:
    """Send every matching record of ``FLEET_LOGS`` to ``emit`` (then keep tailing if ``follow``).

    Level and robot filter on the server (subjects ``robots.<id>.logs.<level>``); node, text and time
    on the client (the scan is :func:`.log_query.scan_logs`, shared with ``fleet.logs.query``).
    Returns how many records matched.
    """
    matched, _ = await scan_logs(nc, robot, min_level, flt, emit, follow=follow, stop=stop)
    return matched
