"""The NATS link's on-demand subscriptions: what callers want (any thread) and what the current
connection holds (link thread), kept equal.

ws_agent subscribes to what some browser watches and nothing else, so subscriptions come and go while
the link runs, and every new connection must hold all of those wanted at that moment. One sync runs at
a time (syncs interleave at awaits: a subject must never be subscribed twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors

# (message subject; headers; payload); the return value is ignored
MessageHandler = Callable[[str, "dict[str, str] | None", bytes], object]
Subscribe = Callable[[Any, str, MessageHandler], Awaitable[Any]]  # (connection, subject, handler) -> sub


class OnDemandSubscriptions:
    """``want``/``drop`` from any thread; ``sync``/``restore`` on the link's loop."""

    def __init__(self, subscribe: Subscribe, on_error: Callable[[Exception], None]) -> None:
        self._subscribe = subscribe
        self._on_error = on_error
        self._lock = threading.Lock()
        self._wanted: dict[str, MessageHandler] = {}  # under _lock
        self._held: dict[str, tuple[MessageHandler, Any]] = {}  # link thread: those of the current connection
        self._sync_lock = asyncio.Lock()  # link thread: one sync at a time

    def want(self, subject: str, handler: MessageHandler) -> bool:
        """Hold ``subject`` with ``handler`` (another handler replaces it); True if that changed anything."""
        with self._lock:
            if self._wanted.get(subject) is handler:
                return False
            self._wanted[subject] = handler
        return True

    def drop(self, subject: str) -> bool:
        """Hold ``subject`` no more; True if it was wanted."""
        with self._lock:
            return self._wanted.pop(subject, None) is not None

    async def restore(self, nc: Any) -> None:
        """A new connection holds none yet: subscribe every wanted subject on it."""
        async with self._sync_lock:
            self._held = {}
            await self._sync_locked(nc)

    async def sync(self, current: Callable[[], Any]) -> None:
        """Make the connection ``current()`` holds what the callers want now (nothing while there is none:
        the next connection subscribes them all)."""
        nc = current()
        if nc is None:
            return
        async with self._sync_lock:
            if current() is nc:
                await self._sync_locked(nc)

    async def _sync_locked(self, nc: Any) -> None:
        with self._lock:
            wanted = dict(self._wanted)
        held = self._held
        try:
            for subject, (handler, sub) in list(held.items()):
                if wanted.get(subject) is not handler:
                    del held[subject]
                    await sub.unsubscribe()
            for subject, handler in wanted.items():
                if subject not in held:
                    held[subject] = (handler, await self._subscribe(nc, subject, handler))
        except nats.errors.Error as exc:  # connection lost on the way: the next one subscribes afresh
            self._on_error(exc)

    def held(self) -> list[Any]:
        """The subscriptions the current connection holds (link thread)."""
        return [sub for _handler, sub in self._held.values()]

    async def release(self) -> None:
        """The link stops while its connection stays (shared with other links): end every subscription
        the connection holds for it. What the callers want is kept (a restarted link subscribes again)."""
        async with self._sync_lock:
            held, self._held = self._held, {}
            for _handler, sub in held.values():
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
