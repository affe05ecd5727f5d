"""Operator-side NATS calls of the ops CLI (no printing here: the CLI formats what these return)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgpack
import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from . import logs
from .actions import action_subject, encode_request
from .errors import LogRecordError, OpsError, RemoteActionFailed
from .registry import RobotRecord
from .registry_service import open_bucket, read_records

CONNECT_TIMEOUT_S = 3.0
FETCH_BATCH = 200
FETCH_WAIT_S = 1.0
CONSUMER_INACTIVE_S = 30.0


class HubUnavailableError(OpsError):
    kind = "hub_unavailable"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the NATS hub at {url}: {reason} (check --url / --user / --password-file)")
        self.url = url


class HubRequestError(OpsError):
    """A request to the hub failed (often: your NATS user is not permitted to do that)."""

    kind = "hub_request"

    def __init__(self, reason: str) -> None:
        super().__init__(f"request to the NATS hub failed: {reason} (is your NATS user permitted to do this?)")
        self.reason = reason


async def connect(url: str, user: str = "", password: str = "") -> Any:
    options: dict[str, Any] = {"user": user, "password": password} if user else {}
    try:
        return await nats.connect(url, name="robot-platform-cli", connect_timeout=CONNECT_TIMEOUT_S,
                                  allow_reconnect=False, max_reconnect_attempts=0, **options)  # fmt: skip
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
    on the client. Returns how many records matched.
    """
    js = nc.jetstream()
    name = f"logs_{uuid.uuid4().hex[:12]}"
    config = ConsumerConfig(
        name=name, filter_subjects=logs.level_subjects(robot, min_level), ack_policy=AckPolicy.NONE,
        inactive_threshold=CONSUMER_INACTIVE_S, mem_storage=True, deliver_policy=DeliverPolicy.ALL,
    )  # fmt: skip
    if flt.since is not None:
        config.deliver_policy = DeliverPolicy.BY_START_TIME
        # Margin: the stream's time is the hub's arrival time, which comes after the record's stamp.
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
                break
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
    return matched


async def call_action(
    nc: Any, robot: str, action: str, user: str, role: str, args: dict[str, Any], timeout: float
) -> Any:
    """Request/reply to ``robots.<robot>.ops.<action>``; RemoteActionFailed if the robot refused it."""
    subject = action_subject(robot, action)
    try:
        reply = await nc.request(subject, encode_request(user, role, args), timeout=timeout)
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
