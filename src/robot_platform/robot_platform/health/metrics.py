"""Prometheus metrics of the health monitor, on a per-instance registry (no global state).

Why per instance: prometheus-client's default REGISTRY is a module-level singleton; two monitors in
one process (tests) would collide, and the process/platform collectors would leak into every test.
Each :class:`HealthMetrics` owns its :class:`CollectorRegistry` and serves it on 127.0.0.1 only.

Exported (all labelled ``robot``):
    robot_health_check_state{check,code,group,kind}   0 OK, 1 PENDING, 2 ACTIVE, 3 CLEARING
    robot_health_check_severity{check,code}           Alert severity of the check's fault (0..3)
    robot_health_check_silenced{check}                1 while silenced
    robot_health_fault_active{check,code}             1 while raised (ACTIVE or CLEARING)
    robot_health_faults_raised_total{check,code}      raises (PENDING -> ACTIVE)
    robot_health_fault_transitions_total{check,to}    every state transition
    robot_health_topic_rate_hz{topic}                 arrivals over the last RATE_WINDOW_S
    robot_health_topic_age_seconds{topic}             since the last message (NaN before the first)
    robot_health_topic_messages{topic}                messages seen since start
    robot_health_alerts_total{sink,result}            alert deliveries (ros/nats/mqtt, ok/dropped/error;
                                                      nats_outbox corrupt/store_error at start;
                                                      alert_state corrupt/dropped at start, store_error)
    robot_health_outbox_pending                       alerts waiting for JetStream's ack (NATS outbox)
    robot_health_outbox_durable                       1 while that outbox is on disk, 0 in memory only
    robot_health_ticks_total, robot_health_tick_duration_seconds (histogram)
    robot_health_check_flapping{check}                1 while the check is folded into a FLAPPING alert
    robot_health_flapping_total{check}                times the check started flapping
    robot_health_starvation_gaps_total                ticks that came later than max_tick_gap_s (monitor starved)
    robot_health_starvation_seconds_total             time the monitor did not tick in those gaps
    robot_health_cpu_pressure_percent                 host CPU pressure (PSI some avg10) as the guard saw it
    robot_health_host_saturated                       1 while the guard counts the host as saturated
    robot_health_verdicts_held_total{check}           new fault verdicts held as untrusted (starved/saturated)
    robot_health_verdicts_witnessed_total{check}      silences trusted at once on a saturated host (witnesses)
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from robot_platform.common.metrics_server import MetricsServer
from robot_platform.health.fault_state import FaultEvent
from robot_platform.health.monitor import HealthMonitor, TickResult

RATE_WINDOW_S = 5.0


class HealthMetrics:
    """Metrics of one monitor. Call :meth:`observe_tick` after every tick (from the tick thread)."""

    def __init__(self, robot_id: str, registry: CollectorRegistry | None = None) -> None:
        self.robot_id = robot_id
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r, rl = self.registry, ["robot"]

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(name, doc, [*rl, *labels], registry=r)

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, [*rl, *labels], registry=r)

        self.check_state = gauge(
            "robot_health_check_state",
            "Fault state of a check (0 OK, 1 PENDING, 2 ACTIVE, 3 CLEARING)",
            "check",
            "code",
            "group",
            "kind",
        )
        self.check_severity = gauge(
            "robot_health_check_severity", "Alert severity of a check's fault (0..3)", "check", "code"
        )
        self.check_silenced = gauge("robot_health_check_silenced", "1 while the check is silenced", "check")
        self.fault_active = gauge("robot_health_fault_active", "1 while the check's fault is raised", "check", "code")
        self.faults_raised = counter("robot_health_faults_raised", "Faults raised (PENDING -> ACTIVE)", "check", "code")
        self.transitions = counter("robot_health_fault_transitions", "Fault state transitions", "check", "to")
        self.topic_rate = gauge("robot_health_topic_rate_hz", f"Message rate over the last {RATE_WINDOW_S:g}s", "topic")
        self.topic_age = gauge("robot_health_topic_age_seconds", "Seconds since the last message", "topic")
        self.topic_messages = gauge("robot_health_topic_messages", "Messages seen on the topic since start", "topic")
        self.alerts = counter("robot_health_alerts", "Alert deliveries per sink and result", "sink", "result")
        self.ticks = counter("robot_health_ticks", "Tree ticks")
        self.outbox_pending = gauge("robot_health_outbox_pending", "Alerts waiting for JetStream's ack")
        self.outbox_durable = gauge("robot_health_outbox_durable", "1 while the alert outbox is on disk")
        self.check_flapping = gauge("robot_health_check_flapping", "1 while the check is flapping", "check")
        self.flapping = counter("robot_health_flapping", "Times a check started flapping", "check")
        self.starvation_gaps = counter("robot_health_starvation_gaps", "Ticks later than max_tick_gap_s")
        self.starvation_seconds = counter("robot_health_starvation_seconds", "Seconds without a tick in those gaps")
        self.cpu_pressure = gauge("robot_health_cpu_pressure_percent", "Host CPU pressure seen by the monitor")
        self.host_saturated = gauge("robot_health_host_saturated", "1 while the host counts as CPU-saturated")
        self.verdicts_held = counter("robot_health_verdicts_held", "Fault verdicts held as untrusted", "check")
        self.verdicts_witnessed = counter(
            "robot_health_verdicts_witnessed", "Silences trusted at once on a saturated host (witnesses)", "check"
        )
        self._verdicts_seen: dict[tuple[str, str], int] = {}  # check's running totals already counted
        for series in (self.starvation_gaps, self.starvation_seconds):  # at 0 from the start, so increase()
            series.labels(robot_id)  # and the alert rules see the first gap too
        self.tick_duration = Histogram(
            "robot_health_tick_duration_seconds",
            "Duration of one tree tick",
            rl,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
            registry=r,
        )
        self._ticks = self.ticks.labels(robot_id)
        self._tick_duration = self.tick_duration.labels(robot_id)
        # Labelled gauges of the tick, looked up once and set only when their value changes: a tree of 15
        # checks refreshes ~80 series 5 times a second, and prometheus-client's labels() lookup and set()
        # under a lock were the health node's largest cost per tick (py-spy/cProfile on the robot agent).
        self._gauges: dict[tuple[Gauge, tuple[str, ...]], list] = {}
        self._server = MetricsServer(self.registry)  # loopback only

    def _set(self, gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
        entry = self._gauges.get((gauge, labels))
        if entry is None:
            entry = self._gauges[(gauge, labels)] = [gauge.labels(self.robot_id, *labels), None]
        if entry[1] != value:  # NaN != NaN: a NaN is set again, cheap and rare
            entry[0].set(value)
            entry[1] = value

    def observe_tick(self, monitor: HealthMonitor, result: TickResult, now: float) -> None:
        """Refresh gauges from the monitor and count this tick's transitions."""
        rid = self.robot_id
        self._ticks.inc()
        self._tick_duration.observe(result.duration_s)
        for check, event in result.events:
            self.count_event(check.name, event)
        for name in result.flap_started:
            self.flapping.labels(rid, name).inc()
        if result.starved_s > 0:
            self.starvation_gaps.labels(rid).inc()
            self.starvation_seconds.labels(rid).inc(result.starved_s)
        pressure = monitor.health.hub.load.pressure_pct
        self._set(self.cpu_pressure, (), math.nan if pressure is None else pressure)
        self._set(self.host_saturated, (), 1 if monitor.health.hub.load.saturated else 0)
        for check in monitor.health.checks:
            name = check.name
            if check.kind in ("topic_silence", "topic_rate"):  # the kinds whose verdicts the guard judges
                self._count_verdicts(name, "held", check.verdicts_held, self.verdicts_held)
            if check.kind == "topic_silence":
                self._count_verdicts(name, "witnessed", check.verdicts_witnessed, self.verdicts_witnessed)
            self._set(self.check_flapping, (name,), 1 if check.flap is not None and check.flap.flapping else 0)
            fault = check.fault
            code = fault.spec.code
            self._set(self.check_state, (name, code, check.group, check.kind), fault.state.value)
            self._set(self.check_severity, (name, code), fault.severity)
            self._set(self.fault_active, (name, code), 1 if fault.state.faulted else 0)
            self._set(self.check_silenced, (name,), 1 if monitor.silenced(name, now) else 0)
        for topic, feed in monitor.health.hub.topics.items():
            age = feed.age(now)
            self._set(self.topic_rate, (topic,), feed.rate(now, RATE_WINDOW_S))
            self._set(self.topic_age, (topic,), math.nan if age is None else age)
            self._set(self.topic_messages, (topic,), feed.count)

    def _count_verdicts(self, check: str, what: str, total: int, counter: Counter) -> None:
        """Advance ``counter`` to a check's running total (the check counts, the metric mirrors it); the
        series exists at 0 from the first tick, so increase() and alert rules see the first episode."""
        seen = self._verdicts_seen.get((check, what))
        if seen is None or total > seen:
            counter.labels(self.robot_id, check).inc(total - (seen or 0))  # inc(0): the series at 0
            self._verdicts_seen[(check, what)] = total

    def count_event(self, check: str, event: FaultEvent) -> None:
        if event.previous is not event.state:
            self.transitions.labels(self.robot_id, check, event.state.name).inc()
        if event.raises:
            self.faults_raised.labels(self.robot_id, check, event.code).inc()

    def observe_outbox(self, pending: int, durable: bool) -> None:
        """Backlog of the NATS alert outbox (grows while the link is down) and whether it survives a restart."""
        self.outbox_pending.labels(self.robot_id).set(pending)
        self.outbox_durable.labels(self.robot_id).set(1 if durable else 0)

    def count_alert(self, sink: str, result: str, n: int = 1) -> None:
        """Count alert deliveries: ``result`` is ok, dropped (queue full) or error."""
        self.alerts.labels(self.robot_id, sink, result).inc(n)

    def serve(self, port: int) -> int:
        """Serve /metrics on 127.0.0.1:``port`` (0 picks a free port); returns the bound port."""
        return self._server.start(port)

    def close(self) -> None:
        """Stop the HTTP server and join its thread."""
        self._server.close()
