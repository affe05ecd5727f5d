"""Restart identity: a restored alert keeps its id when the fault persists and is cleared when it is gone."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from robot_platform.health import outputs
from robot_platform.health.alert_state import AlertStateStore, SavedAlert
from robot_platform.health.fault_state import (
    SEVERITY_CRITICAL,
    SEVERITY_ERROR,
    FaultSpec,
    FaultState,
    FaultStateMachine,
)
from robot_platform.health.metrics import HealthMetrics
from robot_platform.health.monitor import AlertRecord, HealthMonitor
from robot_platform.health.tree_builder import build_tree, load_config_text

# ---- state machine ---------------------------------------------------------------------------------------


def machine(debounce: float = 1.0, clear: float = 2.0) -> FaultStateMachine:
    ids = (f"new{i}" for i in itertools.count(1))
    return FaultStateMachine(FaultSpec("TOPIC_SILENT.scan", SEVERITY_ERROR, debounce, clear), new_id=lambda: next(ids))


def test_restored_fault_confirmed_after_its_debounce_keeps_the_id() -> None:
    m = machine(debounce=1.0)
    m.restore("old", 0.0, 5.0, severity=SEVERITY_ERROR, message="was silent")
    assert m.state is FaultState.ACTIVE and m.restoring and m.alert_id == "old"
    assert m.update(0.5, False) == [] and m.update(1.0, True) == [] and m.update(1.5, False) == []  # reset
    assert m.update(2.0, True) == [] and m.update(2.9, True) == []
    (confirm,) = m.update(3.0, True, severity=SEVERITY_CRITICAL)
    assert confirm.restored and confirm.alert_id == "old" and confirm.escalates
    assert confirm.severity == SEVERITY_CRITICAL and not m.restoring and m.raise_count == 0
    assert [e.state for e in m.update(4.0, False)] == [FaultState.CLEARING]  # normal machine again
    (clear,) = m.update(6.0, False)
    assert clear.clears and clear.alert_id == "old" and not clear.restored and m.alert_id == ""


def test_restored_fault_not_seen_through_the_grace_window_clears_with_the_old_id() -> None:
    m = machine(debounce=0.0, clear=10.0)
    m.restore("old", 100.0, 3.0, severity=SEVERITY_ERROR)
    assert all(m.update(100.0 + t, False) == [] for t in (0.5, 1.0, 2.9))
    (clear,) = m.update(103.0, False)
    assert clear.clears and clear.restored and clear.alert_id == "old" and m.state is FaultState.OK
    (_pending, raised) = m.update(104.0, True)
    assert raised.raises and raised.alert_id == "new1", "a later fault is a new alert"


def test_condition_holding_when_the_window_ends_waits_for_its_debounce() -> None:
    m = machine(debounce=2.0)
    m.restore("old", 0.0, 1.0, severity=SEVERITY_ERROR)
    assert m.update(0.5, True) == [] and m.update(1.5, True) == [], "holding: not cleared at the window's end"
    (confirm,) = m.update(2.5, True)
    assert confirm.restored and confirm.alert_id == "old"
    m2 = machine(debounce=2.0)
    m2.restore("old", 0.0, 1.0, severity=SEVERITY_ERROR)
    assert m2.update(0.5, True) == []
    (clear,) = m2.update(1.5, False)
    assert clear.clears and clear.restored


def test_restore_rejects_a_running_machine_and_bad_values() -> None:
    m = machine(debounce=0.0)
    m.update(0.0, True)
    with pytest.raises(ValueError):
        m.restore("old", 1.0, 1.0, severity=SEVERITY_ERROR)
    with pytest.raises(ValueError):
        machine().restore("", 0.0, 1.0, severity=SEVERITY_ERROR)
    with pytest.raises(ValueError):
        machine().restore("old", 0.0, 1.0, severity=9)


# ---- monitor ---------------------------------------------------------------------------------------------

CONFIG = """\
topics:
  scan: sensor_msgs/msg/LaserScan
checks:
  - {name: scan_silent, kind: topic_silence, group: sensors, topic: scan, timeout_s: 1.0, clear_s: 0.5}
  - {name: battery, kind: battery, group: power, low: 0.2, critical: 0.1, hysteresis: 0.02}
"""
GRACE_S = 3.0


class Rig:
    """One process lifetime: a monitor over a fresh tree (check start-up grace included)."""

    def __init__(self, t0: float = 0.0, config: str = CONFIG) -> None:
        self.t = t0
        tree = build_tree(load_config_text(config, "t.yaml"), clock=self.clock)
        self.monitor = HealthMonitor(tree, "r7", clock=self.clock, wall_clock=lambda: 1_700_000_000.0 + self.t)
        self.scan = tree.hub.topics["scan"]
        self.battery = tree.hub.topics["battery_state"]
        self.metrics = HealthMetrics("r7")

    def clock(self) -> float:
        return self.t

    def step(self, scan: bool = True, battery: float = 0.8, dt: float = 0.2) -> list[AlertRecord]:
        self.t += dt
        if scan:
            self.scan.on_message(NS(), self.t)
        self.battery.on_message(NS(percentage=battery, voltage=24.0), self.t)
        result = self.monitor.tick()
        self.metrics.observe_tick(self.monitor, result, self.t)
        return result.alerts

    def run(self, seconds: float, **kw: object) -> list[AlertRecord]:
        return [a for _ in range(round(seconds / 0.2)) for a in self.step(**kw)]  # type: ignore[arg-type]


def metric(metrics: HealthMetrics, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise KeyError(name)


def msg_id(a: AlertRecord) -> str:
    """The Nats-Msg-Id health/node.py gives an alert state."""
    return f"{a.alert_id}.{'raise' if a.active else 'clear'}.{a.severity}.{int(a.acknowledged)}"


def first_life() -> tuple[Rig, AlertRecord]:
    """Scan falls silent, the alert is raised and acknowledged by alice; returns its last published state."""
    rig = Rig()
    rig.step()
    (raised,) = rig.run(2.0, scan=False)
    acked = rig.monitor.acknowledge(raised.alert_id, "alice")
    return rig, acked


def test_fault_still_there_after_restart_reuses_id_and_acknowledgement(tmp_path: Path) -> None:
    old, acked = first_life()
    store = AlertStateStore(tmp_path, "r7")
    store.save(old.monitor.active_alerts())
    store.close()

    new = Rig(t0=500.0)  # another process: another monotonic origin
    taken, orphans = new.monitor.restore(AlertStateStore(tmp_path, "r7").load(), GRACE_S)
    assert (taken, orphans) == (["scan_silent"], [])
    # in the grace window the alert counts as active: diagnostics, metrics, markers, snapshot
    status = outputs.diagnostics(new.monitor)[0]
    assert status.level == outputs.DIAG_ERROR and ("alert_id", acked.alert_id) in status.values
    assert any(k == "restored_until_s" for k, _ in status.values)
    assert outputs.tree_snapshot(new.monitor)["active"] == ["TOPIC_SILENT.scan"]
    assert new.step(scan=False) == []  # topic silence needs its timeout after a start: nothing yet
    assert metric(new.metrics, "robot_health_fault_active", check="scan_silent") == 1.0
    assert metric(new.metrics, "robot_health_check_state", check="scan_silent") == FaultState.ACTIVE.value
    alerts = new.run(2.0, scan=False)
    assert [(a.alert_id, a.active, a.acknowledged_by) for a in alerts] == [(acked.alert_id, True, "alice")]
    assert msg_id(alerts[0]) == msg_id(acked), "same Nats-Msg-Id as the last state sent: JetStream drops it"
    assert new.run(2.0, scan=False) == [], "announced once"
    cleared = new.run(2.0)
    assert [(a.alert_id, a.active) for a in cleared] == [(acked.alert_id, False)]
    assert cleared[0].message.startswith("cleared: ") and new.monitor.active_alerts() == []


def test_fault_gone_after_restart_is_cleared_when_the_grace_window_ends() -> None:
    old, acked = first_life()
    new = Rig(t0=50.0)
    new.monitor.restore(old.monitor.active_alerts(), GRACE_S)
    assert new.run(GRACE_S - 0.4) == [], "nothing before the window ends"
    assert [a.alert_id for a in new.monitor.active_alerts()] == [acked.alert_id], "kept while in the window"
    cleared = new.run(0.6)
    assert [(a.alert_id, a.active, a.acknowledged_by) for a in cleared] == [(acked.alert_id, False, "alice")]
    assert "cleared after a restart of health_monitor_tree" in cleared[0].message
    assert "grace window" in cleared[0].message and "(was: scan: last message" in cleared[0].message
    assert new.monitor.active_alerts() == [] and outputs.diagnostics(new.monitor)[0].level == outputs.DIAG_OK
    assert new.run(2.0) == []


def test_alert_of_a_check_no_longer_in_the_tree_or_with_another_code_is_cleared_at_once() -> None:
    gone = SavedAlert("gps_fix", "G", "GPS_NO_FIX", 2, 1_699_999_000.0, "no fix", "bob", 1_699_999_100.0)
    recoded = SavedAlert("battery", "B", "BATTERY_OLD_CODE", 1, 1_699_999_000.0, "low")
    new = Rig()
    assert new.monitor.restore([gone, recoded], GRACE_S) == ([], ["gps_fix", "battery"])
    assert {a.alert_id for a in new.monitor.active_alerts()} == {"G", "B"}, "kept until the clear is out"
    alerts = new.step()
    assert [(a.alert_id, a.active, a.code) for a in alerts] == [
        ("G", False, "GPS_NO_FIX"),
        ("B", False, "BATTERY_OLD_CODE"),
    ]
    assert alerts[0].source == "health_monitor_tree/gps_fix" and alerts[0].acknowledged_by == "bob"
    assert "no longer in the health tree" in alerts[0].message and "now reports BATTERY_LOW" in alerts[1].message
    assert new.monitor.active_alerts() == [] and new.step() == []


def test_restart_inside_the_grace_window_keeps_the_alert_and_its_acknowledgement() -> None:
    old, acked = first_life()
    second = Rig(t0=10.0)
    second.monitor.restore(old.monitor.active_alerts(), GRACE_S)
    second.step(scan=False)
    saved = second.monitor.active_alerts()  # what the second process saves before it dies
    assert [(a.alert_id, a.acknowledged_by, a.severity) for a in saved] == [(acked.alert_id, "alice", 2)]
    third = Rig(t0=20.0)
    third.monitor.restore(saved, GRACE_S)
    assert [(a.alert_id, a.active) for a in third.run(2.0, scan=False)] == [(acked.alert_id, True)]
    assert third.monitor.acknowledge(acked.alert_id, "carol").acknowledged_by == "carol"


def test_escalation_after_restart_keeps_the_id() -> None:
    rig = Rig()
    (low,) = rig.run(0.2, battery=0.15)
    new = Rig(t0=30.0)
    new.monitor.restore(rig.monitor.active_alerts(), GRACE_S)
    (crit,) = new.run(0.2, battery=0.05)
    assert (crit.alert_id, crit.severity, crit.active) == (low.alert_id, SEVERITY_CRITICAL, True)
    assert msg_id(crit) != msg_id(low), "a new state: a new Nats-Msg-Id"


def test_a_running_silence_survives_a_restart_and_still_ends_on_time(tmp_path: Path) -> None:
    old = Rig()
    old.step()
    old.monitor.silence("scan_silent", 60.0, "otto")  # maintenance: an hour of scan work, say
    assert old.run(2.0, scan=False) == [], "silenced: no alert"
    store = AlertStateStore(tmp_path, "r7")
    assert store.save(old.monitor.active_alerts(), old.monitor.running_silences())
    assert not store.save(old.monitor.active_alerts(), old.monitor.running_silences()), "unchanged: not rewritten"
    store.close()

    new = Rig(t0=old.t + 10.0)  # restarted 10 s later (wall clock moved on by as much)
    loaded = AlertStateStore(tmp_path, "r7")
    loaded.load()
    assert [(s.check, s.by) for s in loaded.silences] == [("scan_silent", "otto")]
    assert new.monitor.restore_silences(loaded.silences) == ["scan_silent"]
    assert new.run(30.0, scan=False) == [], "the silence is still running after the restart"
    raised = new.run(25.0, scan=False)  # it ends 60 s after it was set: about 48 s into this life
    assert [(a.code, a.active) for a in raised] == [("TOPIC_SILENT.scan", True)]
    assert new.monitor.running_silences() == []


def test_ended_silences_and_unknown_checks_are_not_restored(tmp_path: Path) -> None:
    old = Rig()
    old.monitor.silence("scan_silent", 5.0, "otto")
    store = AlertStateStore(tmp_path, "r7")
    store.save([], old.monitor.running_silences())
    store.close()
    later = Rig(t0=old.t + 10.0)  # the silence ended while the node was down
    loaded = AlertStateStore(tmp_path, "r7")
    loaded.load()
    assert len(loaded.silences) == 1 and later.monitor.restore_silences(loaded.silences) == []  # ended
    from robot_platform.health.alert_state import SavedSilence

    ghost = SavedSilence("no_such_check", 1_700_000_000.0 + later.t + 100.0, "otto", 0.0)
    assert later.monitor.restore_silences([ghost]) == []
