"""JetStream streams for the must-not-lose subjects (alerts, deployment events): store and forward.

On each robot, stream ``EVENTS_<id>`` (in the robot server's own JetStream domain ``<id>``) stores
``robots.<id>.alerts`` and ``robots.<id>.deploy.>`` as they are published locally, link or no link.
On the hub, stream ``FLEET_EVENTS`` *sources* every robot's stream through the leaf link
(``external.api = $JS.<id>.API``). While a link is down the robot keeps storing; when it returns the hub's
source consumer resumes from its last sequence, so every event arrives once (sourcing tracks sequences;
``Nats-Msg-Id`` additionally dedups re-publishes inside the duplicate window).

Observed with nats-server 2.15.1: after a *hub restart* the source resumes only after its retry
backoff (tens of seconds); after a link drop it resumes as soon as the leaf reconnects.
"""

from __future__ import annotations

from typing import Any

from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource
from nats.js.errors import BadRequestError, NotFoundError

from . import subjects
from .errors import BridgeError

EVENTS_MAX_AGE_S = 7 * 24 * 3600
EVENTS_MAX_BYTES = 1024**3  # hub's FLEET_EVENTS (alert history, deploy events): oldest dropped beyond 1 GiB
DUPLICATE_WINDOW_S = 10 * 60
HUB_STREAM = "FLEET_EVENTS"


def robot_stream_name(robot_id: str) -> str:
    return f"EVENTS_{subjects.check_robot_id(robot_id)}"


def robot_stream_config(robot_id: str) -> StreamConfig:
    return StreamConfig(
        name=robot_stream_name(robot_id),
        subjects=[subjects.alerts(robot_id), f"{subjects.ROOT}.{robot_id}.deploy.>"],
        storage=StorageType.FILE,
        max_age=EVENTS_MAX_AGE_S,
        duplicate_window=DUPLICATE_WINDOW_S,
    )


def hub_stream_config(robot_ids: list[str]) -> StreamConfig:
    sources = [
        StreamSource(name=robot_stream_name(r), external=ExternalStream(api=f"$JS.{r}.API")) for r in sorted(robot_ids)
    ]
    return StreamConfig(
        name=HUB_STREAM,
        sources=sources,
        storage=StorageType.FILE,
        max_age=EVENTS_MAX_AGE_S,
        max_bytes=EVENTS_MAX_BYTES,
        duplicate_window=DUPLICATE_WINDOW_S,
    )


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


async def ensure_stream(nc: Any, config: StreamConfig) -> None:
    """Create the stream, or update it to ``config`` if it exists (idempotent, safe on every connect)."""
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
