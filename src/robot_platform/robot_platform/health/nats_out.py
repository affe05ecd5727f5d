"""NATS output of the health monitor: alerts through JetStream (none lost while the link is down),
tree snapshots as plain keep-latest publishes.

Why an outbox: nats-py buffers while reconnecting, but a JetStream publish needs the server's ack,
and a process restart or a long outage would still lose what sat in the client buffer. Alerts wait
in a bounded outbox (drop-oldest when full, counted; on disk when ``outbox_path`` is set, see
:mod:`outbox`, so a restart during an outage replays them) and leave it only once JetStream
acknowledged them. Retries carry the same ``Nats-Msg-Id``, so the stream's duplicate window drops any
copy a lost ack (or a crash between ack and delete) made us resend.

The connection is the platform's :class:`~robot_platform.messaging.nats_link.NatsLink` (its thread,
reconnect with backoff); the sender below runs on the link's loop. :meth:`NatsPublisher.publish_alert`
and :meth:`NatsPublisher.publish_snapshot` are thread-safe and never block the tick. No rclpy here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from nats.errors import Error as NatsError

from robot_platform.health.durable_outbox import DurableOutbox, OutMsg
from robot_platform.health.sources import LinkStatus
from robot_platform.messaging import streams
from robot_platform.messaging.backoff import Backoff
from robot_platform.messaging.connect import Credentials
from robot_platform.messaging.nats_link import NatsLink

__all__ = ["NatsPublisher", "OperatorRequest", "OutMsg"]

log = logging.getLogger(__name__)

REQUESTS_MAX = 100  # operator requests waiting for the next tick (beyond: answered "retry")
OUTBOX_MAX = 1000  # alerts kept while the link is down (drop-oldest beyond, counted)
PUBLISH_ACK_TIMEOUT_S = 2.0
RECONNECT_WAIT_MIN_S = 0.25
RECONNECT_WAIT_MAX_S = 10.0
CLOSE_FLUSH_S = 2.0
REPLY_OUTBOX = 100  # the link's own outbox carries only replies to operator requests

ResultCallback = Callable[[str, str], None]  # (kind "alert"/"snapshot", result "ok"/"dropped"/"error")


@dataclass(frozen=True)
class OperatorRequest:
    """An acknowledge/silence request from NATS; ``reply`` is thread-safe and answers the requester."""

    subject: str
    payload: dict[str, Any]
    reply: Callable[[dict[str, Any]], None]


class NatsPublisher:
    """Publishes alerts (JetStream, with outbox) and snapshots (core, keep-latest) to one NATS server.

    Args:
        url: ``nats://127.0.0.1:4222`` (the robot's local server; it leafnodes to the hub).
        alert_subject: ``robots.<id>.alerts``.
        stream: JetStream stream to create for the alert subject if none captures it ("" = don't create).
        link: status cache the ``nats_link`` check reads.
        clock: monotonic clock of the monitor (for link status timestamps).
        on_result: counts deliveries (metrics).
        outbox_max: alerts kept while the link is down (drop-oldest beyond).
        outbox_path: SQLite file of the durable outbox (replayed at start); None keeps alerts in memory.
        inbox_owner: the robot id on a robot: replies come back over its leaf link only into its inbox.
    """

    def __init__(
        self,
        url: str,
        alert_subject: str,
        *,
        stream: str,
        link: LinkStatus,
        clock: Callable[[], float] = time.monotonic,
        on_result: ResultCallback | None = None,
        name: str = "health_monitor_tree",
        outbox_max: int = OUTBOX_MAX,
        request_subjects: tuple[str, ...] = (),
        outbox_path: str | Path | None = None,
        inbox_owner: str = "",
    ) -> None:
        self.url, self.alert_subject, self.stream = url, alert_subject, stream
        self.link, self.clock, self.name = link, clock, name
        self.on_result = on_result or (lambda kind, result: None)
        self.outbox_max = outbox_max
        self.request_subjects = request_subjects
        self.requests_dropped = 0
        self._requests: deque[OperatorRequest] = deque()
        self.jetstream = False
        self._outbox = DurableOutbox(outbox_path, outbox_max)
        if self._outbox.replayed:
            log.info("alert outbox %s: %d alert(s) from before the restart to send", outbox_path, self._outbox.replayed)
        self._snapshot: OutMsg | None = None
        self._lock = threading.Lock()
        self._wake = asyncio.Event()  # link thread: something to send, or the link came up
        self._stopping = threading.Event()
        self._sender_done = threading.Event()
        self.nats = NatsLink(
            url,
            name=name,
            outbox_capacity=REPLY_OUTBOX,
            credentials=Credentials(inbox_owner=inbox_owner),
            backoff=Backoff(RECONNECT_WAIT_MIN_S, RECONNECT_WAIT_MAX_S),
            log=log,
            on_connected=self._on_connected,
            requests=request_subjects,
            on_request=self._on_request,
            on_state=self._on_state,
        )

    # ---- thread-safe API -------------------------------------------------------------------------

    def start(self) -> None:
        self.nats.start()
        if not self.nats.spawn(self._send_loop):
            self._sender_done.set()

    @property
    def outbox(self) -> DurableOutbox:
        """The alert queue (counters: dropped, corrupt, store_errors, replayed; durable)."""
        return self._outbox

    @property
    def dropped(self) -> int:
        return self._outbox.dropped

    def publish_alert(self, msg: OutMsg) -> None:
        """Queue an alert (on disk before this returns, if durable); drop-oldest when full, counted."""
        for _ in range(self._outbox.append(msg)):
            self.on_result("alert", "dropped")
        self._signal()

    def publish_snapshot(self, msg: OutMsg) -> None:
        """Replace the pending snapshot (keep-latest: an older one is superseded, not lost)."""
        with self._lock:
            self._snapshot = msg
        self._signal()

    def take_requests(self) -> list[OperatorRequest]:
        """Operator requests received since the last call (the tick thread handles and answers them)."""
        with self._lock:
            out = list(self._requests)
            self._requests.clear()
        return out

    def pending(self) -> int:
        return len(self._outbox)

    def close(self, timeout: float = 5.0) -> None:
        """Flush what can be flushed within CLOSE_FLUSH_S, drain the connection, join the thread."""
        self._stopping.set()
        self._signal()
        if self.nats.alive:
            self._sender_done.wait(CLOSE_FLUSH_S + 1.0)
        self.nats.stop(timeout)
        if not self.nats.alive:  # what is left stays on disk for the next start
            self._outbox.close()

    # ---- link thread -----------------------------------------------------------------------------

    def _signal(self) -> None:
        self.nats.spawn(self._wake_sender)

    async def _wake_sender(self) -> None:
        self._wake.set()

    def _on_state(self, connected: bool, what: str) -> None:
        self.link.set(connected, self.clock(), what)
        if connected:
            self._wake.set()

    async def _on_connected(self, nc: Any) -> None:
        """Use JetStream if the server has it: a stream that captures the alert subject, else our own."""
        config = streams.capture_stream_config(self.stream, self.alert_subject) if self.stream else None
        try:
            self.jetstream = await streams.ensure_capture(nc, self.alert_subject, config)
        except (TimeoutError, NatsError) as exc:
            self.jetstream = False
            log.warning("no JetStream stream for %s (%s): alerts go out as plain publishes", self.alert_subject, exc)

    def _on_request(self, pattern: str, subject: str, reply_to: str, headers: dict[str, str] | None,
                    data: bytes) -> None:  # fmt: skip
        """Queue an operator request for the tick thread; answer at once if it is malformed or we are busy."""

        def reply(response: dict[str, Any]) -> None:
            if reply_to:
                self.nats.publish(reply_to, msgpack.packb(response, use_bin_type=True), {})

        try:
            payload = msgpack.unpackb(data, raw=False)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            reply({"success": False, "message": f"body is not msgpack: {exc}"})
            return
        if not isinstance(payload, dict):
            reply({"success": False, "message": "body must be a msgpack map"})
            return
        with self._lock:
            if len(self._requests) >= REQUESTS_MAX:
                self.requests_dropped += 1
                busy = True
            else:
                self._requests.append(OperatorRequest(subject, payload, reply))
                busy = False
        if busy:
            reply({"success": False, "message": "too many pending requests; retry"})

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _send_loop(self) -> None:
        try:
            await self._send_until_stopped()
        finally:
            self._sender_done.set()

    async def _send_until_stopped(self) -> None:
        """Snapshots as they come (only the latest); alerts in order, each removed once acknowledged."""
        backoff = Backoff(0.1, 5.0)
        deadline: float | None = None
        while True:
            if self._stopping.is_set():
                deadline = deadline or time.monotonic() + CLOSE_FLUSH_S
                if time.monotonic() > deadline or (self.pending() == 0 and self._snapshot is None):
                    return
            entry = self._outbox.peek()
            with self._lock:
                snapshot, self._snapshot = self._snapshot, None
            if snapshot is not None and self.nats.connected:
                try:
                    await self.nats.publish_now(snapshot.subject, snapshot.body, snapshot.headers)
                    self.on_result("snapshot", "ok")
                except NatsError:
                    self.on_result("snapshot", "error")
            if entry is None:
                if not self._stopping.is_set():
                    await self._sleep(1.0)
                continue
            if not self.nats.connected:
                await self._sleep(0.2)
                continue
            seq, head = entry
            try:
                if self.jetstream:
                    await self.nats.js_publish(head.subject, head.body, head.headers, PUBLISH_ACK_TIMEOUT_S)
                else:
                    await self.nats.publish_now(head.subject, head.body, head.headers)
                    await self.nats.flush(PUBLISH_ACK_TIMEOUT_S)
            except (TimeoutError, NatsError) as exc:
                self.on_result("alert", "error")
                log.debug("alert publish failed, will retry: %s", exc)
                await self._sleep(backoff.next_delay())
                continue
            backoff.reset()
            self._outbox.remove(seq)
            self.on_result("alert", "ok")
