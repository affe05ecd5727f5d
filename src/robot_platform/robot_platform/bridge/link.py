"""The NATS side of the bridge: one nats-py connection in its own asyncio thread (no rclpy here).

Two kinds of subscriptions: ``subscriptions`` deliver (subject, headers, data) to ``on_message``;
``requests`` (request/reply, e.g. service calls) deliver (subscribed subject, subject, reply subject,
headers, data) to ``on_request``, which answers later with :meth:`NatsLink.publish` on the reply subject.

Lifecycle: ``start()`` spawns the thread; the thread connects, subscribes, and sends what
``publish()`` queued; on failure or disconnect it retries with capped, jittered backoff
(:mod:`.backoff`) and restores the subscriptions; ``stop()`` drains the connection and joins the thread.
nats-py's own reconnect is off so that every (re)connect goes through the same backoff and the same
subscription setup.

Outgoing messages wait in a bounded outbox (drop-oldest, counted in ``dropped_outbox``): while the link
is down the newest ``outbox_capacity`` messages are kept and sent after reconnecting. Durable
store-and-forward is the job of the robot's local nats-server + JetStream (see config/nats/README.md);
the bridge normally talks to that local server, which is always up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import nats
import nats.errors

from robot_platform.exceptions import RobotPlatformError

from .backoff import Backoff
from .inbox import connect_options

CONNECT_TIMEOUT_S = 2.0
DRAIN_TIMEOUT_S = 2.0
STOP_JOIN_TIMEOUT_S = 5.0
SUB_PENDING_MSGS_LIMIT = 1000  # per subscription; beyond it nats-py drops (slow consumer, counted)
SUB_PENDING_BYTES_LIMIT = 32 * 1024 * 1024
CLIENT_PENDING_BYTES = 8 * 1024 * 1024

MessageHandler = Callable[[str, "dict[str, str] | None", bytes], None]
# (subscribed subject, possibly a wildcard; message subject; reply subject; headers; payload)
RequestHandler = Callable[[str, str, str, "dict[str, str] | None", bytes], None]


class LinkState(Enum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    CONNECTED = "connected"


@dataclass
class LinkCounters:
    sent: int = 0
    received: int = 0
    dropped_outbox: int = 0
    dropped_slow_consumer: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    errors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Credentials:
    """User/password for the NATS server (the password is never logged or put in repr)."""

    user: str = ""
    password: str = field(default="", repr=False)


class NatsLink:
    """Thread-safe publish into NATS and a callback for subscribed subjects (called in the link thread)."""

    def __init__(
        self,
        url: str,
        on_message: MessageHandler,
        subscriptions: Sequence[str] = (),
        *,
        name: str = "nats_bridge",
        outbox_capacity: int = 1000,
        credentials: Credentials | None = None,
        backoff: Backoff | None = None,
        log: logging.Logger | Any | None = None,
        on_connected: Callable[[Any], Awaitable[None]] | None = None,
        requests: Sequence[str] = (),
        on_request: RequestHandler | None = None,
    ) -> None:
        self.url = url
        self.name = name
        self._on_message = on_message
        self._subscriptions = list(subscriptions)
        self._credentials = credentials or Credentials()
        self._backoff = backoff or Backoff()
        self._log = log or logging.getLogger(__name__)
        self._outbox: deque[tuple[str, bytes, dict[str, str]]] = deque()
        self._capacity = outbox_capacity
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._wake: asyncio.Event | None = None
        self._stop_event: asyncio.Event | None = None
        self._wake_pending = False  # a wake-up of the sender is scheduled or it is draining
        self._batch = threading.local()  # per publishing thread: batch depth, something queued
        self._nc: Any = None
        self.state = LinkState.STOPPED
        self.counters = LinkCounters()
        self._ready = threading.Event()
        self._on_connected = on_connected
        self._requests = list(requests)
        self._on_request = on_request
        if self._requests and on_request is None:
            raise ValueError("request subscriptions need an on_request handler")

    # ------------------------------------------------------------------ any thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._thread_main, name=f"{self.name}-nats", daemon=True)
        self._thread.start()
        self._ready.wait(STOP_JOIN_TIMEOUT_S)

    def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        """Queue one message (never blocks); the oldest queued one is dropped and counted when full.

        Inside :meth:`batch` (same thread) the link thread is woken once when the batch ends."""
        batching = getattr(self._batch, "depth", 0) > 0
        with self._lock:
            if len(self._outbox) >= self._capacity:
                self._outbox.popleft()
                self.counters.dropped_outbox += 1
            self._outbox.append((subject, body, headers))
            if batching:
                self._batch.queued = True
                return
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self._wake_loop()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Publishes of this thread inside the block wake the link thread once, at the end.

        A cross-thread wake-up (``call_soon_threadsafe``: a syscall plus an event-loop round) per message
        cost as much as encoding a message; a burst of messages taken from ROS together needs one."""
        local = self._batch
        depth = getattr(local, "depth", 0)
        local.depth = depth + 1
        try:
            yield
        finally:
            local.depth = depth
            if depth == 0 and getattr(local, "queued", False):
                local.queued = False
                with self._lock:
                    wake = not self._wake_pending
                    self._wake_pending = True
                if wake:
                    self._wake_loop()

    def _wake_loop(self) -> None:
        loop, wake_event = self._loop, self._wake
        if loop is not None and wake_event is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed during shutdown
                loop.call_soon_threadsafe(wake_event.set)

    @property
    def queued(self) -> int:
        return len(self._outbox)

    @property
    def connected(self) -> bool:
        return self.state is LinkState.CONNECTED

    def stop(self, timeout: float = STOP_JOIN_TIMEOUT_S) -> None:
        """Drain and close the connection, then join the thread (bounded by ``timeout``)."""
        loop, stop_event = self._loop, self._stop_event
        if loop is not None and stop_event is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop_event.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._log.warning(f"NATS link thread did not stop within {timeout:.1f}s")

    # ------------------------------------------------------------------ link thread
    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            self._loop = None
            loop.close()
            self.state = LinkState.STOPPED

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._ready.set()
        sender = asyncio.create_task(self._sender())
        try:
            while not self._stop_event.is_set():
                closed = asyncio.Event()
                nc = await self._connect(closed)
                if nc is None:
                    await self._sleep_or_stop(self._backoff.next_delay())
                    continue
                self._backoff.reset()
                self._nc = nc
                self.state = LinkState.CONNECTED
                self.counters.connects += 1
                self._log.info(f"connected to NATS at {self.url}")
                if self._on_connected is not None:
                    try:
                        await self._on_connected(nc)
                    except (TimeoutError, nats.errors.Error, RobotPlatformError) as exc:
                        self._log.warning(f"setup after connecting to {self.url} failed: {type(exc).__name__}: {exc}")
                self._wake.set()  # flush what queued up while down
                stop_wait = asyncio.create_task(self._stop_event.wait())
                closed_wait = asyncio.create_task(closed.wait())
                await asyncio.wait({stop_wait, closed_wait}, return_when=asyncio.FIRST_COMPLETED)
                stop_wait.cancel()
                closed_wait.cancel()
                self.state = LinkState.CONNECTING
                self._nc = None
                if self._stop_event.is_set():
                    await self._flush_outbox(nc)
                    await self._close(nc)
                    break
                self.counters.disconnects += 1
                self._log.warning(f"lost NATS connection to {self.url}; reconnecting with backoff")
                await self._sleep_or_stop(self._backoff.next_delay())
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _connect(self, closed: asyncio.Event) -> Any:
        self.state = LinkState.CONNECTING

        async def on_closed() -> None:
            closed.set()

        async def on_error(exc: Exception) -> None:
            kind = type(exc).__name__
            self.counters.errors[kind] = self.counters.errors.get(kind, 0) + 1
            if isinstance(exc, nats.errors.SlowConsumerError):
                self.counters.dropped_slow_consumer += 1

        options = connect_options(self._credentials.user, self._credentials.password)
        try:
            nc = await nats.connect(
                self.url,
                name=self.name,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                connect_timeout=CONNECT_TIMEOUT_S,
                error_cb=on_error,
                closed_cb=on_closed,
                pending_size=CLIENT_PENDING_BYTES,
                **options,
            )
            for subject in self._subscriptions:
                await nc.subscribe(
                    subject,
                    cb=self._deliver,
                    pending_msgs_limit=SUB_PENDING_MSGS_LIMIT,
                    pending_bytes_limit=SUB_PENDING_BYTES_LIMIT,
                )
            for subject in self._requests:
                await nc.subscribe(
                    subject,
                    cb=self._request_callback(subject),
                    pending_msgs_limit=SUB_PENDING_MSGS_LIMIT,
                    pending_bytes_limit=SUB_PENDING_BYTES_LIMIT,
                )
            await nc.flush(timeout=CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            self.counters.connect_failures += 1
            if self.counters.connect_failures == 1 or self.counters.connect_failures % 20 == 0:
                self._log.warning(
                    f"cannot connect to NATS at {self.url} ({type(exc).__name__}: {exc}); "
                    f"{self.counters.connect_failures} failures so far, retrying with backoff"
                )
            return None
        return nc

    async def _deliver(self, msg: Any) -> None:
        self.counters.received += 1
        self._on_message(msg.subject, msg.headers, msg.data)

    def _request_callback(self, pattern: str) -> Callable[[Any], Awaitable[None]]:
        """Callback of one request subscription: the handler learns which subscription got the message
        and the reply subject to answer on (through :meth:`publish`)."""
        handler = self._on_request
        assert handler is not None

        async def deliver(msg: Any) -> None:
            self.counters.received += 1
            handler(pattern, msg.subject, msg.reply or "", msg.headers, msg.data)

        return deliver

    async def _sender(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            nc = self._nc
            while nc is not None and self.state is LinkState.CONNECTED:
                with self._lock:
                    if not self._outbox:
                        # Publishers wake us again only from here on: while we drain they just append.
                        # (If we stop early, disconnected, every reconnect and stop() wakes us.)
                        self._wake_pending = False
                        break
                    item = self._outbox[0]
                subject, body, headers = item
                try:
                    await nc.publish(subject, body, headers=headers)
                except (nats.errors.ConnectionClosedError, nats.errors.OutboundBufferLimitError) as exc:
                    kind = type(exc).__name__
                    self.counters.errors[kind] = self.counters.errors.get(kind, 0) + 1
                    break  # keep the message; retried after reconnect
                except nats.errors.Error as exc:  # e.g. MaxPayloadError: this message can never go
                    kind = type(exc).__name__
                    self.counters.errors[kind] = self.counters.errors.get(kind, 0) + 1
                    self._log.warning(f"NATS refused a message on {subject}: {kind}: {exc}")
                    self._pop_if_first(item)
                    continue
                self._pop_if_first(item)
                self.counters.sent += 1

    def _pop_if_first(self, item: tuple[str, bytes, dict[str, str]]) -> None:
        with self._lock:
            if self._outbox and self._outbox[0] is item:
                self._outbox.popleft()

    async def _sleep_or_stop(self, delay: float) -> None:
        assert self._stop_event is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), timeout=delay)

    async def _flush_outbox(self, nc: Any) -> None:
        """On stop: give the sender up to DRAIN_TIMEOUT_S to hand what is queued to the connection."""
        self._nc = nc
        self.state = LinkState.CONNECTED
        assert self._wake is not None
        self._wake.set()
        deadline = asyncio.get_running_loop().time() + DRAIN_TIMEOUT_S
        while self._outbox and asyncio.get_running_loop().time() < deadline and not nc.is_closed:
            await asyncio.sleep(0.01)
        self.state = LinkState.CONNECTING
        self._nc = None

    async def _close(self, nc: Any) -> None:
        try:
            await asyncio.wait_for(nc.drain(), timeout=DRAIN_TIMEOUT_S)
        except (TimeoutError, nats.errors.Error, OSError):
            with contextlib.suppress(nats.errors.Error, OSError):
                await nc.close()
