"""Operator-side NATS calls of the ops CLI (no printing here: the CLI formats what these return)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgpack
import nats
import nats.errors
import nats.js.errors

from robot_platform.messaging import inbox
from robot_platform.messaging.connect import Credentials, connect_once
from robot_platform.ops import logs
from robot_platform.ops.actions import action_subject, encode_request
from robot_platform.ops.errors import HubRequestError, HubUnavailableError, RemoteActionFailed
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


async def call_action(
    nc: Any, robot: str, action: str, user: str, role: str, args: dict[str, Any], timeout: float
) -> Any:
    """Request/reply to ``robots.<robot>.ops.<action>``; RemoteActionFailed if the robot refused it."""
    subject = action_subject(robot, action)
    try:
        reply = await inbox.request(nc, subject, encode_request(user, role, args), timeout=timeout)  # robot reply slot
    except nats.errors.NoRespondersError:
        raise RemoteActionFailed(robot, action, "no_responders", "robot_agent is not reachable") from None
    except (TimeoutError, nats.errors.TimeoutError):
        raise RemoteActionFailed(
            robot, action, "timeout", f"no reply within {timeout:g}s (offline, or not permitted for your NATS user)"
        ) from None
    body = msgpack.unpackb(reply.data, raw=False)
    if not body.get("ok"):
        error = body.get("error") or {}
        raise RemoteActionFailed(robot, action, str(error.get("kind", "?")), str(error.get("message", "")))
    return body.get("result")
