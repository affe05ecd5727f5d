"""System check kinds: expected ROS nodes, external links (NATS), host resources.

Same contract as :mod:`checks` (read caches, never block, feed the fault state machine); these read the
graph cache, a link status, or the host through :class:`HostSampler` (psutil), sampled at their own
period so a 10 Hz tree does not read /proc ten times a second.
"""

from __future__ import annotations

from collections.abc import Callable

from robot_platform.health.checks import HealthCheck, Observation, fmt_num
from robot_platform.health.sources import GraphCache, LinkStatus


class NodesMissingCheck(HealthCheck):
    """Fault when any of ``expected`` (fully qualified node names) is absent from the ROS graph."""

    kind = "nodes_missing"

    def configure(self, *, graph: GraphCache, expected: list[str]) -> None:
        self.graph = graph
        self.expected = sorted(n if n.startswith("/") else "/" + n for n in expected)

    def observe(self, now: float) -> Observation:
        names, stamp = self.graph.get()
        if stamp is None:
            return Observation(False, "graph not read yet")
        missing = [n for n in self.expected if n not in names]
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
        sampler: Callable[[str, str], float | None],
    ) -> None:
        self.resource, self.max, self.path = resource, max, path
        self.clear_below = max if clear_below is None else min(clear_below, max)
        self.sample_period_s = sample_period_s
        self.sampler = sampler
        self._value: float | None = None
        self._sampled_at: float | None = None

    def observe(self, now: float) -> Observation:
        if self._sampled_at is None or now - self._sampled_at >= self.sample_period_s:
            self._value, self._sampled_at = self.sampler(self.resource, self.path), now
        unit = " C" if self.resource == "temperature" else "%"
        values = {"resource": self.resource, "value": fmt_num(self._value), "max": f"{self.max:g}"}
        if self._value is None:
            return Observation(False, f"{self.resource}: not available on this host", values)
        faulty = self._value >= self.clear_below if self.latched else self._value > self.max
        return Observation(faulty, f"{self.resource} {self._value:.1f}{unit} (max {self.max:g}{unit})", values)
