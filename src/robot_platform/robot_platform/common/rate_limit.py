"""The token bucket every rate limit of the platform uses (camera frames and bytes, app log lines,
console messages per WebSocket client).

Tokens refill at ``rate`` per second up to ``capacity``; the bucket starts full, so a quiet source may
burst. Two ways to spend:

- :meth:`TokenBucket.take` spends ``amount`` only if that many tokens are there (a log line, a client
  message: it goes or it does not);
- :meth:`TokenBucket.charge` spends after the fact and may take the bucket into debt, repaid by the
  refill (a JPEG's size is only known after encoding: the frame is admitted while the bucket is not in
  debt, then its real size is charged). :meth:`TokenBucket.wait_time` says when it is out of debt.

``rate <= 0`` means unlimited: every take succeeds, nothing is charged. Time is passed in (monotonic
seconds), so the logic is tested without clocks or sleeps. Not thread-safe: each owner holds its
bucket under its own lock or in one thread.
"""

from __future__ import annotations


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` saved up; ``rate <= 0`` means unlimited."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._tokens = self.capacity
        self._t = now

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def level(self, now: float) -> float:
        """Tokens held at ``now`` (negative while in debt); a clock going backwards refills nothing."""
        if self.unlimited:
            return self.capacity
        if now > self._t:
            self._tokens = min(self.capacity, self._tokens + (now - self._t) * self.rate)
            self._t = now
        return self._tokens

    def wait_time(self, now: float, threshold: float) -> float:
        """Seconds until the bucket holds ``threshold`` tokens (0 if it does now)."""
        missing = threshold - self.level(now)
        return 0.0 if self.unlimited or missing <= 0 else missing / self.rate

    def take(self, now: float, amount: float = 1.0) -> bool:
        """Spend ``amount`` tokens if the bucket holds them; False (nothing spent) otherwise."""
        if self.unlimited:
            return True
        if self.level(now) < amount:
            return False
        self._tokens -= amount
        return True

    def charge(self, amount: float, now: float) -> None:
        """Take ``amount`` tokens whatever the level; it may go negative (debt repaid by the refill)."""
        if not self.unlimited:
            self.level(now)
            self._tokens -= amount
