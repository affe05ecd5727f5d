"""Alerts operators can trust: start-up grace, starvation awareness, flap detection, sustained host load.

Plain logic with a fake clock (no ROS): a tree built from YAML, ticked by hand, fed by hand.
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from robot_platform.health.errors import HealthConfigError
from robot_platform.health.flapping import FlapChange, FlapDetector
from robot_platform.health.metrics import HealthMetrics
from robot_platform.health.monitor import HealthMonitor
from robot_platform.health.starvation import LoadGuard
from robot_platform.health.tree_builder import build_tree, load_config_text

TICK = 0.2

BASE = """\
defaults: {{debounce_s: 0.0, clear_s: 1.0, startup_grace_s: {grace}, flap_changes: {flap}, flap_window_s: 20}}
topics:
  scan: sensor_msgs/msg/LaserScan
checks:
  - {{name: scan_silent, kind: topic_silence, group: sensors, topic: scan, timeout_s: 1.0}}
  - {{name: scan_rate, kind: topic_rate, group: sensors, topic: scan, min_rate_hz: 3.0, window_s: 2.0}}
  - {{name: nodes, kind: nodes_missing, group: system, expected: [robot_sim], debounce_s: 1.0}}
{extra}"""


class Rig:
    """A monitor on a fake clock; ``pressure`` is what the (fake) PSI sampler reads."""

    def __init__(self, grace: float = 10.0, flap: int = 0, extra: str = "") -> None:
        self.t = 0.0
        self.pressure: float | None = 0.0
        text = BASE.format(grace=grace, flap=flap, extra=extra)
        tree = build_tree(
            load_config_text(text, "t.yaml"), clock=lambda: self.t, pressure=lambda: self.pressure, sampler=self.host
        )
        self.tree = tree
        self.monitor = HealthMonitor(tree, "r1", clock=lambda: self.t, wall_clock=lambda: 1e9 + self.t)
        self.scan = tree.hub.topics["scan"]
        self.metrics = HealthMetrics("r1")
        self.alerts: list = []
        self.cpu = 10.0

    def host(self, resource: str, path: str) -> float | None:
        return self.cpu

    def run(self, seconds: float, scan_hz: float = 10.0, nodes: tuple[str, ...] = ("/robot_sim",), dt: float = TICK):
        """Advance ``seconds`` in ticks of ``dt``, publishing scan at ``scan_hz`` (0: silent)."""
        end = self.t + seconds
        next_scan = self.t
        while self.t < end - 1e-9:
            self.t = round(self.t + dt, 6)
            while scan_hz > 0 and next_scan <= self.t:
                self.scan.on_message(NS(), self.t)
                next_scan += 1.0 / scan_hz
            self.tree.hub.graph.set(nodes, self.t)
            result = self.monitor.tick()
            self.metrics.observe_tick(self.monitor, result, self.t)
            self.alerts += result.alerts
        return self

    def raised(self, code: str | None = None) -> list:
        return [a for a in self.alerts if a.active and (code is None or a.code == code)]

    def metric(self, name: str, **labels: str) -> float:
        for family in text_string_to_metric_families(generate_latest(self.metrics.registry).decode()):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        raise KeyError(name)


# ---- 1. start-up grace ----------------------------------------------------------------------------------


def test_sources_that_start_late_raise_nothing_within_the_grace() -> None:
    rig = Rig(grace=10.0).run(8.0, scan_hz=0, nodes=())  # drivers not up yet: nothing, no node
    assert rig.alerts == []
    rig.run(30.0)  # they come up within the grace
    assert rig.alerts == []


def test_a_topic_that_never_arrives_raises_once_after_the_grace() -> None:
    rig = Rig(grace=10.0).run(9.8, scan_hz=0)
    assert rig.alerts == []
    rig.run(60.0, scan_hz=0)
    assert [a.code for a in rig.alerts] == ["TOPIC_SILENT.scan"], "exactly one alert: silence, not rate too"
    assert "never received" in rig.alerts[0].message


def test_a_topic_that_was_up_and_stops_raises_at_its_timeout_even_within_the_grace() -> None:
    rig = Rig(grace=30.0).run(3.0)
    rig.run(1.6, scan_hz=0)
    assert [a.code for a in rig.raised()] == ["TOPIC_SILENT.scan"]


def test_a_node_that_was_up_and_went_away_raises_within_the_grace() -> None:
    rig = Rig(grace=30.0).run(3.0).run(2.0, nodes=())
    assert [a.code for a in rig.raised()] == ["NODES_MISSING"]


def test_rate_is_judged_once_its_window_is_full_after_the_first_message() -> None:
    rig = Rig(grace=0.0).run(1.0, scan_hz=0).run(1.5, scan_hz=10)  # first message at ~1 s, window 2 s
    assert rig.raised("TOPIC_RATE_LOW.scan") == []
    rig.run(5.0, scan_hz=1)
    assert len(rig.raised("TOPIC_RATE_LOW.scan")) == 1


# ---- 3. starvation ---------------------------------------------------------------------------------------


def test_a_stalled_monitor_raises_no_silence_and_one_host_overloaded() -> None:
    rig = Rig(extra="  - {name: overload, kind: host_overload, group: host, hold_s: 5, clear_s: 5}\n").run(35.0)
    # The monitor does not run for 6 s (SIGSTOP, starved): no tick, no callback; then it resumes and
    # the queued messages are read only after the first tick.
    rig.t += 6.0
    rig.run(TICK, scan_hz=0)
    rig.run(30.0)
    assert [a.code for a in rig.raised()] == ["HOST_OVERLOADED"]
    assert "starved for 6.2s" in rig.raised()[0].message
    assert [(a.code, a.active) for a in rig.alerts][-1] == ("HOST_OVERLOADED", False), "cleared afterwards"
    assert rig.metric("robot_health_starvation_gaps_total", robot="r1") == 1.0


def test_a_real_silence_after_a_stall_still_raises_after_the_settle_time() -> None:
    rig = Rig().run(35.0)
    rig.t += 6.0
    rig.run(4.0, scan_hz=0)  # the sensor really stopped too
    assert [a.code for a in rig.raised()] == ["TOPIC_SILENT.scan"]


def test_saturated_host_holds_topic_verdicts_and_raises_host_overloaded_once() -> None:
    rig = Rig(extra="  - {name: overload, kind: host_overload, group: host, hold_s: 5, clear_s: 5}\n").run(35.0)
    rig.pressure = 95.0
    rig.run(4.0)
    rig.run(20.0, scan_hz=2.0)  # drivers starved too: late, slow messages
    rig.pressure = 40.0  # still above the clear threshold (30): no flapping of the overload alert
    rig.run(5.0, scan_hz=2.0)
    rig.pressure = 5.0
    rig.run(30.0)
    assert [(a.code, a.active) for a in rig.alerts] == [("HOST_OVERLOADED", True), ("HOST_OVERLOADED", False)]
    assert rig.metric("robot_health_cpu_pressure_percent", robot="r1") == 5.0


def test_load_guard_gap_and_untrusted_spans() -> None:
    guard = LoadGuard(max_tick_gap_s=1.0, settle_s=1.0)
    for t in (0.0, 0.2, 0.4):
        assert guard.on_tick(t) is None
    gap = guard.on_tick(3.4)
    assert gap is not None and gap.length == pytest.approx(3.0)
    assert "starved for 3.0s" in guard.untrusted(3.6, span_s=1.0)
    assert guard.untrusted(5.5, span_s=1.0) == ""  # span [3.5, 5.5] - settle 1 s: after the gap
    assert guard.untrusted(5.5, span_s=2.5) != ""


def test_the_guard_samples_pressure_with_hysteresis() -> None:
    readings = iter([70.0, 50.0, 20.0])
    guard = LoadGuard(
        pressure_max_pct=60.0, pressure_clear_pct=30.0, pressure_period_s=1.0, pressure=lambda: next(readings)
    )
    guard.on_tick(0.0)
    assert guard.saturated
    guard.on_tick(1.0)
    assert guard.saturated, "50 % is above the clear threshold"
    guard.on_tick(2.0)
    assert not guard.saturated


# ---- 2. flapping -----------------------------------------------------------------------------------------


def test_a_flapping_check_becomes_one_flapping_alert_until_it_settles() -> None:
    rig = Rig(grace=0.0, flap=4).run(3.0)
    for _ in range(6):  # 2.6 s silent (raises at 1 s), 2 s back (clears after clear_s 1 s)
        rig.run(2.6, scan_hz=0).run(2.0)
    codes = [(a.code, a.active) for a in rig.alerts]
    # Two raise/clear cycles (4 changes) make it flapping; after that its own alert is held, however long.
    assert codes == [
        ("TOPIC_SILENT.scan", True),
        ("TOPIC_SILENT.scan", False),
        ("TOPIC_SILENT.scan", True),
        ("TOPIC_SILENT.scan", False),
        ("FLAPPING.TOPIC_SILENT.scan", True),
    ], codes
    assert "4 times in 20s" in rig.alerts[-1].message
    assert rig.metric("robot_health_check_flapping", robot="r1", check="scan_silent") == 1.0
    assert rig.metric("robot_health_flapping_total", robot="r1", check="scan_silent") == 1.0
    rig.run(25.0)  # settles: the window empties
    assert [(a.code, a.active) for a in rig.alerts][-1] == ("FLAPPING.TOPIC_SILENT.scan", False)
    assert len([a for a in rig.alerts if a.code.startswith("FLAPPING") and a.active]) == 1
    assert rig.metric("robot_health_check_flapping", robot="r1", check="scan_silent") == 0.0
    rig.run(5.0, scan_hz=0)  # after settling, a new fault is an ordinary alert again
    assert rig.raised()[-1].code == "TOPIC_SILENT.scan"


def test_flapping_alert_can_be_acknowledged_and_is_cleared_after_a_restart() -> None:
    rig = Rig(grace=0.0, flap=4).run(3.0)
    for _ in range(3):
        rig.run(2.6, scan_hz=0).run(2.0)
    flap = next(a for a in rig.alerts if a.code.startswith("FLAPPING"))
    acked = rig.monitor.acknowledge(flap.alert_id, "dora")
    assert acked.acknowledged_by == "dora" and acked.code == flap.code and acked.active
    saved = rig.monitor.active_alerts()
    assert any(s.alert_id == flap.alert_id for s in saved)
    fresh = Rig(grace=0.0, flap=4)
    fresh.monitor.restore(saved, grace_s=5.0)
    fresh.run(TICK)
    cleared = [a for a in fresh.alerts if a.alert_id == flap.alert_id]
    assert [a.active for a in cleared] == [False] and "not carried over a restart" in cleared[0].message


def test_flap_detector_thresholds() -> None:
    det = FlapDetector(changes=6, window_s=10.0)
    assert det.low == 2
    changes = [det.update(t, faulted=bool(i % 2)) for i, t in enumerate(range(7))]
    assert changes.count(FlapChange.STARTED) == 1 and det.flapping
    assert det.update(12.0, faulted=False) is FlapChange.NONE  # 4 changes still in the window
    assert det.update(14.5, faulted=False) is FlapChange.STOPPED
    with pytest.raises(ValueError):
        FlapDetector(changes=1, window_s=10.0)


def test_flap_changes_of_one_is_refused_naming_the_key() -> None:
    text = (
        BASE.format(grace=0, flap=0, extra="")
        + "  - {name: x, kind: topic_silence, topic: scan, timeout_s: 1, flap_changes: 1}\n"
    )
    with pytest.raises(HealthConfigError, match=r"checks\[3\].flap_changes"):
        build_tree(load_config_text(text, "t.yaml"), clock=lambda: 0.0)


# ---- host CPU: a sustained window ------------------------------------------------------------------------


def test_host_cpu_needs_a_sustained_mean_not_a_spike() -> None:
    extra = (
        "  - {name: cpu, kind: host_resources, group: host, resource: cpu, max: 90, clear_below: 80, window_s: 60}\n"
    )
    rig = Rig(extra=extra).run(70.0)
    rig.cpu = 100.0
    rig.run(30.0)  # half a window at 100 %, mean ~55 %
    assert rig.raised("HOST_CPU_HIGH") == []
    rig.cpu = 70.0  # a busy demo: never raised however long
    rig.run(120.0)
    assert rig.raised("HOST_CPU_HIGH") == []
    rig.cpu = 100.0
    rig.run(70.0)
    assert len(rig.raised("HOST_CPU_HIGH")) == 1


def test_flapping_that_starts_on_a_raise_publishes_only_the_flapping_alert() -> None:
    rig = Rig(grace=0.0, flap=3).run(3.0)
    rig.run(2.6, scan_hz=0).run(2.0).run(2.6, scan_hz=0)
    codes = [(a.code, a.active) for a in rig.alerts]
    assert codes == [
        ("TOPIC_SILENT.scan", True),
        ("TOPIC_SILENT.scan", False),
        ("FLAPPING.TOPIC_SILENT.scan", True),
    ], "the third change (a raise) is folded: only the FLAPPING alert goes out"
    assert [a.code for a in rig.monitor.active_alerts()] == ["FLAPPING.TOPIC_SILENT.scan"]


def test_flapping_that_starts_on_a_clear_says_the_clear_was_folded() -> None:
    rig = Rig(grace=0.0, flap=4).run(3.0)
    for _ in range(2):
        rig.run(2.6, scan_hz=0).run(2.0)
    assert rig.alerts[-2].message.startswith("folded into FLAPPING.TOPIC_SILENT.scan: cleared:")
    assert rig.alerts[-1].code == "FLAPPING.TOPIC_SILENT.scan"


def test_every_state_of_an_alert_carries_its_raise_time_even_after_a_restart() -> None:
    rig = Rig(grace=0.0).run(3.0).run(2.0, scan_hz=0)
    (raised,) = rig.raised()
    assert raised.values["raised_at"] == f"{raised.stamp:.3f}"
    acked = rig.monitor.acknowledge(raised.alert_id, "alice")
    assert acked.values["raised_at"] == raised.values["raised_at"] and acked.stamp > raised.stamp
    later = Rig(grace=0.0)
    later.t = 500.0  # another process, much later
    later.monitor.restore(rig.monitor.active_alerts(), grace_s=5.0)
    later.run(3.0, scan_hz=0)
    confirmed = [a for a in later.alerts if a.alert_id == raised.alert_id]
    assert confirmed and confirmed[0].active and confirmed[0].values["raised_at"] == raised.values["raised_at"]
    later.run(3.0)
    cleared = [a for a in later.alerts if a.alert_id == raised.alert_id and not a.active]
    assert cleared[0].values["raised_at"] == raised.values["raised_at"]


def _notices(rig: Rig, seconds: float = TICK) -> list:
    out = []
    end = rig.t + seconds
    while rig.t < end - 1e-9:
        rig.t = round(rig.t + TICK, 6)
        rig.scan.on_message(NS(), rig.t)
        rig.tree.hub.graph.set(("/robot_sim",), rig.t)
        out += rig.monitor.tick().notices
    return out


def test_silences_are_announced_with_who_and_until_and_end_when_lifted_or_expired() -> None:
    rig = Rig(grace=0.0).run(1.0)
    rig.monitor.silence("scan_silent", 60.0, "bob")
    (start,) = _notices(rig)
    assert (start.code, start.active, start.severity) == ("SILENCED.TOPIC_SILENT.scan", True, 0)
    assert start.values["by"] == "bob" and float(start.values["until"]) == pytest.approx(start.stamp + 60, abs=0.5)
    assert "silenced by bob for 60s" in start.message
    rig.monitor.silence("scan_silent", 0.0, "carol")
    (end,) = _notices(rig)
    assert (end.alert_id, end.active) == (start.alert_id, False) and "lifted by carol" in end.message
    rig.monitor.silence("scan_silent", 2.0, "dave")
    notices = _notices(rig, 3.0)
    assert [(n.active, n.values["by"]) for n in notices] == [(True, "dave"), (False, "dave")]
    assert "expired" in notices[1].message
    # A silence restored after a restart ends with the id its first process announced.
    rig.monitor.silence("scan_silent", 5.0, "erin")
    (erin,) = _notices(rig)
    later = Rig(grace=0.0)
    later.t = rig.t
    later.monitor.restore_silences(rig.monitor.running_silences())
    ended = _notices(later, 6.0)
    assert [(n.alert_id, n.active) for n in ended] == [(erin.alert_id, False)]


def test_a_dead_sensor_on_a_saturated_host_is_raised_once_its_silence_is_long_enough() -> None:
    rig = Rig(extra="  - {name: overload, kind: host_overload, group: host, hold_s: 5, clear_s: 5}\n").run(35.0)
    rig.pressure = 95.0
    rig.run(4.0)  # saturated for good (a shared host), messages in time: nothing to say
    rig.run(2.5, scan_hz=0)  # silent 2.5 s: could be starvation, held
    assert rig.alerts == []
    rig.run(1.0, scan_hz=0)  # 3.5 s > 3 x the 1 s timeout: a dead sensor, saturated host or not
    assert [a.code for a in rig.raised()] == ["TOPIC_SILENT.scan"], "the real fault only, no HOST_OVERLOADED"


def test_a_held_silence_that_recovers_is_one_host_overloaded() -> None:
    rig = Rig(extra="  - {name: overload, kind: host_overload, group: host, hold_s: 5, clear_s: 5}\n").run(35.0)
    rig.pressure = 95.0
    rig.run(4.0)
    rig.run(2.0, scan_hz=0)  # the driver starved for 2 s (a real 2 s silence would raise without load)
    rig.run(1.0)
    assert [(a.code, a.active) for a in rig.alerts] == [("HOST_OVERLOADED", True)]
    assert "scan_silent would have raised" in rig.alerts[0].message
    rig.pressure = 5.0
    rig.run(20.0)
    assert [(a.code, a.active) for a in rig.alerts] == [("HOST_OVERLOADED", True), ("HOST_OVERLOADED", False)]


def test_a_saturated_host_whose_messages_arrive_in_time_raises_nothing() -> None:
    # Several robots on one busy machine (a demo): PSI high, yet every robot's data arrives in time.
    rig = Rig(extra="  - {name: overload, kind: host_overload, group: host, hold_s: 5, clear_s: 5}\n").run(35.0)
    rig.pressure = 95.0
    rig.run(60.0)
    assert rig.alerts == []
    assert rig.metric("robot_health_cpu_pressure_percent", robot="r1") == 95.0
