"""Value check kinds: what a robot's topics carry, judged against limits with value hysteresis.

Speed against the command, battery level, and anomalies in IMU and localization data (non-finite,
beyond physical limits, frozen, jumping).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable
from typing import Any

from robot_platform.health.checks import HealthCheck, Observation, fmt_num
from robot_platform.health.fault_state import SEVERITY_CRITICAL
from robot_platform.health.sources import Sample, TopicFeed


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
