"""Flap detection: a check that keeps raising and clearing becomes one FLAPPING alert until it settles.

Why: debounce and clear delays stop a signal that oscillates faster than they are; a fault that comes
and goes every few seconds, slower than them, still raises and clears an alert each time - dozens per
hour for one intermittent cable. Like Nagios/Icinga flap detection, the monitor counts a check's state
changes (raised <-> cleared) over a sliding window; at ``changes`` or more the check is *flapping*: its
own alert is folded into one ``FLAPPING.<code>`` alert and no raise/clear of it is sent while it lasts.
It stops (the FLAPPING alert clears, normal alerting resumes) once the window holds at most
``changes // 3`` changes: a high and a low threshold, as Nagios uses, so the detector does not flap itself.

Plain Python, time injected (``now``), unit-tested with a fake clock.
"""

from __future__ import annotations

import enum
from collections import deque

FLAP_CODE_PREFIX = "FLAPPING."
FLAP_CHECK_SUFFIX = "#flapping"  # key of a FLAPPING alert in the saved active alerts (alert_state)


class FlapChange(enum.Enum):
    """What :meth:`FlapDetector.update` decided this tick."""

    NONE = 0
    STARTED = 1
    STOPPED = 2


class FlapDetector:
    """Sliding-window count of one check's raise/clear changes.

    Args:
        changes: changes within ``window_s`` that make the check flapping (>= 2).
        window_s: the sliding window (seconds).
    """

    def __init__(self, changes: int, window_s: float) -> None:
        if changes < 2:
            raise ValueError(f"flap changes must be >= 2, got {changes}")
        if window_s <= 0:
            raise ValueError(f"flap window must be > 0 s, got {window_s:g}")
        self.changes = changes
        self.low = max(1, changes // 3)
        self.window_s = window_s
        self._stamps: deque[float] = deque(maxlen=changes * 2)  # bounded: counts above 2x are not needed
        self._faulted: bool | None = None
        self.flapping = False
        self.starts = 0

    def count(self, now: float) -> int:
        """State changes within the window ending at ``now``."""
        return sum(1 for t in self._stamps if t > now - self.window_s)

    def update(self, now: float, faulted: bool) -> FlapChange:
        """Feed the check's raised/cleared state this tick; returns whether flapping started or stopped."""
        if self._faulted is not None and faulted != self._faulted:
            self._stamps.append(now)
        self._faulted = faulted
        n = self.count(now)
        if not self.flapping and n >= self.changes:
            self.flapping = True
            self.starts += 1
            return FlapChange.STARTED
        if self.flapping and n <= self.low:
            self.flapping = False
            return FlapChange.STOPPED
        return FlapChange.NONE
