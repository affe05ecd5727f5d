"""robot_agent's NATS side (no rclpy): presence, log forwarding, remote-action service.

Built on :class:`robot_platform.messaging.nats_link.NatsLink` (reconnect with backoff, bounded drop-oldest
outbox). On every (re)connect it makes sure the robot's log stream ``LOGS_<id>`` exists on the robot's
local server and (re)subscribes to ``robots.<id>.ops.*``, answering each request through
:class:`.actions.ActionDispatcher`. The link talks to the robot's *local* nats-server, which stays up
while the leaf link to the hub is down, so presence pauses but log records are stored on the robot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors

from robot_platform.messaging import streams
from robot_platform.messaging.connect import Credentials
from robot_platform.messaging.envelope import EnvelopeFactory
from robot_platform.messaging.nats_link import NatsLink
from robot_platform.messaging.streams import ensure_stream
from robot_platform.messaging.subjects import presence
from robot_platform.ops import logs
from robot_platform.ops.actions import ActionDispatcher
from robot_platform.ops.registry import Announcement

OUTBOX_CAPACITY = 2000  # log records + presence queued while the local server is unreachable
# Requests waiting for the (sequential) action handler. Operators send a handful; a flood beyond this is
# dropped by nats-py as a slow consumer (counted in the link's dropped_slow_consumer) instead of queuing
# up to nats-py's defaults (512k messages / 128 MB), which the process never gave back to the OS.
OPS_PENDING_MSGS = 32
OPS_PENDING_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class AgentSettings:
    robot_id: str
    nats_url: str
    credentials: Credentials
    log_stream_max_bytes: int = streams.LOGS_ROBOT_MAX_BYTES
    log_stream_max_age_s: float = streams.LOGS_ROBOT_MAX_AGE_S


class AgentLink:
    """Thread-safe: ``announce`` and ``forward_log`` may be called from ROS callbacks."""

    def __init__(self, settings: AgentSettings, dispatcher: ActionDispatcher, log: logging.Logger | Any) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self._log = log
        self._envelopes = EnvelopeFactory(settings.robot_id)
        self.forwarded = 0
        self.stream_ready = False
        self._subs: list[Any] = []
        self.link = NatsLink(
            settings.nats_url,
            on_message=lambda subject, headers, data: None,
            name=f"robot_agent-{settings.robot_id}",
            outbox_capacity=OUTBOX_CAPACITY,
            credentials=settings.credentials,
            log=log,
            on_connected=self._on_connected,
        )

    def start(self) -> None:
        self.link.start()

    def stop(self) -> None:
        self.link.stop()

    @property
    def nc(self) -> Any:
        return self.link._nc

    async def _on_connected(self, nc: Any) -> None:
        config = streams.logs_stream_config(
            self.settings.robot_id, self.settings.log_stream_max_bytes, self.settings.log_stream_max_age_s
        )
        try:
            await ensure_stream(nc, config)
            self.stream_ready = True
        except nats.js.errors.Error as exc:
            self._log.error(f"cannot create log stream {config.name}: {exc}; records are not stored on the robot")

        async def on_request(msg: Any) -> None:
            reply = await self.dispatcher.handle(msg.subject, msg.data)
            if msg.reply:
                try:
                    await msg.respond(reply)
                except nats.errors.Error as exc:
                    self._log.warning(f"could not answer {msg.subject}: {type(exc).__name__}: {exc}")

        self._subs = [
            await nc.subscribe(
                self.dispatcher.subscription(),
                cb=on_request,
                pending_msgs_limit=OPS_PENDING_MSGS,
                pending_bytes_limit=OPS_PENDING_BYTES,
            )
        ]

    def announce(self, announcement: Announcement) -> None:
        headers = {"Content-Type": "application/json", "Robot-Id": self.settings.robot_id}
        self.link.publish(presence(self.settings.robot_id), announcement.encode(), headers)

    def forward_log(self, level: int, body: bytes, stamp: str) -> None:
        envelope = self._envelopes.make(logs.LOG_TYPE, "", logs.ROSOUT, stamp)
        self.link.publish(logs.log_subject(self.settings.robot_id, logs.level_name(level)), body, envelope.headers())
        self.forwarded += 1

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        """A request from inside an action handler (runs on the link's loop)."""
        nc = self.nc
        if nc is None:
            raise nats.errors.ConnectionClosedError
        reply = await nc.request(subject, payload, timeout=timeout)
        return bytes(reply.data)
