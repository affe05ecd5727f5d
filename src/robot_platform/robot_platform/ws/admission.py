"""Connections not yet admitted (TCP accepted, HTTP request not complete): a hard cap, oldest cut first.

Why evict the oldest instead of refusing the newest: a slow-loris attacker holds connections that never
finish their request; refusing new connections at the cap would refuse the real clients too (all of them
send their request within milliseconds). Cutting the oldest half-sent connection when a new one arrives
keeps the number held at the cap, and a real client, never the oldest, is always served. Each pending
connection is also cut after the handshake timeout (websockets' ``open_timeout``), whichever comes first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable


class PendingConnections:
    """Event-loop-only bookkeeping (no lock): ``add`` on accept, ``done`` when the request arrived or the
    connection went away. ``abort`` of an evicted connection is called at once."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("max_pending_connections must be >= 1")
        self.capacity = capacity
        self._pending: OrderedDict[Hashable, Callable[[], None]] = OrderedDict()
        self.evicted = 0
        self.peak = 0

    def add(self, key: Hashable, abort: Callable[[], None]) -> None:
        self._pending[key] = abort
        while len(self._pending) > self.capacity:
            _, oldest_abort = self._pending.popitem(last=False)
            self.evicted += 1
            oldest_abort()
        self.peak = max(self.peak, len(self._pending))

    def done(self, key: Hashable) -> bool:
        """True when ``key`` was still pending (its request never completed, if it is going away)."""
        return self._pending.pop(key, None) is not None

    def __len__(self) -> int:
        return len(self._pending)
