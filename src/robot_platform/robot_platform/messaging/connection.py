"""One nats-py connection in its own asyncio thread, used by one or more :class:`~.nats_link.NatsLink`.

Why shared: in the robot's single-process layout (agent/one_process.py) nats_bridge, health_monitor_tree,
ws_agent, robot_agent and deploy_service each opened a connection of their own to the robot's
nats-server: five sockets, five asyncio threads, five nats-py read/flush loops and five ping timers for
one process. With :func:`share_connections` on (one_process.py turns it on; a process of one node has
nothing to share) every link of the process with the same server URL and credentials uses ONE
connection; each link still holds its own subscriptions, outbox, counters and set-up (``on_connected``),
and stopping a link removes only its own part (:meth:`~.nats_link.NatsLink.stop`). The connection
closes when its last link stops. The client name the server shows (``/connz``) is the one given to
:func:`share_connections` (robot_agent_all: ``robot_agent_all.<robot id>``), else the first link's.

What the connection does, for every link using it: connect, with capped jittered backoff
(:mod:`.backoff`) on failure or loss (nats-py's own reconnect is off, so every (re)connect goes through
the same backoff and the links' set-up); attach each link to every new connection (its subscriptions,
its ``on_connected``); tell each link of a failure or a loss; hand a client error to the link it
concerns (a slow consumer to the link owning the subscription, other errors to every link). A link's
failure does not reach the others: an exception in its set-up is logged and counted for it alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Protocol

import nats.errors

from robot_platform.common.event_loop import run_to_end
from robot_platform.messaging import connect
from robot_platform.messaging.backoff import Backoff
from robot_platform.messaging.connect import Credentials

DRAIN_TIMEOUT_S = 2.0
STOP_JOIN_TIMEOUT_S = 5.0


class User(Protocol):
    """What the connection needs of a link (:class:`~.nats_link.NatsLink`); all run on its loop."""

    async def _attach(self, nc: Any) -> None: ...
    async def _detach(self, nc: Any) -> None: ...
    def _lost(self) -> None: ...
    def _connect_failed(self, what: str) -> None: ...
    def _client_error(self, exc: Exception) -> None: ...
    def _owns(self, sid: Any) -> bool: ...


class Connection:
    """The connection thread and its reconnect loop; links join and leave it (see the module doc)."""

    def __init__(self, url: str, credentials: Credentials, *, name: str, backoff: Backoff, log: Any,
                 key: Hashable = None) -> None:  # fmt: skip
        self.url = url
        self.name = name
        self.key = key  # registry key; None: private to one link
        self.refs = 0  # links holding it (registry lock)
        self._credentials = credentials
        self._backoff = backoff
        self._log = log
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.nc: Any = None  # loop thread: the current connection, None while down
        self._users: list[User] = []  # loop thread
        self._ready = threading.Event()
        self._stop_event: asyncio.Event | None = None
        self._gate: asyncio.Lock | None = None  # (re)connect + attach vs a link joining or leaving
        self.connect_failures = 0

    # ------------------------------------------------------------------ any thread
    def start(self) -> None:
        self.thread = threading.Thread(target=self._thread_main, name=f"{self.name}-nats", daemon=True)
        self.thread.start()
        self._ready.wait(STOP_JOIN_TIMEOUT_S)

    def submit(self, make: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``make()`` on the loop; the concurrent future, or None when the loop is not running."""
        loop = self.loop
        if loop is None:
            return None

        async def run() -> Any:
            return await make()

        try:
            return asyncio.run_coroutine_threadsafe(run(), loop)
        except RuntimeError:  # loop closed during shutdown
            return None

    def stop(self, timeout: float = STOP_JOIN_TIMEOUT_S) -> None:
        """Close the connection (drained) and join the thread; once no link uses it."""
        loop, stop_event = self.loop, self._stop_event
        if loop is not None and stop_event is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop_event.set)
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)
            if self.thread.is_alive():
                self._log.warning(f"NATS connection thread did not stop within {timeout:.1f}s")

    # ------------------------------------------------------------------ loop thread
    async def join(self, user: User) -> None:
        assert self._gate is not None
        async with self._gate:
            self._users.append(user)
            if self.nc is not None:
                await user._attach(self.nc)
            elif self.connect_failures:  # attempts that failed before this link joined count for it too
                user._connect_failed(f"connect failed {self.connect_failures} time(s) before this link joined")

    async def leave(self, user: User) -> None:
        assert self._gate is not None
        async with self._gate:
            if user in self._users:
                self._users.remove(user)
                await user._detach(self.nc)

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            run_to_end(loop, self._main())
        finally:
            self.loop = None

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        self._gate = asyncio.Lock()
        self._ready.set()
        try:
            while not self._stop_event.is_set():
                closed = asyncio.Event()
                async with self._gate:
                    nc = await self._connect(closed)
                    if nc is not None:
                        self._backoff.reset()
                        self.nc = nc
                        self._log.info(f"connected to NATS at {self.url}")
                        for user in list(self._users):
                            await user._attach(nc)
                if nc is None:
                    await self._sleep_or_stop(self._backoff.next_delay())
                    continue
                stop_wait = asyncio.create_task(self._stop_event.wait())
                closed_wait = asyncio.create_task(closed.wait())
                await asyncio.wait({stop_wait, closed_wait}, return_when=asyncio.FIRST_COMPLETED)
                stop_wait.cancel()
                closed_wait.cancel()
                async with self._gate:
                    if self._stop_event.is_set():
                        for user in list(self._users):  # normally none: the last one's leaving stops us
                            await user._detach(nc)
                        self._users.clear()
                        self.nc = None
                        await connect.close(nc, DRAIN_TIMEOUT_S)
                        break
                    self.nc = None
                    for user in list(self._users):
                        user._lost()
                self._log.warning(f"lost NATS connection to {self.url}; reconnecting with backoff")
                await self._sleep_or_stop(self._backoff.next_delay())
        finally:
            self.nc = None
            for user in list(self._users):
                with contextlib.suppress(Exception):
                    await user._detach(None)
            self._users.clear()

    async def _connect(self, closed: asyncio.Event) -> Any:
        async def on_closed() -> None:
            closed.set()

        def on_error(exc: Exception) -> None:
            owners: list[User] = []
            if isinstance(exc, nats.errors.SlowConsumerError):
                owners = [u for u in self._users if u._owns(getattr(exc, "sid", None))]
            for user in owners or list(self._users):
                user._client_error(exc)

        try:
            return await connect.connect(
                self.url,
                name=self.name,
                credentials=self._credentials,
                error_cb=connect.quiet_error_cb(self._log, self.url, on_error, level="debug"),
                reconnect=False,
                closed_cb=on_closed,
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            self.connect_failures += 1
            for user in list(self._users):
                user._connect_failed(f"connect failed: {type(exc).__name__}")
            if self.connect_failures == 1 or self.connect_failures % 20 == 0:
                self._log.warning(
                    f"cannot connect to NATS at {self.url} ({type(exc).__name__}: {exc}); "
                    f"{self.connect_failures} failures so far, retrying with backoff"
                )
            return None

    async def _sleep_or_stop(self, delay: float) -> None:
        assert self._stop_event is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), timeout=delay)


# ---------------------------------------------------------------------- the process's connections
_lock = threading.Lock()
_shared: dict[Hashable, Connection] = {}
_sharing = False
_shared_name = ""


def share_connections(enabled: bool = True, name: str = "") -> None:
    """Links created from now on share one connection per (URL, credentials) in this process (True), or
    each opens its own (False, the default); ``name`` is the shared connections' client name (default:
    the first link's). Links already running keep what they have."""
    global _sharing, _shared_name
    with _lock:
        _sharing, _shared_name = enabled, name


def sharing() -> bool:
    return _sharing


def acquire(url: str, credentials: Credentials, *, name: str, backoff: Backoff, log: Any) -> Connection:
    """The connection a new link uses (started); hand it back with :func:`release` when the link stops."""
    with _lock:
        key = (url, credentials.user, credentials.password, credentials.inbox_owner) if _sharing else None
        conn = _shared.get(key) if key is not None else None
        fresh = conn is None
        if conn is None:
            conn_name = (_shared_name or name) if key is not None else name
            conn = Connection(url, credentials, name=conn_name, backoff=backoff, log=log, key=key)
            if key is not None:
                _shared[key] = conn
        conn.refs += 1
        if fresh:
            conn.start()  # under the lock: a second link waits until the loop runs
    return conn


def release(conn: Connection) -> bool:
    """A link stopped using ``conn``; True when it was the last (the caller then stops it)."""
    with _lock:
        conn.refs -= 1
        if conn.refs > 0:
            return False
        if conn.key is not None and _shared.get(conn.key) is conn:
            del _shared[conn.key]
        return True


def open_connections() -> int:
    """Shared connections open in this process (tests, diagnostics)."""
    with _lock:
        return len(_shared)
