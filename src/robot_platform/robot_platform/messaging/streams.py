"""JetStream streams of the platform, in one place: events (alerts, deployment events) and logs.

Every stream here is store-and-forward across a robot's leaf link: the robot keeps its own stream in its
server's JetStream domain ``<id>``, link or no link, and a hub stream *sources* each robot's stream.

Events: on each robot, stream ``EVENTS_<id>`` (in the robot server's own JetStream domain ``<id>``) stores
``robots.<id>.alerts`` and ``robots.<id>.deploy.>`` as they are published locally, link or no link.
On the hub, stream ``FLEET_EVENTS`` *sources* every robot's stream through the leaf link
(``external.api = $JS.<id>.API``). While a link is down the robot keeps storing; when it returns the hub's
source consumer resumes from its last sequence, so every event arrives once (sourcing tracks sequences;
``Nats-Msg-Id`` additionally dedups re-publishes inside the duplicate window).

Observed with nats-server 2.15.1: after a *hub restart* the source resumes only after its retry
backoff (tens of seconds); after a link drop it resumes as soon as the leaf reconnects.

Logs (ops/logs.py has the records and their subjects): stream ``LOGS_<id>`` on the robot keeps
``robots.<id>.logs.>`` with size and age limits (oldest discarded first); ``FLEET_LOGS`` on the hub
sources every ``LOGS_<id>``.

Replicas: the hub's streams (and the control services' KV buckets, :func:`ensure_key_value`) ask for
``HUB_REPLICAS`` (3) so that a clustered hub (site_setup/nats_config.py ``HubCluster``) keeps them through
the loss of any one node; a standalone hub refuses replicas (``REPLICAS_NOT_SUPPORTED``) and they are
created with one instead, so one config serves both. A robot's own streams stay R1 (one server).

Alerts of a health monitor that runs without nats_bridge: :func:`ensure_capture` uses whichever stream
already captures the subject (the bridge's ``EVENTS_<id>``) and creates a small one only if none does.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from nats.js.api import DiscardPolicy, ExternalStream, KeyValueConfig, StorageType, StreamConfig, StreamSource
from nats.js.errors import APIError, BadRequestError, BucketNotFoundError, NotFoundError

from robot_platform.messaging import subjects
from robot_platform.messaging.errors import BridgeError

log = logging.getLogger(__name__)

HUB_REPLICAS = 3  # hub streams and KV buckets: survive losing one node of a 3-node clustered hub
REPLICAS_NOT_SUPPORTED = 10074  # JetStream API error code: replicas > 1 on a non-clustered server
EVENTS_MAX_AGE_S = 7 * 24 * 3600
EVENTS_MAX_BYTES = 1024**3  # hub's FLEET_EVENTS (alert history, deploy events): oldest dropped beyond 1 GiB
# Exactly once across a restart needs a re-sent copy to arrive within this window: 10 min covers a crash
# and a restart (the health monitor's durable outbox replays with the same Nats-Msg-Id).
DUPLICATE_WINDOW_S = 10 * 60
EVENTS_HUB_STREAM = "FLEET_EVENTS"
LOGS_HUB_STREAM = "FLEET_LOGS"
LOGS_ROBOT_MAX_BYTES = 64 * 1024 * 1024
LOGS_ROBOT_MAX_AGE_S = 3 * 24 * 3600.0
LOGS_HUB_MAX_BYTES = 1024 * 1024 * 1024
LOGS_HUB_MAX_AGE_S = 14 * 24 * 3600.0
# ws_agent's audit events (ws/audit.py, published on the hub): kept by fleet_registry for fleet.audit.query
AUDIT_HUB_STREAM = "FLEET_AUDIT"
AUDIT_SUBJECTS = "audit.>"
AUDIT_HUB_MAX_BYTES = 256 * 1024 * 1024
AUDIT_HUB_MAX_AGE_S = 30 * 24 * 3600.0


def events_stream_name(robot_id: str) -> str:
    return f"EVENTS_{subjects.check_robot_id(robot_id)}"


def events_stream_config(robot_id: str) -> StreamConfig:
    return StreamConfig(
        name=events_stream_name(robot_id),
        subjects=[subjects.alerts(robot_id), f"{subjects.ROOT}.{robot_id}.deploy.>"],
        storage=StorageType.FILE,
        max_age=EVENTS_MAX_AGE_S,
        duplicate_window=DUPLICATE_WINDOW_S,
    )


def events_hub_stream_config(robot_ids: list[str]) -> StreamConfig:
    sources = [
        StreamSource(name=events_stream_name(r), external=ExternalStream(api=f"$JS.{r}.API")) for r in sorted(robot_ids)
    ]
    return StreamConfig(
        name=EVENTS_HUB_STREAM,
        sources=sources,
        storage=StorageType.FILE,
        num_replicas=HUB_REPLICAS,
        max_age=EVENTS_MAX_AGE_S,
        max_bytes=EVENTS_MAX_BYTES,
        duplicate_window=DUPLICATE_WINDOW_S,
    )


def logs_stream_name(robot_id: str) -> str:
    return f"LOGS_{subjects.check_robot_id(robot_id)}"


def logs_stream_config(
    robot_id: str, max_bytes: int = LOGS_ROBOT_MAX_BYTES, max_age_s: float = LOGS_ROBOT_MAX_AGE_S
) -> StreamConfig:
    """The robot's own log stream: keeps records through link cuts, oldest dropped past the limits."""
    return StreamConfig(
        name=logs_stream_name(robot_id),
        subjects=[f"{subjects.ROOT}.{robot_id}.logs.>"],
        storage=StorageType.FILE,
        max_bytes=max_bytes,
        max_age=max_age_s,
        discard=DiscardPolicy.OLD,
        duplicate_window=DUPLICATE_WINDOW_S,
    )


def logs_hub_stream_config(
    robot_ids: list[str], max_bytes: int = LOGS_HUB_MAX_BYTES, max_age_s: float = LOGS_HUB_MAX_AGE_S
) -> StreamConfig:
    """The control server's log stream, sourcing each robot's ``LOGS_<id>`` across its leaf link."""
    sources = [
        StreamSource(name=logs_stream_name(r), external=ExternalStream(api=f"$JS.{r}.API"))
        for r in sorted(set(robot_ids))
    ]
    return StreamConfig(
        name=LOGS_HUB_STREAM,
        sources=sources,
        storage=StorageType.FILE,
        num_replicas=HUB_REPLICAS,
        max_bytes=max_bytes,
        max_age=max_age_s,
        discard=DiscardPolicy.OLD,
        duplicate_window=DUPLICATE_WINDOW_S,
    )


def audit_hub_stream_config(
    max_bytes: int = AUDIT_HUB_MAX_BYTES, max_age_s: float = AUDIT_HUB_MAX_AGE_S
) -> StreamConfig:
    """The control server's audit trail: every ``audit.<robot>`` event, oldest dropped beyond the limits."""
    return StreamConfig(
        name=AUDIT_HUB_STREAM,
        subjects=[AUDIT_SUBJECTS],
        storage=StorageType.FILE,
        max_bytes=max_bytes,
        max_age=max_age_s,
        discard=DiscardPolicy.OLD,
        duplicate_window=DUPLICATE_WINDOW_S,
        num_replicas=HUB_REPLICAS,
    )


def capture_stream_config(name: str, subject: str) -> StreamConfig:
    """A stream of one subject with the events' age and duplicate window (a health monitor's own alerts)."""
    return StreamConfig(name=name, subjects=[subject], max_age=EVENTS_MAX_AGE_S, duplicate_window=DUPLICATE_WINDOW_S)


SUBJECTS_OVERLAP = 10065  # JetStream API error code: subjects overlap with an existing stream


class StreamConflictError(BridgeError):
    """Another stream already captures one of our subjects (e.g. a node created ALERTS_<id> first)."""

    kind = "stream_conflict"

    def __init__(self, stream: str, other: str, subject: str) -> None:
        super().__init__(
            f"cannot create stream {stream}: stream {other} already captures {subject}; delete {other} or stop"
            ' the node that creates it (health_monitor_tree: nats_alert_stream: "") so the bridge\'s stream'
            " (which the hub sources) holds the robot's events"
        )
        self.stream = stream
        self.other = other
        self.subject = subject


def _standalone(exc: APIError, replicas: int | None) -> bool:
    return exc.err_code == REPLICAS_NOT_SUPPORTED and (replicas or 1) > 1


async def ensure_stream(nc: Any, config: StreamConfig) -> None:
    """Create the stream, or update it to ``config`` if it exists (idempotent, safe on every connect).

    Replicas > 1 on a standalone server: the stream is made with one (see the module docstring)."""
    try:
        await _ensure_stream(nc, config)
    except APIError as exc:
        if not _standalone(exc, config.num_replicas):
            raise
        log.debug(f"stream {config.name}: standalone server, one replica")
        await _ensure_stream(nc, dataclasses.replace(config, num_replicas=1))


async def ensure_key_value(js: Any, config: KeyValueConfig) -> Any:
    """The KV bucket ``config.bucket`` (created if missing; an existing one is used as it is).

    Replicas > 1 on a standalone server: created with one."""
    try:
        return await js.key_value(config.bucket)
    except (BucketNotFoundError, NotFoundError):
        pass
    try:
        return await js.create_key_value(config)
    except APIError as exc:
        if not _standalone(exc, config.replicas):
            raise
        return await js.create_key_value(dataclasses.replace(config, replicas=1))


async def kv_snapshot(js: Any, bucket: str) -> dict[str, bytes]:
    """Every live key of KV bucket ``bucket`` with its value, read from the stream's leader.

    Why not ``kv.keys()``: right after a clustered hub lost the bucket's leader, its consumer-based listing
    can come back empty instead of failing, and a service that takes over would start from nothing. The
    stream info (subjects with messages) and the last message per subject come from the leader, or the
    call fails and the caller retries."""
    stream, prefix = f"KV_{bucket}", f"$KV.{bucket}."
    info = await js.stream_info(stream, subjects_filter=f"{prefix}>")
    out: dict[str, bytes] = {}
    for subject in sorted(info.state.subjects or {}):
        msg = await js.get_msg(stream, subject=subject)
        if (msg.headers or {}).get("KV-Operation") in ("DEL", "PURGE"):
            continue
        out[subject[len(prefix) :]] = msg.data or b""
    return out


async def _ensure_stream(nc: Any, config: StreamConfig) -> None:
    js = nc.jetstream()
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
        except BadRequestError as exc:
            if exc.err_code != SUBJECTS_OVERLAP:
                raise
            for subject in config.subjects or []:
                try:
                    other = await js.find_stream_name_by_subject(subject)
                except NotFoundError:
                    continue
                raise StreamConflictError(config.name, other, subject) from None
            raise
        return
    await js.update_stream(config)


async def ensure_capture(nc: Any, subject: str, config: StreamConfig | None) -> bool:
    """True when JetStream stores ``subject``: a stream already captures it, or ``config`` was created.

    An existing stream wins (never a second, overlapping one); False when none does and ``config`` is
    None. Raises what nats-py raises when the server has no JetStream or refuses the stream: the caller
    falls back to plain publishes and says so."""
    js = nc.jetstream()
    try:
        await js.find_stream_name_by_subject(subject)
        return True
    except NotFoundError:
        if config is None:
            return False
    await js.add_stream(config)
    return True
