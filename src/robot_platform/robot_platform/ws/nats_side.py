"""ws_agent's NATS connection: nats-py in its own asyncio thread, subscriptions on demand, requests.

Why not the bridge's :class:`~robot_platform.bridge.link.NatsLink`: the agent subscribes and
unsubscribes while running (only subjects some browser watches) and makes request/reply calls for
``call_service``; NatsLink has a fixed subscription list and no request. See the report for the
proposed NatsLink extension that would let the two share one class.

Lifecycle: ``start()`` spawns the thread, which connects with capped, jittered backoff (the bridge's
:class:`Backoff`) until it succeeds; from then on nats-py reconnects by itself and restores the
subscriptions. ``set_interest`` / ``publish`` / ``request`` are thread-safe and never block the caller.
``stop()`` drains and joins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors

from robot_platform.bridge.backoff import Backoff
from robot_platform.bridge.inbox import connect_options

CONNECT_TIMEOUT_S = 2.0
RECONNECT_WAIT_S = 0.5
DRAIN_TIMEOUT_S = 2.0
STOP_JOIN_TIMEOUT_S = 5.0
SUB_PENDING_MSGS_LIMIT = 10_000
SUB_PENDING_BYTES_LIMIT = 64 * 1024 * 1024
OUTBOX_CAPACITY = 1000

# (subscription subject, possibly a wildcard; message subject; headers; payload)
MessageFn = Callable[[str, str, "dict[str, str] | None", bytes], None]
ReplyFn = Callable[["tuple[dict[str, str] | None, bytes] | None", "str"], None]


@dataclass
class NatsCounters:
    published: int = 0
    dropped_outbox: int = 0
    requests: int = 0
    request_failures: int = 0
    connects: int = 0
    disconnects: int = 0
    slow_consumer: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class NatsSide:
    """Thread-safe facade over one nats-py connection (see the module docstring)."""

    def __init__(self, url: str, on_message: MessageFn, *, name: str = "ws_agent", user: str = "",
                 password: str = "", log: logging.Logger | Any | None = None) -> None:  # fmt: skip
        self.url = url
        self.name = name
        self._on_message = on_message
        self._auth = connect_options(user, password)  # own reply inbox: _INBOX.<user>
        self._log = log or logging.getLogger(__name__)
        self._lock = threading.Lock()
        self._wanted: set[str] = set()
        self._subs: dict[str, Any] = {}
        self._outbox: deque[tuple[str, bytes, dict[str, str]]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._nc: Any = None
        self._ready = threading.Event()
        self._sub_lock: asyncio.Lock | None = None
        self.counters = NatsCounters()

    @property
    def connected(self) -> bool:
        nc = self._nc
        return nc is not None and nc.is_connected

    # ------------------------------------------------------------------ any thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._thread_main, name=f"{self.name}-nats", daemon=True)
        self._thread.start()
        self._ready.wait(STOP_JOIN_TIMEOUT_S)

    def set_interest(self, subject: str, wanted: bool) -> None:
        with self._lock:
            (self._wanted.add if wanted else self._wanted.discard)(subject)
        self._call(self._sync_subs)

    def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        """Queue a message (drop-oldest beyond OUTBOX_CAPACITY, counted)."""
        with self._lock:
            if len(self._outbox) >= OUTBOX_CAPACITY:
                self._outbox.popleft()
                self.counters.dropped_outbox += 1
            self._outbox.append((subject, body, headers))
        self._call(self._flush_outbox)

    def request(self, subject: str, body: bytes, headers: dict[str, str], timeout: float, reply: ReplyFn) -> None:
        """Send a request; ``reply((headers, data), "")`` or ``reply(None, reason)`` runs in the NATS thread."""
        self.counters.requests += 1
        loop = self._loop
        if loop is None:
            self.counters.request_failures += 1
            reply(None, "agent is shutting down")
            return
        try:
            asyncio.run_coroutine_threadsafe(self._request(subject, body, headers, timeout, reply), loop)
        except RuntimeError:
            self.counters.request_failures += 1
            reply(None, "agent is shutting down")

    def stop(self, timeout: float = STOP_JOIN_TIMEOUT_S) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def _call(self, fn: Callable[[], Any]) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                loop.call_soon_threadsafe(lambda: asyncio.ensure_future(fn()))

    # ------------------------------------------------------------------ NATS thread
    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            self._loop = None
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._sub_lock = asyncio.Lock()
        self._ready.set()
        backoff = Backoff()
        while not self._stop.is_set():
            nc = await self._connect()
            if nc is not None:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff.next_delay())
        else:
            return
        self._nc = nc
        self.counters.connects += 1
        self._log.info(f"connected to NATS at {self.url}")
        await self._sync_subs()
        await self._flush_outbox()
        await self._stop.wait()
        with contextlib.suppress(nats.errors.Error, OSError, asyncio.TimeoutError):
            await asyncio.wait_for(nc.drain(), DRAIN_TIMEOUT_S)
        with contextlib.suppress(nats.errors.Error, OSError):
            await nc.close()
        self._nc = None

    async def _connect(self) -> Any:
        async def on_error(exc: Exception) -> None:
            kind = type(exc).__name__
            self.counters.errors[kind] = self.counters.errors.get(kind, 0) + 1
            if isinstance(exc, nats.errors.SlowConsumerError):
                self.counters.slow_consumer += 1

        async def on_disconnected() -> None:
            if self._stop is not None and self._stop.is_set():
                return  # our own drain/close
            self.counters.disconnects += 1
            self._log.warning(f"lost NATS connection to {self.url}; nats-py reconnects")

        async def on_reconnected() -> None:
            self.counters.connects += 1
            self._log.info(f"reconnected to NATS at {self.url}")
            await self._flush_outbox()

        try:
            return await nats.connect(
                self.url, name=self.name, connect_timeout=CONNECT_TIMEOUT_S, allow_reconnect=True,
                max_reconnect_attempts=-1, reconnect_time_wait=RECONNECT_WAIT_S, error_cb=on_error,
                disconnected_cb=on_disconnected, reconnected_cb=on_reconnected, **self._auth,
            )  # fmt: skip
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            self._log.warning(f"cannot connect to NATS at {self.url}: {type(exc).__name__}; retrying")
            return None

    async def _sync_subs(self) -> None:
        nc = self._nc
        if nc is None or self._sub_lock is None:
            return
        async with self._sub_lock:  # calls interleave at awaits: never subscribe a subject twice
            await self._sync_subs_locked(nc)

    async def _sync_subs_locked(self, nc: Any) -> None:
        with self._lock:
            wanted = set(self._wanted)
        for subject in [s for s in self._subs if s not in wanted]:
            sub = self._subs.pop(subject)
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        for subject in wanted - set(self._subs):
            self._subs[subject] = await nc.subscribe(
                subject, cb=self._callback(subject), pending_msgs_limit=SUB_PENDING_MSGS_LIMIT,
                pending_bytes_limit=SUB_PENDING_BYTES_LIMIT,
            )  # fmt: skip

    def _callback(self, pattern: str) -> Callable[[Any], Any]:
        """Callback of one subscription: tells which subscription got the message, so a message
        matching both ``robots.*.presence`` and ``robots.r1.presence`` reaches each set of clients once."""

        async def deliver(msg: Any) -> None:
            self._on_message(pattern, msg.subject, msg.headers, msg.data)

        return deliver

    async def _flush_outbox(self) -> None:
        nc = self._nc
        while nc is not None and nc.is_connected:
            with self._lock:
                if not self._outbox:
                    return
                subject, body, headers = self._outbox.popleft()
            try:
                await nc.publish(subject, body, headers=headers)
                self.counters.published += 1
            except nats.errors.Error as exc:
                kind = type(exc).__name__
                self.counters.errors[kind] = self.counters.errors.get(kind, 0) + 1
                self._log.warning(f"NATS refused a message on {subject}: {kind}")

    async def _request(self, subject: str, body: bytes, headers: dict[str, str], timeout: float,
                       reply: ReplyFn) -> None:  # fmt: skip
        nc = self._nc
        if nc is None or not nc.is_connected:
            self.counters.request_failures += 1
            reply(None, "NATS is not connected")
            return
        try:
            msg = await nc.request(subject, body, timeout=timeout, headers=headers)
        except nats.errors.NoRespondersError:
            self.counters.request_failures += 1
            reply(None, f"no service answers on {subject}")
            return
        except (TimeoutError, nats.errors.TimeoutError):
            self.counters.request_failures += 1
            reply(None, f"no reply on {subject} within {timeout:.1f}s")
            return
        except nats.errors.Error as exc:
            self.counters.request_failures += 1
            reply(None, f"request on {subject} failed: {type(exc).__name__}")
            return
        reply((msg.headers, msg.data), "")
