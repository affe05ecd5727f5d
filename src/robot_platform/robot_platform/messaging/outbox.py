"""The NATS link's outbox: bounded, drop-oldest, and one wake-up of the sender per burst.

Publishers (any thread) append; the link's sender (its own thread) takes from the front and removes a
message only once the connection took it, so a message caught by a disconnect is sent after the
reconnect. Full: the oldest message is dropped and counted (``on_drop``), never the caller blocked.

Waking the sender is a cross-thread call (``call_soon_threadsafe``: a syscall plus an event-loop round)
that cost as much as encoding a message, so it happens once per burst: not again while the sender is
known to be draining, and inside :meth:`Outbox.batch` only when the block ends.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterator

Message = tuple[str, bytes, dict[str, str]]  # subject, body, headers


class Outbox:
    """Thread-safe queue of outgoing messages; ``wake()`` asks the sender to drain it."""

    def __init__(self, capacity: int, wake: Callable[[], None], on_drop: Callable[[], None]) -> None:
        self._items: deque[Message] = deque()
        self._capacity = capacity
        self._wake = wake
        self._on_drop = on_drop
        self._lock = threading.Lock()
        self._wake_pending = False  # a wake-up of the sender is scheduled or it is draining
        self._batch = threading.local()  # per publishing thread: batch depth, something queued

    def __len__(self) -> int:
        return len(self._items)

    def put(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        """Queue one message (never blocks); the oldest queued one is dropped and counted when full."""
        batching = getattr(self._batch, "depth", 0) > 0
        with self._lock:
            if len(self._items) >= self._capacity:
                self._items.popleft()
                self._on_drop()
            self._items.append((subject, body, headers))
            if batching:
                self._batch.queued = True
                return
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self._wake()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Puts of this thread inside the block wake the sender once, at the end (blocks may nest)."""
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
                    self._wake()

    def first(self) -> Message | None:
        """The oldest message, left queued until :meth:`pop_if_first`; None when empty, and from then on
        the next put wakes the sender again (while it drains, publishers only append)."""
        with self._lock:
            if not self._items:
                self._wake_pending = False
                return None
            return self._items[0]

    def pop_if_first(self, item: Message) -> None:
        """Remove ``item`` once sent, unless a full outbox dropped it meanwhile."""
        with self._lock:
            if self._items and self._items[0] is item:
                self._items.popleft()
