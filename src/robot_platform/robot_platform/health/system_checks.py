"""System check kinds: expected ROS nodes, external links (NATS), host resources.

Same contract as :mod:`checks` (read caches, never block, feed the fault state machine); these read the
graph cache, a link status, or the host through :class:`HostSampler` (psutil), sampled at their own
period so a 10 Hz tree does not read /proc ten times a second.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from robot_platform.health.checks import HealthCheck, Observation, fmt_num
from robot_platform.health.sources import GraphCache, LinkStatus
from robot_platform.health.starvation import LoadGuard


class NodesMissingCheck(HealthCheck):
    """Fault when any of ``expected`` (fully qualified node names) is absent from the ROS graph."""

    kind = "nodes_missing"

    def configure(self, *, graph: GraphCache, expected: list[str]) -> None:
        self.graph = graph
        self.expected = sorted(n if n.startswith("/") else "/" + n for n in expected)
        self._seen: set[str] = set()

    def observe(self, now: float) -> Observation:
        names, stamp = self.graph.get()
        if stamp is None:
            return Observation(False, "graph not read yet")
        self._seen.update(n for n in self.expected if n in names)
        missing = [n for n in self.expected if n not in names]
        if self.in_startup_grace(now):  # a node not up yet is starting, unless it was up and went away
            missing = [n for n in missing if n in self._seen]
        return Observation(
            bool(missing),
            f"missing nodes: {', '.join(missing)}" if missing else "all expected nodes present",
            {"missing": ",".join(missing), "expected": ",".join(self.expected)},
        )


class LinkCheck(HealthCheck):
    """Fault while an external link (the NATS connection) is down, fed by its client's callbacks."""

    kind = "nats_link"

    def configure(self, *, link: LinkStatus) -> None:
        self.link = link

    def observe(self, now: float) -> Observation:
        up, changed, detail = self.link.get()
        for_s = None if changed is None else now - changed
        if not up and changed is None and self.in_startup_grace(now):
            return Observation(False, f"{self.link.name} link: connecting (start-up grace)", {"link": self.link.name})
        return Observation(
            not up,
            f"{self.link.name} link {'up' if up else 'down'}: {detail}",
            {"link": self.link.name, "up": str(up).lower(), "for_s": fmt_num(for_s)},
        )


class HostSampler:
    """Reads host resources with psutil; one instance per monitor (psutil's CPU delta state)."""

    def __init__(self) -> None:
        import psutil  # local import: only hosts running resource checks need it

        self._psutil = psutil
        psutil.cpu_percent(interval=None)  # prime the delta; the first call always returns 0.0

    def read(self, resource: str, path: str = "/") -> float | None:
        """Percent used (cpu, memory, disk) or highest temperature in deg C; None if not available."""
        ps = self._psutil
        if resource == "cpu":
            return float(ps.cpu_percent(interval=None))
        if resource == "memory":
            return float(ps.virtual_memory().percent)
        if resource == "disk":
            return float(ps.disk_usage(path).percent)
        if resource == "temperature":
            read_temps = getattr(ps, "sensors_temperatures", None)
            temps = read_temps() if read_temps else {}
            readings = [t.current for entries in temps.values() for t in entries if t.current is not None]
            return max(readings) if readings else None
        raise ValueError(f"unknown resource {resource!r}")


HOST_RESOURCES = ("cpu", "memory", "disk", "temperature")


class HostResourceCheck(HealthCheck):
    """Fault when a host resource exceeds ``max``; clears below ``clear_below``. Sampled every
    ``sample_period_s`` (not every tick) to keep the monitor's own load low."""

    kind = "host_resources"

    def configure(
        self,
        *,
        resource: str,
        max: float,
        clear_below: float | None = None,
        path: str = "/",
        sample_period_s: float = 2.0,
        window_s: float = 0.0,
        sampler: Callable[[str, str], float | None],
    ) -> None:
        self.resource, self.max, self.path = resource, max, path
        self.clear_below = max if clear_below is None else min(clear_below, max)
        self.sample_period_s = sample_period_s
        self.window_s = window_s
        self.sampler = sampler
        self._value: float | None = None
        self._sampled_at: float | None = None
        # (time, value) samples of the window; bounded by window / period (+1), drop-oldest.
        self._samples: deque[tuple[float, float]] = deque(maxlen=int(window_s / sample_period_s) + 2)
        self._first_sample: float | None = None

    def observe(self, now: float) -> Observation:
        if self._sampled_at is None or now - self._sampled_at >= self.sample_period_s:
            self._value, self._sampled_at = self.sampler(self.resource, self.path), now
            if self._value is not None:
                self._samples.append((now, self._value))
                if self._first_sample is None:
                    self._first_sample = now
        unit = " C" if self.resource == "temperature" else "%"
        values = {"resource": self.resource, "value": fmt_num(self._value), "max": f"{self.max:g}"}
        if self._value is None:
            return Observation(False, f"{self.resource}: not available on this host", values)
        value, what = self._value, f"{self.resource} {self._value:.1f}{unit}"
        if self.window_s > 0:  # sustained load: the mean over the window, judged once the window is full
            recent = [v for t, v in self._samples if t > now - self.window_s]
            value = sum(recent) / len(recent) if recent else self._value
            values["mean"] = f"{value:.1f}"
            what = f"{self.resource} {value:.1f}{unit} mean over {self.window_s:g}s (now {self._value:.1f}{unit})"
            if self._first_sample is None or now - self._first_sample < self.window_s:
                return Observation(False, f"{what}: window not full yet", values)
        faulty = value >= self.clear_below if self.latched else value > self.max
        return Observation(faulty, f"{what} (max {self.max:g}{unit})", values)


class HostOverloadCheck(HealthCheck):
    """One HOST_OVERLOADED alert while the monitor's own verdicts cannot be trusted (see :mod:`starvation`).

    Faulted while the monitor was starved (a tick gap over ``max_tick_gap_s``) within the last ``hold_s``,
    or a topic check held a fault verdict within it because of such a gap or of the host's CPU pressure at
    or above ``pressure_max_pct``: this alert replaces a burst of false TOPIC_SILENT / TOPIC_RATE_LOW
    alerts and says why. A saturated host whose messages still arrive in time raises nothing.
    Its parameters configure the shared :class:`LoadGuard`; without this check the guard still watches tick
    gaps but does not sample the host's pressure. Not raised during the start-up grace (a boot is busy).
    ``witness_gap_s`` sets the fast path of a silence on a saturated host (:class:`LoadGuard`).
    """

    kind = "host_overload"

    def configure(
        self,
        *,
        guard: LoadGuard,
        max_tick_gap_s: float,
        pressure_max_pct: float,
        pressure_clear_pct: float,
        pressure_period_s: float,
        settle_s: float,
        hold_s: float,
        witness_gap_s: float,
        pressure: Callable[[], float | None],
    ) -> None:
        self.guard, self.hold_s = guard, hold_s
        guard.configure(
            max_tick_gap_s=max_tick_gap_s,
            pressure_max_pct=pressure_max_pct,
            pressure_clear_pct=pressure_clear_pct,
            pressure_period_s=pressure_period_s,
            settle_s=settle_s,
            witness_gap_s=witness_gap_s,
        )
        guard.pressure_sampler = pressure

    def observe(self, now: float) -> Observation:
        why = self.guard.overloaded(now, self.hold_s)
        values = {
            "cpu_pressure_pct": fmt_num(self.guard.pressure_pct),
            "worst_tick_gap_s": f"{self.guard.worst_gap(now, self.hold_s):.2f}",
            "starvation_gaps": str(self.guard.gaps_total),
        }
        if why and self.in_startup_grace(now):
            return Observation(False, f"{why} (start-up grace)", values)
        message = f"{why}: new topic silence/rate faults are not trusted" if why else "monitor on time, nothing held"
        return Observation(bool(why), message, values)
