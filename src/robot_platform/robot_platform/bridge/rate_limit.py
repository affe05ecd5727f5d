"""Per-topic maximum rate with keep-latest: at most one message per interval, the newest one wins.

A message arriving when the interval since the last send has passed goes out at once. Otherwise it is
held; a newer one replaces it (the replaced one is counted in ``dropped``); the held one goes out when
the interval ends (the owner asks :meth:`next_due` and calls :meth:`poll` then). Time is passed in by
the caller (monotonic seconds), so the logic is tested without clocks or sleeps.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class KeepLatestLimiter(Generic[T]):
    """Rate limiter of one topic. ``max_rate_hz <= 0`` means unlimited."""

    def __init__(self, max_rate_hz: float) -> None:
        self.interval = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0
        self._last_sent: float | None = None
        self._pending: T | None = None
        self._has_pending = False
        self.dropped = 0
        self.passed = 0

    def offer(self, item: T, now: float) -> T | None:
        """Return ``item`` if it may go now; else hold it (replacing and counting an older held one)."""
        if self.interval == 0.0 or (
            not self._has_pending and (self._last_sent is None or now - self._last_sent >= self.interval)
        ):
            self._last_sent = now
            self.passed += 1
            return item
        if self._has_pending:
            self.dropped += 1
        self._pending = item
        self._has_pending = True
        return None

    def next_due(self) -> float | None:
        """Monotonic time at which the held message may go, or None if nothing is held."""
        if not self._has_pending or self._last_sent is None:
            return None
        return self._last_sent + self.interval

    def poll(self, now: float) -> T | None:
        """The held message if its time has come (it is then released), else None."""
        due = self.next_due()
        if due is None or now < due:
            return None
        item = self._pending
        self._pending = None
        self._has_pending = False
        self._last_sent = now
        self.passed += 1
        return item
