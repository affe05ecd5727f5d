"""NATS output of the health monitor: alerts through JetStream (none lost while the link is down),
tree snapshots as plain keep-latest publishes.

Why an outbox: nats-py buffers while reconnecting, but a JetStream publish needs the server's ack,
and a process restart or a long outage would still lose what sat in the client buffer. Alerts wait
in a bounded outbox (drop-oldest when full, counted; on disk when ``outbox_path`` is set, see
:mod:`outbox`, so a restart during an outage replays them) and leave it only once JetStream
acknowledged them. Retries carry the same ``Nats-Msg-Id``, so the stream's duplicate window drops any
copy a lost ack (or a crash between ack and delete) made us resend.

The client runs on its own thread with its own asyncio loop; :meth:`NatsPublisher.publish_alert` and
:meth:`NatsPublisher.publish_snapshot` are thread-safe and never block the tick. No rclpy here.
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
import nats
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from robot_platform.common.event_loop import run_to_end
from robot_platform.health.outbox import DurableOutbox, OutMsg
from robot_platform.health.sources import LinkStatus
from robot_platform.messaging.backoff import Backoff
from robot_platform.messaging.inbox import inbox_prefix

__all__ = ["NatsPublisher", "OperatorRequest", "OutMsg"]

log = logging.getLogger(__name__)

REQUESTS_MAX = 100  # operator requests waiting for the next tick (beyond: answered "retry")
OUTBOX_MAX = 1000  # alerts kept while the link is down (drop-oldest beyond, counted)
PUBLISH_ACK_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 2.0
RECONNECT_WAIT_S = 1.0
STREAM_MAX_AGE_S = 7 * 24 * 3600
# Exactly once across a restart needs the replayed copy of an alert whose ack was lost to arrive within this
# window: 10 min, as nats_bridge's EVENTS_<id> stream (messaging/streams.py), covers a crash and a restart.
STREAM_DUPLICATE_WINDOW_S = 10 * 60
CLOSE_FLUSH_S = 2.0

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
        # the robot id on a robot: replies come back over its leaf link only into _INBOX.<robot id>
        self._connect_options = {"inbox_prefix": inbox_prefix(inbox_owner)} if inbox_owner else {}
        self.requests_dropped = 0
        self._requests: deque[OperatorRequest] = deque()
        self.jetstream = False
        self._outbox = DurableOutbox(outbox_path, outbox_max)
        if self._outbox.replayed:
            log.info("alert outbox %s: %d alert(s) from before the restart to send", outbox_path, self._outbox.replayed)
        self._snapshot: OutMsg | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: nats.NATS | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-nats", daemon=True)

    # ---- thread-safe API -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(timeout=5.0)

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
        self._thread.join(timeout=timeout)
        if not self._thread.is_alive():  # what is left stays on disk for the next start
            self._outbox.close()

    # ---- client thread ---------------------------------------------------------------------------

    def _signal(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            # RuntimeError: the loop closed between the check and the call; the thread is exiting anyway.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    def _run(self) -> None:
        # Not asyncio.run: when the server stops with the node, nats.py's cancelled drain futures would be
        # reported as "exception was never retrieved" tracebacks on a normal stop (common/event_loop.py).
        run_to_end(asyncio.new_event_loop(), self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._ready.set()
        nc = await self._connect()
        if nc is None:
            return
        try:
            await self._send_loop(nc)
        finally:
            try:
                await asyncio.wait_for(nc.drain(), timeout=CLOSE_FLUSH_S)
            except (TimeoutError, NatsError):
                await nc.close()
            self.link.set(False, self.clock(), "closed")

    async def _connect(self) -> nats.NATS | None:
        backoff = Backoff(RECONNECT_WAIT_S / 4, RECONNECT_WAIT_S * 10)

        async def disconnected() -> None:
            self.link.set(False, self.clock(), "disconnected, reconnecting")

        async def reconnected() -> None:
            self.link.set(True, self.clock(), "reconnected")
            self._wake.set()  # type: ignore[union-attr]

        async def error(exc: Exception) -> None:
            log.debug("nats client error: %s", exc)

        while not self._stopping.is_set():
            try:
                nc = await self._unless_stopped(
                    nats.connect(
                        self.url,
                        name=self.name,
                        connect_timeout=CONNECT_TIMEOUT_S,
                        allow_reconnect=True,
                        max_reconnect_attempts=-1,
                        reconnect_time_wait=RECONNECT_WAIT_S,
                        disconnected_cb=disconnected,
                        reconnected_cb=reconnected,
                        error_cb=error,
                        **self._connect_options,
                    )
                )
            except (TimeoutError, NatsError, OSError) as exc:
                self.link.set(False, self.clock(), f"connect failed: {type(exc).__name__}")
                await self._sleep(backoff.next_delay())
                continue
            if nc is None:
                return None
            self.link.set(True, self.clock(), "connected")
            self._nc = nc
            await self._ensure_stream(nc)
            for subject in self.request_subjects:  # nats-py re-subscribes by itself after a reconnect
                await nc.subscribe(subject, cb=self._on_request)
            return nc
        return None

    async def _unless_stopped(self, connecting: Any) -> nats.NATS | None:
        """Await ``connecting``; None once close() was called (nats-py retries a first connect forever
        with max_reconnect_attempts=-1, so without this a close during an outage would hang until join
        times out and leave the outbox file open)."""
        task = asyncio.ensure_future(connecting)
        while not task.done():
            if self._stopping.is_set():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError, NatsError, OSError):
                    await task
                return None
            await asyncio.wait({task}, timeout=0.2)
        return task.result()

    async def _ensure_stream(self, nc: nats.NATS) -> None:
        """Use JetStream if the server has it: create the alert stream unless one already captures it."""
        js = nc.jetstream()
        try:
            await js.find_stream_name_by_subject(self.alert_subject)
            self.jetstream = True
            return
        except NotFoundError:
            pass
        except (TimeoutError, NatsError) as exc:
            log.warning("JetStream not available (%s): alerts go out as plain publishes", exc)
            return
        if not self.stream:
            return
        try:
            await js.add_stream(
                name=self.stream,
                subjects=[self.alert_subject],
                max_age=STREAM_MAX_AGE_S,
                duplicate_window=STREAM_DUPLICATE_WINDOW_S,
            )
            self.jetstream = True
        except (TimeoutError, NatsError) as exc:
            log.warning("cannot create stream %s (%s): alerts go out as plain publishes", self.stream, exc)

    async def _on_request(self, msg: Any) -> None:
        """Queue an operator request for the tick thread; answer at once if it is malformed or we are busy."""
        loop = asyncio.get_running_loop()
        nc = self._nc
        assert nc is not None

        def reply(response: dict[str, Any]) -> None:
            if msg.reply and not loop.is_closed():
                body = msgpack.packb(response, use_bin_type=True)
                with contextlib.suppress(RuntimeError):  # loop closed meanwhile: the requester times out
                    loop.call_soon_threadsafe(lambda: loop.create_task(nc.publish(msg.reply, body)))

        try:
            payload = msgpack.unpackb(msg.data, raw=False)
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
                self._requests.append(OperatorRequest(msg.subject, payload, reply))
                busy = False
        if busy:
            reply({"success": False, "message": "too many pending requests; retry"})

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _send_loop(self, nc: nats.NATS) -> None:
        js = nc.jetstream()
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
            if snapshot is not None and nc.is_connected:
                try:
                    await nc.publish(snapshot.subject, snapshot.body, headers=snapshot.headers)
                    self.on_result("snapshot", "ok")
                except NatsError:
                    self.on_result("snapshot", "error")
            if entry is None:
                if not self._stopping.is_set():
                    await self._sleep(1.0)
                continue
            if not nc.is_connected:
                await self._sleep(0.2)
                continue
            seq, head = entry
            try:
                if self.jetstream:
                    await js.publish(head.subject, head.body, headers=head.headers, timeout=PUBLISH_ACK_TIMEOUT_S)
                else:
                    await nc.publish(head.subject, head.body, headers=head.headers)
                    await nc.flush(timeout=PUBLISH_ACK_TIMEOUT_S)
            except (TimeoutError, NatsError) as exc:
                self.on_result("alert", "error")
                log.debug("alert publish failed, will retry: %s", exc)
                await self._sleep(backoff.next_delay())
                continue
            backoff.reset()
            self._outbox.remove(seq)
            self.on_result("alert", "ok")
