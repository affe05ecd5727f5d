"""Capped exponential backoff with jitter, so a fleet does not reconnect in lock-step after an outage."""

from __future__ import annotations

import random
from collections.abc import Callable

RECONNECT_WAIT_MIN_S = 0.1
RECONNECT_WAIT_MAX_S = 10.0


class Backoff:
    """Delays grow ``min_s * 2**n`` up to ``max_s``; each delay is drawn in [delay/2, delay] ("equal jitter")."""

    def __init__(
        self,
        min_s: float = RECONNECT_WAIT_MIN_S,
        max_s: float = RECONNECT_WAIT_MAX_S,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError("need 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self._rand = rand
        self.attempts = 0

    def next_delay(self) -> float:
        """Delay before the next attempt (seconds); increments the attempt count."""
        ceiling = min(self.max_s, self.min_s * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        return ceiling / 2 + ceiling / 2 * self._rand()

    def reset(self) -> None:
        """Call after a success: the next failure starts from ``min_s`` again."""
        self.attempts = 0
