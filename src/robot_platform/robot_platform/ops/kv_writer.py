"""Writes of the registry's records to its JetStream KV bucket, off the presence path.

Why: a KV put is a JetStream publish that waits for the hub's ack. fleet_registry used to await it inside
the ``robots.*.presence`` callback, and nats-py runs one subscription's callbacks one after another, so
the registry folded announcements no faster than one per ack round trip. With 100 robots announcing
every 5 s on a busy hub (acks of tens to hundreds of ms) the presence messages queued behind the writes,
``last_seen`` fell behind and the offline sweep declared silent robots that were announcing all along
(bench/fleet_scale.py, 100 robots). Now the registry applies an announcement in memory at once and hands
the record to :class:`CoalescingWriter`: the latest record per key is written, up to ``max_inflight``
puts at a time; a record superseded before its turn is never written (its successor is).

Semantics kept: a failed put is counted and logged by the caller's ``on_error`` and not retried (the
robot's next announcement writes it again), as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

MAX_INFLIGHT_PUTS = 16  # puts awaiting their ack at once (bounded: a slow hub is not flooded)

PutFn = Callable[[str, bytes], Awaitable[Any]]
ErrorFn = Callable[[str, BaseException], None]


class CoalescingWriter:
    """Latest value per key, written in the background with bounded concurrency. Single event loop."""

    def __init__(self, put: PutFn, on_error: ErrorFn, max_inflight: int = MAX_INFLIGHT_PUTS) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        self._put = put
        self._on_error = on_error
        self._max_inflight = max_inflight
        self._pending: dict[str, bytes] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.written = 0
        self.superseded = 0  # values replaced by a newer one before they were written
        self.failed = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, key: str, value: bytes) -> None:
        """Queue ``value`` for ``key`` (replacing a queued older one); returns at once."""
        if key in self._pending:
            self.superseded += 1
        self._pending[key] = value
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        """Write until cancelled (cancel after :meth:`flush` to keep what is queued)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = []
                for key in list(self._pending)[: self._max_inflight]:
                    batch.append((key, self._pending.pop(key)))
                await asyncio.gather(*(self._write(key, value) for key, value in batch))
            self._idle.set()

    async def flush(self, timeout: float) -> bool:
        """Wait until everything queued was written (or failed); False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def _write(self, key: str, value: bytes) -> None:
        try:
            await self._put(key, value)
            self.written += 1
        except Exception as exc:  # any failure is the caller's to count and log; the writer keeps going
            self.failed += 1
            self._on_error(key, exc)
