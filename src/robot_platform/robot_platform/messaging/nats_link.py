"""The platform's NATS link: one nats-py connection in its own asyncio thread (no rclpy).

Every node's NATS client: nats_bridge, frame_publisher, robot_agent and ws_agent use it directly;
deploy_service (deploy/nats_adapter.py), health_monitor_tree (health/nats_out.py) and jobs_service
(jobs/nats_api.py) keep their domain logic on top of it. Three kinds of subscriptions:

* ``subscriptions`` (fixed, given at construction) deliver (subject, headers, data) to ``on_message``;
* ``requests`` (fixed; request/reply, e.g. service calls) deliver (subscribed subject, subject, reply
  subject, headers, data) to ``on_request``, which answers later with :meth:`NatsLink.publish` on the
  reply subject;
* :meth:`NatsLink.subscribe` / :meth:`NatsLink.unsubscribe` (any thread, while running): a subscription
  held only while the caller wants it, each with its own handler (ws_agent subscribes to what some
  browser watches, and nothing else).

:meth:`NatsLink.request` sends a request and hands the reply, or why there is none, to a callback.

Code of its own on the link's loop (:meth:`NatsLink.spawn`: a periodic publish, a request served off the
loop, an acknowledged JetStream publish) uses :meth:`NatsLink.publish_now`, :meth:`NatsLink.js_publish`
and :meth:`NatsLink.flush` on the current connection; ``on_connected`` runs set-up on each new one
(streams, :mod:`.streams`) and ``on_state`` hears of every connect, failure and loss.

Lifecycle: ``start()`` joins a connection (:mod:`.connection`: its own thread, or the process's shared
one when :func:`.connection.share_connections` is on); once connected the link subscribes and sends what
``publish()`` queued; on failure or disconnect the connection retries with capped, jittered backoff
(:mod:`.backoff`) and the link restores every subscription; ``stop()`` hands what is queued to the
server, ends the link's own subscriptions and tasks, and closes the connection (drained) if no other link
of the process uses it.

Outgoing messages wait in a bounded outbox (drop-oldest, counted in ``dropped_outbox``): while the link
is down the newest ``outbox_capacity`` messages are kept and sent after reconnecting. Durable
store-and-forward is the job of the robot's local nats-server + JetStream (see config/nats/README.md);
the bridge normally talks to that local server, which is always up.

Credentials: each client gets its own reply inbox prefix: the user's, or on a robot the robot id's
(:func:`.inbox.connect_options`); requests to a robot carry a reply subject in that robot's slot of the
inbox (:func:`.inbox.request`), the only inbox subjects a robot's hub user may publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import nats.errors

from robot_platform.exceptions import RobotPlatformError
from robot_platform.messaging import connection, inbox
from robot_platform.messaging.backoff import Backoff
from robot_platform.messaging.connect import CONNECT_TIMEOUT_S, Credentials
from robot_platform.messaging.connection import DRAIN_TIMEOUT_S, STOP_JOIN_TIMEOUT_S, Connection
from robot_platform.messaging.outbox import Outbox
from robot_platform.messaging.subscriptions import MessageHandler, OnDemandSubscriptions

SUB_PENDING_MSGS_LIMIT = 1000  # per subscription; beyond it nats-py drops (slow consumer, counted)
SUB_PENDING_BYTES_LIMIT = 32 * 1024 * 1024

# (subscribed subject, possibly a wildcard; message subject; reply subject; headers; payload)
RequestHandler = Callable[[str, str, str, "dict[str, str] | None", bytes], None]
# ((reply headers, reply payload), "") or (None, why there is no reply)
ReplyHandler = Callable[["tuple[dict[str, str] | None, bytes] | None", str], None]
# (connected, what happened: "connected", "connect failed: <error>", "disconnected, reconnecting", "closed")
StateHandler = Callable[[bool, str], None]


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
    requests: int = 0
    request_failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class NatsLink:
    """Thread-safe publish into NATS and callbacks for subscribed subjects (called in the link's thread:
    the connection's, see :mod:`.connection`)."""

    def __init__(
        self,
        url: str,
        on_message: MessageHandler | None = None,
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
        sub_pending_msgs: int = SUB_PENDING_MSGS_LIMIT,
        sub_pending_bytes: int = SUB_PENDING_BYTES_LIMIT,
        on_state: StateHandler | None = None,
    ) -> None:
        self.url = url
        self.name = name
        self._subscriptions = list(subscriptions)
        if self._subscriptions and on_message is None:
            raise ValueError("subscriptions need an on_message handler")
        self._on_message = on_message
        self._pending_limits = {"pending_msgs_limit": sub_pending_msgs, "pending_bytes_limit": sub_pending_bytes}
        self._credentials = credentials or Credentials()
        self._backoff = backoff or Backoff()
        self._log = log or logging.getLogger(__name__)
        self._outbox = Outbox(outbox_capacity, self._wake_loop, self._count_drop)
        self._conn: Connection | None = None
        self._thread: threading.Thread | None = None  # the connection's
        self._wake = asyncio.Event()  # link thread: something to send, or the link came up
        self._sender: asyncio.Task[None] | None = None
        self._nc: Any = None  # link thread: the connection while this link is attached to it
        self._held: list[Any] = []  # link thread: this link's own subscriptions on _nc (not subscribe()'s)
        self.state = LinkState.STOPPED
        self.counters = LinkCounters()
        self._up = threading.Event()  # set while connected (wait_connected)
        self._on_state = on_state
        self._on_connected = on_connected
        self._requests = list(requests)
        self._on_request = on_request
        if self._requests and on_request is None:
            raise ValueError("request subscriptions need an on_request handler")
        self._subs = OnDemandSubscriptions(self._subscribe, self._count_error)  # subscribe()/unsubscribe()
        self._tasks: set[asyncio.Future[None]] = set()  # link thread: syncs and requests, cancelled on stop

    # ------------------------------------------------------------------ any thread
    def start(self) -> None:
        """Join a connection (a new one, or the process's shared one) and return; it connects in the
        background."""
        if self._conn is not None:
            return
        conn = connection.acquire(self.url, self._credentials, name=self.name, backoff=self._backoff, log=self._log)
        self._conn, self._thread = conn, conn.thread
        self._wake = asyncio.Event()  # bound to the loop of this start's connection
        self.state = LinkState.CONNECTING
        if conn.submit(lambda: self._join(conn)) is None:
            self._log.warning(f"NATS link {self.name}: the connection's thread is not running")

    def subscribe(self, subject: str, handler: MessageHandler) -> None:
        """Hold a subscription on ``subject`` (wildcards allowed) until :meth:`unsubscribe`; also across
        reconnects, and one made before the link connects. ``handler(subject, headers, data)`` runs in the
        link thread; subscribing again with another handler replaces it. Never blocks."""
        if self._subs.want(subject, handler):
            self.spawn(self._subs.sync, self._current_nc)

    def unsubscribe(self, subject: str) -> None:
        """End the subscription :meth:`subscribe` made on ``subject`` (nothing if there is none)."""
        if self._subs.drop(subject):
            self.spawn(self._subs.sync, self._current_nc)

    def wait_connected(self, timeout: float) -> bool:
        """Block until the link is connected (True) or ``timeout`` passed (False)."""
        return self._up.wait(timeout)

    def request(self, subject: str, body: bytes, headers: dict[str, str], timeout: float, reply: ReplyHandler) -> None:
        """Send a request without blocking; ``reply((headers, data), "")`` or ``reply(None, reason)`` runs in
        the link thread once the reply came, ``timeout`` passed, or the link stopped."""
        if not self.spawn(self._request, subject, body, headers, timeout, reply):
            self.counters.request_failures += 1
            reply(None, "the NATS link is not running")

    def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        """Queue one message (never blocks); the oldest queued one is dropped and counted when full.

        Inside :meth:`batch` (same thread) the link thread is woken once when the batch ends."""
        self._outbox.put(subject, body, headers)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Publishes of this thread inside the block wake the link thread once, at the end: a burst of
        messages taken from ROS together needs one cross-thread wake-up, not one each (:mod:`.outbox`)."""
        return self._outbox.batch()

    @property
    def _loop(self) -> asyncio.AbstractEventLoop | None:
        conn = self._conn
        return conn.loop if conn is not None else None

    def _wake_loop(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed during shutdown
                loop.call_soon_threadsafe(self._wake.set)

    def spawn(self, fn: Callable[..., Awaitable[None]], *args: Any) -> bool:
        """Run ``fn(*args)`` as a task of the link thread (any thread; cancelled when the link stops);
        False when the link is not running."""
        loop = self._loop
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(self._start_task, functools.partial(fn, *args))
        except RuntimeError:  # loop already closed during shutdown
            return False
        return True

    def _start_task(self, make: Callable[[], Awaitable[None]]) -> None:
        if self._conn is None:  # stopped meanwhile
            return
        task = asyncio.ensure_future(make())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def queued(self) -> int:
        return len(self._outbox)

    @property
    def alive(self) -> bool:
        """The link runs: started, not stopped, and its connection's thread is up."""
        return self._conn is not None and self._thread is not None and self._thread.is_alive()

    @property
    def connected(self) -> bool:
        return self.state is LinkState.CONNECTED

    def snapshot(self) -> dict[str, Any]:
        """Counters and state as plain data (for /healthz, /diagnostics and metrics)."""
        c = self.counters
        return {
            "connected": self.connected, "state": self.state.value, "queued": self.queued,
            "sent": c.sent, "received": c.received, "dropped_outbox": c.dropped_outbox,
            "dropped_slow_consumer": c.dropped_slow_consumer, "connects": c.connects,
            "connect_failures": c.connect_failures, "disconnects": c.disconnects, "requests": c.requests,
            "request_failures": c.request_failures, "errors": dict(c.errors),
        }  # fmt: skip

    def stop(self, timeout: float = STOP_JOIN_TIMEOUT_S) -> None:
        """Hand what is queued to the server (up to DRAIN_TIMEOUT_S), end this link's subscriptions and
        tasks, and close the connection (drained, thread joined) if no other link uses it; bounded by
        ``timeout``. Safe twice and before :meth:`start`."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        future = conn.submit(lambda: conn.leave(self))
        if future is not None:
            with contextlib.suppress(Exception):  # a timeout, or the loop ended under it: closing anyway
                future.result(timeout)
        if connection.release(conn):
            conn.stop(timeout)
        self.state = LinkState.STOPPED

    # ------------------------------------------------------------------ link thread (the connection's)
    async def _join(self, conn: Connection) -> None:
        if self._conn is not conn:  # stopped before it joined
            return
        self._sender = asyncio.create_task(self._send_loop())
        await conn.join(self)

    async def _attach(self, nc: Any) -> None:
        """A new connection (or this link just joined a connected one): subscribe, set up, send."""
        self._held = []
        try:
            if self._on_message is not None:
                for subject in self._subscriptions:
                    self._held.append(
                        await nc.subscribe(subject, cb=self._callback(self._on_message), **self._pending_limits)
                    )
            for subject in self._requests:
                self._held.append(
                    await nc.subscribe(subject, cb=self._request_callback(subject), **self._pending_limits)
                )
            await nc.flush(timeout=CONNECT_TIMEOUT_S)
        except (TimeoutError, nats.errors.Error) as exc:  # lost on the way: the next connection tries again
            self._count_error(exc)
            self._connect_failed(f"connect failed: {type(exc).__name__}")
            self._log.warning(f"{self.name}: subscribing on {self.url} failed ({type(exc).__name__}: {exc}); "
                              "this link retries on the next connection")  # fmt: skip
            return
        self._nc = nc
        self.state = LinkState.CONNECTED
        self.counters.connects += 1
        await self._subs.restore(nc)  # the new connection holds none of subscribe()'s yet
        if self._on_connected is not None:
            try:
                await self._on_connected(_OwnSubscriptions(nc, self._held))
            except (TimeoutError, nats.errors.Error, RobotPlatformError) as exc:
                self._log.warning(f"setup after connecting to {self.url} failed: {type(exc).__name__}: {exc}")
            except Exception as exc:  # not swallowed: a bug of this link's set-up must not end the others'
                self._count_error(exc)
                self._log.error(f"{self.name}: setup after connecting failed:\n{traceback.format_exc()}")
        self._up.set()
        self._tell_state(True, "connected")
        self._wake.set()  # flush what queued up while down

    def _lost(self) -> None:
        self._up.clear()
        self.state = LinkState.CONNECTING
        self._nc = None
        self._held = []
        self.counters.disconnects += 1
        self._tell_state(False, "disconnected, reconnecting")

    def _connect_failed(self, what: str) -> None:
        self.counters.connect_failures += 1
        self._tell_state(False, what)

    def _client_error(self, exc: Exception) -> None:
        self._count_error(exc)
        if isinstance(exc, nats.errors.SlowConsumerError):
            self.counters.dropped_slow_consumer += 1

    def _owns(self, sid: Any) -> bool:
        return sid is not None and any(getattr(sub, "_id", None) == sid for sub in (*self._held, *self._subs.held()))

    async def _detach(self, nc: Any) -> None:
        """This link leaves the connection (``nc``, None when down): hand the queue to the server, end its
        subscriptions and tasks; the connection stays for the others."""
        if nc is not None and self._nc is nc:
            await self._flush_outbox(nc)
            for sub in self._held:
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    await sub.unsubscribe()
            await self._subs.release()
            if nc.is_connected:
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    await nc.flush(timeout=DRAIN_TIMEOUT_S)
        self._held = []
        self._up.clear()
        self._nc = None
        self.state = LinkState.STOPPED
        current = asyncio.current_task()
        tasks = [t for t in (self._sender, *self._tasks) if t is not None and t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tell_state(False, "closed")

    def _tell_state(self, connected: bool, what: str) -> None:
        if self._on_state is not None:
            self._on_state(connected, what)

    def _current_nc(self) -> Any:
        return self._nc

    async def _subscribe(self, nc: Any, subject: str, handler: MessageHandler) -> Any:
        return await nc.subscribe(subject, cb=self._callback(handler), **self._pending_limits)

    def _callback(self, handler: MessageHandler) -> Callable[[Any], Awaitable[None]]:
        async def deliver(msg: Any) -> None:
            self.counters.received += 1
            handler(msg.subject, msg.headers, msg.data)

        return deliver

    def _request_callback(self, pattern: str) -> Callable[[Any], Awaitable[None]]:
        """Callback of one request subscription: the handler learns which subscription got the message
        and the reply subject to answer on (through :meth:`publish`)."""
        handler = self._on_request
        assert handler is not None

        async def deliver(msg: Any) -> None:
            self.counters.received += 1
            handler(pattern, msg.subject, msg.reply or "", msg.headers, msg.data)

        return deliver

    async def _request(self, subject: str, body: bytes, headers: dict[str, str], timeout: float,
                       reply: ReplyHandler) -> None:  # fmt: skip
        self.counters.requests += 1
        nc = self._nc
        try:
            if nc is None or self.state is not LinkState.CONNECTED:
                raise nats.errors.ConnectionClosedError
            msg = await inbox.request(nc, subject, body, timeout=timeout, headers=headers)
        except asyncio.CancelledError:
            self._request_failed(reply, "the NATS link is stopping")
            raise
        except nats.errors.NoRespondersError:
            self._request_failed(reply, f"no service answers on {subject}")
        except (TimeoutError, nats.errors.TimeoutError):
            self._request_failed(reply, f"no reply on {subject} within {timeout:.1f}s")
        except (nats.errors.ConnectionClosedError, nats.errors.StaleConnectionError):
            self._request_failed(reply, "NATS is not connected")
        except nats.errors.Error as exc:
            self._count_error(exc)
            self._request_failed(reply, f"request on {subject} failed: {type(exc).__name__}")
        else:
            reply((msg.headers, msg.data), "")

    def _request_failed(self, reply: ReplyHandler, reason: str) -> None:
        self.counters.request_failures += 1
        reply(None, reason)

    def _count_drop(self) -> None:
        self.counters.dropped_outbox += 1

    def _count_error(self, exc: Exception) -> None:
        kind = type(exc).__name__
        self.counters.errors[kind] = self.counters.errors.get(kind, 0) + 1

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._send_queued()

    async def _send_queued(self) -> None:
        nc = self._nc
        while nc is not None and self._nc is nc and self.state is LinkState.CONNECTED:
            # Empty: publishers wake us again from here on. (If we stop early, disconnected, every
            # reconnect and stop() wakes us.)
            item = self._outbox.first()
            if item is None:
                break
            subject, body, headers = item
            try:
                await nc.publish(subject, body, headers=headers)
            except (nats.errors.ConnectionClosedError, nats.errors.OutboundBufferLimitError) as exc:
                self._count_error(exc)
                break  # keep the message; retried after reconnect
            except nats.errors.Error as exc:  # e.g. MaxPayloadError: this message can never go
                self._count_error(exc)
                self._log.warning(f"NATS refused a message on {subject}: {type(exc).__name__}: {exc}")
                self._outbox.pop_if_first(item)
                continue
            self._outbox.pop_if_first(item)
            self.counters.sent += 1

    async def _flush_outbox(self, nc: Any) -> None:
        """On stop: give the sender up to DRAIN_TIMEOUT_S to hand what is queued to the connection."""
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while self._outbox and loop.time() < deadline and not nc.is_closed:
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ link thread, for spawned code
    def _current(self) -> Any:
        nc = self._nc
        if nc is None or self.state is not LinkState.CONNECTED:
            raise nats.errors.ConnectionClosedError
        return nc

    async def publish_now(self, subject: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Publish on the current connection, bypassing the outbox (link thread only: code run through
        :meth:`spawn` that keeps its own queue, e.g. keep-latest snapshots). Raises
        ``nats.errors.ConnectionClosedError`` while disconnected, and what nats-py raises."""
        await self._current().publish(subject, body, headers=headers or None)
        self.counters.sent += 1

    async def js_publish(self, subject: str, body: bytes, headers: dict[str, str], timeout: float) -> Any:
        """Publish to JetStream and wait for the stream's ack (link thread only); raises while
        disconnected, on no ack within ``timeout`` and on a refusal."""
        ack = await self._current().jetstream().publish(subject, body, headers=headers, timeout=timeout)
        self.counters.sent += 1
        return ack

    async def flush(self, timeout: float) -> None:
        """Wait until the server has what was published on the current connection (link thread only)."""
        await self._current().flush(timeout=timeout)


class _OwnSubscriptions:
    """The connection as ``on_connected`` sees it: subscriptions it makes are recorded as the link's own,
    so stopping the link ends them while the connection stays for the process's other links."""

    def __init__(self, nc: Any, held: list[Any]) -> None:
        self._nc = nc
        self._held = held

    async def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        sub = await self._nc.subscribe(*args, **kwargs)
        self._held.append(sub)
        return sub

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nc, name)
