"""Can the monitor trust what it sees? Its own tick lateness and the host's CPU pressure.

Why: a silence check says "no message for ``timeout_s``" by the monitor's clock. When the monitor itself
did not run (its process was descheduled on a saturated host, stopped, or stalled), the messages the
drivers sent were not read, and on resuming every topic looks silent. On a host saturated by other work
the drivers' own timers run late too, and the rate and silence checks report the host, not the sensors.
Those verdicts are noise: :class:`LoadGuard` records the periods in which the monitor's view was not
trustworthy, the topic checks hold their current state over them (:meth:`LoadGuard.untrusted`), and one
``HOST_OVERLOADED`` alert (check kind ``host_overload``) tells the operator why.

The trade-off on a saturated host (a robot computer running flat out is normal, not a fault): holding
every new silence until it lasted ``SATURATION_STRETCH`` timeouts keeps starvation quiet but makes a real
dead sensor wait 3-4 s. So a silence is trusted at once, saturated or not, when the evidence says the
silence is real: the monitor's own ticks came on time through the whole silence *and* another topic of
the same publishing node (its *witness*, e.g. ``imu`` for a silent ``scan`` of the simulator) kept
arriving with no pause over ``witness_gap_s``. Starvation delays a process as a whole - its timers, its
DDS writes, the monitor's callbacks - so it cannot silence one topic of a node while another of the same
node arrives in time. Without that evidence (a driver that publishes one topic only, every topic late,
the monitor late) the cautious path stays: held until 3 timeouts.

Two signals, both cheap:
    tick gap       the monitor calls :meth:`LoadGuard.on_tick` at the start of every tick; a gap longer than
                   ``max_tick_gap_s`` since the previous tick means the monitor was starved for that long.
    CPU pressure   Linux PSI ``/proc/pressure/cpu`` "some avg10": the share of the last 10 s in which some
                   runnable task waited for a CPU. It sees saturation before the monitor is late, and
                   unlike a CPU-percent reading it does not count a host that is merely busy (a 70 %
                   demo) as saturated. Hosts without PSI fall back to the 1-min load average per core.

Plain Python with an injected sampler, so the logic is unit-tested with a fake clock.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PSI_CPU = Path("/proc/pressure/cpu")
GAPS_KEPT = 32  # recent starvation gaps remembered (drop-oldest): only the last few seconds matter
# Defaults of the guard (the host_overload check's parameters override them; see check_kinds.py).
MAX_TICK_GAP_S = 1.0
PRESSURE_MAX_PCT = 60.0
PRESSURE_CLEAR_PCT = 30.0
PRESSURE_PERIOD_S = 2.0
SETTLE_S = 1.0  # after a gap, time for the queued messages to be read before a verdict counts again
SATURATION_STRETCH = 3.0  # on a saturated host a silence counts once it lasted this many timeouts
WITNESS_GAP_S = 0.5  # the monitor and a witness topic paused no longer than this: the silence is real
LATE_KEPT = 64  # recent late ticks remembered (drop-oldest); only the last seconds matter


def read_cpu_pressure() -> float | None:
    """CPU pressure in percent (PSI "some avg10"), else 1-min load per core x 100, else None."""
    try:
        for line in PSI_CPU.read_text(encoding="ascii").splitlines():
            if line.startswith("some "):
                fields = dict(f.split("=", 1) for f in line.split()[1:])
                return float(fields["avg10"])
    except (OSError, ValueError, KeyError):
        pass
    try:
        return 100.0 * os.getloadavg()[0] / max(1, os.cpu_count() or 1)
    except OSError:
        return None


@dataclass(frozen=True)
class Gap:
    """The monitor did not tick from ``start`` to ``end`` (monotonic seconds)."""

    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Trust:
    """A verdict's standing: ``why`` it is held ("" = trusted), and the ``witnesses`` that made a silence on
    a saturated host trusted at once (empty when it did not need them or had none)."""

    why: str = ""
    witnesses: tuple[str, ...] = ()


class LoadGuard:
    """Remembers when the monitor was starved or the host saturated; answers "can I trust a verdict?".

    Args:
        max_tick_gap_s: a tick later than this after the previous one marks a starvation gap.
        pressure_max_pct: CPU pressure at or above which the host counts as saturated.
        pressure_clear_pct: saturation ends below this (value hysteresis, so it does not flap).
        pressure_period_s: how often the pressure is sampled (not every tick).
        settle_s: after a gap or saturation, extra time before verdicts count again.
        witness_gap_s: a silence on a saturated host is trusted at once when, through all of it, the
            monitor never went this long without a tick and a witness topic never this long without a
            message (see the module docstring); 0 turns the fast path off. Must exceed the tick period.
        pressure: the sampler (percent or None); ``None`` disables the pressure signal (tests, non-Linux).
    """

    def __init__(
        self,
        *,
        max_tick_gap_s: float = MAX_TICK_GAP_S,
        pressure_max_pct: float = PRESSURE_MAX_PCT,
        pressure_clear_pct: float = PRESSURE_CLEAR_PCT,
        pressure_period_s: float = PRESSURE_PERIOD_S,
        settle_s: float = SETTLE_S,
        witness_gap_s: float = WITNESS_GAP_S,
        pressure: Callable[[], float | None] | None = None,
    ) -> None:
        self.pressure_sampler = pressure
        self.configure(
            max_tick_gap_s=max_tick_gap_s,
            pressure_max_pct=pressure_max_pct,
            pressure_clear_pct=pressure_clear_pct,
            pressure_period_s=pressure_period_s,
            settle_s=settle_s,
            witness_gap_s=witness_gap_s,
        )
        self.gaps: deque[Gap] = deque(maxlen=GAPS_KEPT)
        self.late: deque[Gap] = deque(maxlen=LATE_KEPT)  # tick intervals over witness_gap_s
        self.gaps_total = 0
        self.pressure_pct: float | None = None
        self.saturated = False
        self._saturated_last: float | None = None  # last time the host was seen saturated
        self._held_last: float | None = None  # last time a check held a fault verdict because of it
        self.held_why = ""
        self._last_tick: float | None = None
        self._sampled_at: float | None = None

    def configure(
        self,
        *,
        max_tick_gap_s: float,
        pressure_max_pct: float,
        pressure_clear_pct: float,
        pressure_period_s: float,
        settle_s: float,
        witness_gap_s: float = WITNESS_GAP_S,
    ) -> None:
        """Set the thresholds (the tree builder applies the host_overload check's parameters here)."""
        self.max_tick_gap_s = max_tick_gap_s
        self.pressure_max_pct = pressure_max_pct
        self.pressure_clear_pct = min(pressure_clear_pct, pressure_max_pct)
        self.pressure_period_s = pressure_period_s
        self.settle_s = settle_s
        self.witness_gap_s = witness_gap_s

    def on_tick(self, now: float) -> Gap | None:
        """Call at the start of every tick, before any check runs; returns the gap this tick ended, if any."""
        gap = None
        if self._last_tick is not None and now - self._last_tick > self.max_tick_gap_s:
            gap = Gap(self._last_tick, now)
            self.gaps.append(gap)
            self.gaps_total += 1
        if self._last_tick is not None and 0 < self.witness_gap_s < now - self._last_tick:
            self.late.append(Gap(self._last_tick, now))
        self._last_tick = now
        if self.pressure_sampler is not None and (
            self._sampled_at is None or now - self._sampled_at >= self.pressure_period_s
        ):
            self._sampled_at = now
            self.pressure_pct = self.pressure_sampler()
            limit = self.pressure_clear_pct if self.saturated else self.pressure_max_pct
            self.saturated = self.pressure_pct is not None and self.pressure_pct >= limit
        if self.saturated:
            self._saturated_last = now
        return gap

    def untrusted(
        self,
        now: float,
        span_s: float,
        evidence_s: float | None = None,
        witnesses: Callable[[float, float], list[str]] | None = None,
    ) -> str:
        """Why a verdict about ``[now - span_s, now]`` cannot be trusted, or "" if it can (see :meth:`judge`)."""
        return self.judge(now, span_s, evidence_s, witnesses).why

    def judge(
        self,
        now: float,
        span_s: float,
        evidence_s: float | None = None,
        witnesses: Callable[[float, float], list[str]] | None = None,
    ) -> Trust:
        """Can a fault verdict about ``[now - span_s, now]`` be trusted?

        A verdict is untrusted when a starvation gap or a saturated period overlaps that span, widened
        by ``settle_s`` (the messages queued during a gap are read only after it ends). Saturation can
        last for hours on a shared host; holding every verdict that long would hide a dead sensor, so a
        silence verdict (``evidence_s``: how long the silence has really lasted) is trusted even then

        - at once, when :meth:`witnessed` says the silence is real (the monitor on time through it and
          ``witnesses(since, now)`` names another topic of the same node that kept arriving), or
        - once it lasted ``SATURATION_STRETCH`` x ``span_s``: late messages are late by a fraction of a
          second (measured: bench/RESULTS.md), a sensor that stopped stays silent.

        A starvation gap of the monitor itself always holds (until ``settle_s`` after it): over a gap the
        monitor read nothing, witnesses included.
        """
        start = now - span_s - self.settle_s
        recent = [g for g in self.gaps if g.end >= start]
        saturated = self._saturated_last is not None and self._saturated_last >= start
        seen: tuple[str, ...] = ()
        if saturated and (evidence_s is None or evidence_s < SATURATION_STRETCH * span_s):
            if evidence_s is not None and witnesses is not None and not recent:
                seen = tuple(self.witnessed(now, evidence_s, witnesses))
            if not seen:
                return Trust(f"host CPU saturated (pressure {self.pressure_pct or 0.0:.0f}%)")
        if recent:
            worst = max(recent, key=lambda g: g.length)
            return Trust(f"health monitor starved for {worst.length:.1f}s")
        return Trust("", seen)

    def on_time(self, since: float, now: float) -> bool:
        """The monitor ticked with no interval over ``witness_gap_s`` in ``[since, now]`` (and up to now)."""
        if self._last_tick is None or now - self._last_tick > self.witness_gap_s:
            return False
        return not any(g.end > since for g in self.late)

    def witnessed(self, now: float, silence_s: float, witnesses: Callable[[float, float], list[str]]) -> list[str]:
        """The witness topics proving a ``silence_s`` long silence real, or [] (fast path off or no proof).

        Proof needs both: the monitor itself on time through the silence (:meth:`on_time`; a monitor that
        did not run would see every topic silent) and at least one witness topic that kept arriving
        (``witnesses(since, now)``, from the same publishing node; :meth:`DataHub.witnesses`).
        """
        if self.witness_gap_s <= 0:
            return []
        since = now - silence_s
        if not self.on_time(since, now):
            return []
        return witnesses(since, now)

    def note_held(self, now: float, why: str) -> None:
        """A check held a fault verdict because of :meth:`untrusted` and its source then recovered: the load
        would have made a false alert (HOST_OVERLOADED says so)."""
        self._held_last, self.held_why = now, why

    def overloaded(self, now: float, hold_s: float) -> str:
        """Why the monitor's view counts as overloaded now, or "".

        A starvation gap of the monitor itself within ``hold_s``, or a held fault verdict that ended in a
        recovery (a false alert the load would have caused) within ``hold_s``.
        A saturated host whose messages still arrive in time is *not* an overload of the monitor: on a
        machine shared by several robots (a demo) it would be one host's load shown as every robot's fault.
        """
        if any(g.end >= now - hold_s for g in self.gaps):
            return f"health monitor starved for {self.worst_gap(now, hold_s):.1f}s"
        if self._held_last is not None and self._held_last >= now - hold_s:
            return self.held_why
        return ""

    def worst_gap(self, now: float, within_s: float) -> float:
        """Longest starvation gap that ended within ``within_s`` (0 if none)."""
        return max((g.length for g in self.gaps if g.end >= now - within_s), default=0.0)
