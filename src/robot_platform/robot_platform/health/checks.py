"""Check kinds: py_trees behaviours that turn cached data into fault-state transitions.

Each check is a small :class:`py_trees.behaviour.Behaviour`: ``__init__`` holds its config and the
caches it reads (see :mod:`sources`), ``update`` never blocks - it reads the caches, decides whether its
condition holds now (:meth:`HealthCheck.observe`) and feeds that to its :class:`FaultStateMachine`.
Status mapping: OK -> SUCCESS, PENDING -> RUNNING, ACTIVE/CLEARING -> FAILURE, so the tree's root
shows at a glance whether anything is wrong.

Value hysteresis (a clear threshold beyond the raise threshold) is applied here, time hysteresis
(debounce, clear delay) in the state machine.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import py_trees
from py_trees.common import Status

from robot_platform.health.fault_state import (
    SEVERITY_CRITICAL,
    FaultEvent,
    FaultSpec,
    FaultState,
    FaultStateMachine,
)
from robot_platform.health.flapping import FlapDetector
from robot_platform.health.sources import Sample, TopicFeed
from robot_platform.health.starvation import LoadGuard

Clock = Callable[[], float]
EventSink = Callable[["HealthCheck", list[FaultEvent]], None]

STATUS_FOR_STATE = {
    FaultState.OK: Status.SUCCESS,
    FaultState.PENDING: Status.RUNNING,
    FaultState.ACTIVE: Status.FAILURE,
    FaultState.CLEARING: Status.FAILURE,
}


@dataclass(frozen=True)
class Observation:
    """What a check saw this tick: whether its condition holds, why, and the numbers behind it."""

    faulty: bool
    message: str
    values: Mapping[str, str] = field(default_factory=dict)
    severity: int | None = None


def fmt_num(x: float | None, unit: str = "") -> str:
    return "n/a" if x is None else f"{x:.3g}{unit}"


class HealthCheck(py_trees.behaviour.Behaviour):
    """Base of every check kind.

    Args:
        name: unique check name (tree node name, metric label).
        spec: fault code, severity, debounce and clear timing.
        clock: the monitor's clock (seconds, monotonic); never the wall clock directly.
        group: the tree branch the check hangs under (``sensors``, ``motion``...).
        sink: receives the transitions of each tick (the monitor collects them).
        startup_grace_s: how long after the first tick "never seen" does not count as a fault (the
            source had no fair chance to start yet); what a source reports once it is up counts at once.
        flap: the check's flap detector (the monitor folds a flapping check into one FLAPPING alert).
        **params: the kind's own parameters, handed to :meth:`configure`.

    Why a ``configure`` hook instead of an ``__init__`` per kind: every kind took the same four
    arguments and passed them on; now a kind only states (keyword-only, typed) what it adds.
    """

    kind = "abstract"

    def __init__(
        self,
        name: str,
        spec: FaultSpec,
        clock: Clock,
        group: str = "",
        sink: EventSink | None = None,
        startup_grace_s: float = 0.0,
        flap: FlapDetector | None = None,
        **params: Any,
    ) -> None:
        super().__init__(name)
        self.startup_grace_s = startup_grace_s
        self.flap = flap
        self.held_why = ""  # why the current fault verdict is held (see held_if_untrusted); "" if not
        self.spec = spec
        self.fault = FaultStateMachine(spec)
        self.clock = clock
        self.group = group
        self.sink = sink
        self.last: Observation | None = None
        self._started: float | None = None
        self.configure(**params)

    def configure(self, *args: Any, **params: Any) -> None:
        """Store the kind's parameters (subclasses declare them keyword-only); the base takes none."""
        if args or params:
            raise TypeError(f"{type(self).__name__} takes no parameters {sorted(params)}")

    def since_start(self, now: float) -> float:
        """Seconds since the first tick of this check (start-up grace for 'nothing arrived yet')."""
        if self._started is None:
            self._started = now
        return now - self._started

    @property
    def grace_s(self) -> float:
        """The start-up grace in force: none once the fault is raised, nor for an alert taken over after a
        restart (it was raised on the same evidence before; confirming it late would turn a slow start into
        clear-then-raise)."""
        return 0.0 if self.fault.restoring or self.fault.state.faulted else self.startup_grace_s

    def in_startup_grace(self, now: float) -> bool:
        """True while a source that was never seen still gets its fair chance to start."""
        return self.since_start(now) < self.grace_s

    @property
    def latched(self) -> bool:
        """The fault is raised: checks use their clear thresholds instead of the raise thresholds."""
        return self.fault.state.faulted

    @abc.abstractmethod
    def observe(self, now: float) -> Observation:
        """What the check sees now: faulted or not, a message and values (each kind implements it)."""

    def update(self) -> Status:
        now = self.clock()
        self.since_start(now)
        obs = self.observe(now)
        self.last = obs
        events = self.fault.update(now, obs.faulty, severity=obs.severity, message=obs.message, values=obs.values)
        if events and self.sink is not None:
            self.sink(self, events)
        self.feedback_message = f"{self.fault.state.name}: {obs.message}"
        return STATUS_FOR_STATE[self.fault.state]


class TopicSilenceCheck(HealthCheck):
    """Fault when no message arrived on ``feed`` for longer than ``timeout_s``.

    A topic never received counts as silent only after ``max(timeout_s, startup_grace_s)`` from the
    first tick (its driver had a fair chance to start); from then on it raises once and stays raised.
    A silence seen while the monitor was starved or the host saturated (``guard``) is not trusted: the
    check holds its state until a verdict over a trustworthy span is possible (HOST_OVERLOADED says why).
    """

    kind = "topic_silence"

    def configure(self, *, feed: TopicFeed, timeout_s: float, guard: LoadGuard | None = None) -> None:
        self.feed = feed
        self.timeout_s = timeout_s
        self.guard = guard

    def observe(self, now: float) -> Observation:
        age = self.feed.age(now)
        values = {"topic": self.feed.topic, "age_s": fmt_num(age), "timeout_s": f"{self.timeout_s:g}"}
        if age is None:
            waited = self.since_start(now)
            limit = max(self.timeout_s, self.grace_s)
            faulty = waited > limit
            what = f"never received in {waited:.1f}s (start-up grace {limit:g}s)"
        else:
            faulty = age > self.timeout_s
            what = f"last message {age:.2f}s ago"
        message = f"{self.feed.topic}: {what} (timeout {self.timeout_s:g}s)"
        silent_for = age if age is not None else self.since_start(now)
        return held_if_untrusted(self, Observation(faulty, message, values), now, self.timeout_s, silent_for)


def held_if_untrusted(
    check: HealthCheck, obs: Observation, now: float, span_s: float, evidence_s: float | None = None
) -> Observation:
    """Hold back a *new* fault verdict over ``span_s`` s while the monitor was starved (LoadGuard.untrusted;
    ``evidence_s``: how long a silence lasted). Raised faults and recoveries are never held. A held verdict
    that ends in a recovery was the load's doing: the guard is told (HOST_OVERLOADED says so)."""
    guard: LoadGuard | None = getattr(check, "guard", None)
    if guard is None:
        return obs
    if not obs.faulty or check.latched:
        if check.held_why and not obs.faulty:
            guard.note_held(now, f"{check.held_why}: {check.name} would have raised")
        check.held_why = ""
        return obs
    why = guard.untrusted(now, span_s, evidence_s)
    check.held_why = why
    if not why:
        return obs
    return Observation(False, f"{obs.message}; not trusted: {why}", {**obs.values, "held": why})


class TopicRateCheck(HealthCheck):
    """Fault when ``feed`` arrives slower than ``min_rate_hz`` over ``window_s``; clears at ``clear_rate_hz``.

    Judged once the window is full: ``window_s`` after the first message (or the start-up grace if none
    came). A topic silent beyond ``silence_timeout_s`` (a silence check on it, set by the tree builder)
    is that check's alert, not a second one here."""

    kind = "topic_rate"

    def configure(
        self,
        *,
        feed: TopicFeed,
        min_rate_hz: float,
        window_s: float = 2.0,
        clear_rate_hz: float | None = None,
        guard: LoadGuard | None = None,
        silence_timeout_s: float | None = None,
    ) -> None:
        self.feed = feed
        self.min_rate_hz = min_rate_hz
        self.window_s = window_s
        self.clear_rate_hz = min_rate_hz if clear_rate_hz is None else max(clear_rate_hz, min_rate_hz)
        self.guard = guard
        self.silence_timeout_s = silence_timeout_s
        self._silent_seen: float | None = None  # last tick the topic was silent (see observe)

    def observe(self, now: float) -> Observation:
        rate = self.feed.rate(now, self.window_s)
        values = {"topic": self.feed.topic, "rate_hz": f"{rate:.3g}", "min_rate_hz": f"{self.min_rate_hz:g}"}
        first, age = self.feed.first_arrival(), self.feed.age(now)
        waited = self.since_start(now)
        if first is None and waited < max(self.window_s, self.grace_s):
            return Observation(False, f"{self.feed.topic}: waiting for the first message", values)
        if first is not None and now - first < self.window_s:
            return Observation(False, f"{self.feed.topic}: measuring rate", values)
        if self.silence_timeout_s is not None and (age is None or age > self.silence_timeout_s):
            self._silent_seen = now
        if self._silent_seen is not None and now - self._silent_seen < self.window_s:
            # Silent, or back from a silence with a window not yet refilled: the silence check's story.
            return Observation(self.latched, f"{self.feed.topic}: silent (reported by its silence check)", values)
        limit = self.clear_rate_hz if self.latched else self.min_rate_hz
        obs = Observation(rate < limit, f"{self.feed.topic}: {rate:.3g} Hz (minimum {self.min_rate_hz:g} Hz)", values)
        return held_if_untrusted(self, obs, now, self.window_s)


class SpeedDropCheck(HealthCheck):
    """Fault when the odometry speed stays below ``ratio`` x the commanded speed (duration = debounce).

    Only judged while a command of at least ``min_command`` m/s is fresh (younger than
    ``command_timeout_s``) and odometry is fresh; a silent odometry topic is a silence check's job.
    """

    kind = "speed_drop"

    def configure(
        self,
        *,
        odom: TopicFeed,
        cmd: TopicFeed,
        ratio: float = 0.5,
        clear_ratio: float | None = None,
        min_command: float = 0.05,
        command_timeout_s: float = 1.0,
        odom_timeout_s: float = 1.0,
    ) -> None:
        self.odom, self.cmd = odom, cmd
        self.ratio = ratio
        self.clear_ratio = ratio if clear_ratio is None else max(clear_ratio, ratio)
        self.min_command = min_command
        self.command_timeout_s = command_timeout_s
        self.odom_timeout_s = odom_timeout_s

    def observe(self, now: float) -> Observation:
        cmd, odom = self.cmd.latest(), self.odom.latest()
        commanded = cmd.value["speed"] if cmd is not None and now - cmd.stamp <= self.command_timeout_s else 0.0
        actual = odom.value["speed"] if odom is not None and now - odom.stamp <= self.odom_timeout_s else None
        ratio = self.clear_ratio if self.latched else self.ratio
        values = {"commanded": f"{commanded:.3f}", "actual": fmt_num(actual), "ratio": f"{self.ratio:g}"}
        if commanded < self.min_command or actual is None:
            return Observation(False, "no motion command" if actual is not None else "no odometry", values)
        threshold = ratio * commanded
        values["threshold"] = f"{threshold:.3f}"
        return Observation(
            actual < threshold,
            f"speed {actual:.2f} m/s for command {commanded:.2f} m/s (threshold {threshold:.2f})",
            values,
        )


class BatteryCheck(HealthCheck):
    """Fault below ``low`` (spec severity) escalating to CRITICAL below ``critical``; clears above
    ``low + hysteresis``. A NaN percentage (driver does not know) is not a fault."""

    kind = "battery"

    def configure(self, *, feed: TopicFeed, low: float = 0.2, critical: float = 0.1, hysteresis: float = 0.03) -> None:
        self.feed, self.low, self.critical, self.hysteresis = feed, low, critical, hysteresis

    def observe(self, now: float) -> Observation:
        sample = self.feed.latest()
        pct = float("nan") if sample is None else sample.value["percentage"]
        values = {"percentage": f"{pct:.3f}", "low": f"{self.low:g}", "critical": f"{self.critical:g}"}
        if math.isnan(pct):
            return Observation(False, "battery level unknown", values)
        low = self.low + (self.hysteresis if self.latched else 0.0)
        is_critical_now = self.latched and self.fault.severity == SEVERITY_CRITICAL
        critical = self.critical + (self.hysteresis if is_critical_now else 0.0)
        severity = SEVERITY_CRITICAL if pct < critical else None
        word = "critical" if severity is not None else "low"
        return Observation(pct < low, f"battery {word}: {pct * 100:.0f}%", values, severity)


class _AnomalyCheck(HealthCheck):
    """Shared logic of value anomaly checks: non-finite values, out of range, frozen (unchanged).

    Subclasses take their limits in :meth:`configure_limits` and judge a sample in :meth:`problems`."""

    def configure(self, *, feed: TopicFeed, frozen_s: float = 0.0, stale_s: float = 1.0, **limits: float) -> None:
        self.feed, self.frozen_s, self.stale_s = feed, frozen_s, stale_s
        self._last_value: Any = None
        self._last_change: float | None = None
        self.configure_limits(**limits)

    @abc.abstractmethod
    def configure_limits(self, *args: Any, **limits: float) -> None:
        """Take the kind's own limits (the YAML keys besides the shared ones)."""

    @abc.abstractmethod
    def problems(self, sample: Sample) -> list[str]:
        """What is wrong with ``sample`` (empty: nothing)."""

    def observe(self, now: float) -> Observation:
        sample = self.feed.latest()
        if sample is None or now - sample.stamp > self.stale_s:
            return Observation(False, f"{self.feed.topic}: no recent data", {"topic": self.feed.topic})
        if sample.value != self._last_value:
            self._last_value, self._last_change = sample.value, sample.stamp
        problems = self.problems(sample)
        unchanged = sample.stamp - (self._last_change or sample.stamp)
        if self.frozen_s > 0 and unchanged >= self.frozen_s:
            problems.append(f"values frozen for {unchanged:.1f}s")
        msg = "; ".join(problems) if problems else "values plausible"
        return Observation(
            bool(problems),
            f"{self.feed.topic}: {msg}",
            {"topic": self.feed.topic, "frozen_for_s": f"{unchanged:.2f}"},
        )


def _norm(v: Iterable[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def _finite(v: Iterable[float]) -> bool:
    return all(math.isfinite(x) for x in v)


class ImuAnomalyCheck(_AnomalyCheck):
    """IMU anomaly: NaN/inf, angular velocity or acceleration beyond physical limits, or frozen output."""

    kind = "imu_anomaly"

    def configure_limits(self, *, max_angular_velocity: float = 10.0, max_linear_acceleration: float = 50.0) -> None:
        self.max_w, self.max_a = max_angular_velocity, max_linear_acceleration

    def problems(self, sample: Sample) -> list[str]:
        v = sample.value
        out: list[str] = []
        for key in ("orientation", "angular_velocity", "linear_acceleration"):
            if not _finite(v[key]):
                out.append(f"{key} not finite")
        w, a = _norm(v["angular_velocity"]), _norm(v["linear_acceleration"])
        if math.isfinite(w) and w > self.max_w:
            out.append(f"angular velocity {w:.2f} rad/s > {self.max_w:g}")
        if math.isfinite(a) and a > self.max_a:
            out.append(f"acceleration {a:.2f} m/s2 > {self.max_a:g}")
        return out


class LocalizationAnomalyCheck(_AnomalyCheck):
    """Localization anomaly: NaN position, outside the site bounds, or a jump between samples."""

    kind = "localization_anomaly"

    def configure_limits(self, *, max_jump_m: float = 1.0, max_abs_m: float = 1000.0) -> None:
        self.max_jump_m, self.max_abs_m = max_jump_m, max_abs_m
        self._prev: tuple[float, ...] | None = None

    def problems(self, sample: Sample) -> list[str]:
        pos = tuple(sample.value["position"])
        out: list[str] = []
        if not _finite(pos):
            return ["position not finite"]
        if max(abs(x) for x in pos) > self.max_abs_m:
            out.append(f"position {pos} outside +-{self.max_abs_m:g} m")
        if self._prev is not None:
            jump = _norm(a - b for a, b in zip(pos, self._prev, strict=True))
            if jump > self.max_jump_m:
                out.append(f"position jumped {jump:.2f} m > {self.max_jump_m:g}")
        self._prev = pos
        return out
