"""Monitor (alert publication, acknowledge, silence), outputs (diagnostics, markers, snapshot), metrics."""

from __future__ import annotations

import json
import urllib.request
from types import SimpleNamespace as NS

import pytest
from prometheus_client.parser import text_string_to_metric_families

from robot_platform.health import outputs
from robot_platform.health.errors import UnknownCheckError
from robot_platform.health.metrics import HealthMetrics
from robot_platform.health.monitor import HealthMonitor
from robot_platform.health.tree_builder import build_tree, load_config_text

CONFIG = """\
topics:
  scan: sensor_msgs/msg/LaserScan
checks:
  - {name: scan_silent, kind: topic_silence, group: sensors, topic: scan, timeout_s: 1.0, clear_s: 0.5}
  - {name: battery, kind: battery, group: power, low: 0.2, critical: 0.1, hysteresis: 0.02}
"""


class Rig:
    def __init__(self) -> None:
        self.t = 0.0
        tree = build_tree(load_config_text(CONFIG, "t.yaml"), clock=self.clock)
        self.monitor = HealthMonitor(tree, "r7", clock=self.clock, wall_clock=lambda: 1_700_000_000.0 + self.t)
        self.scan = tree.hub.topics["scan"]
        self.battery = tree.hub.topics["battery_state"]
        self.metrics = HealthMetrics("r7")

    def clock(self) -> float:
        return self.t

    def step(self, dt: float = 0.2, scan: bool = True, battery: float = 0.8):
        self.t += dt
        if scan:
            self.scan.on_message(NS(), self.t)
        self.battery.on_message(NS(percentage=battery, voltage=24.0), self.t)
        result = self.monitor.tick()
        self.metrics.observe_tick(self.monitor, result, self.t)
        return result

    def metric(self, name: str, **labels: str) -> float:
        from prometheus_client import generate_latest

        for family in text_string_to_metric_families(generate_latest(self.metrics.registry).decode()):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        raise KeyError(name)


def test_raise_then_clear_share_one_alert_id() -> None:
    rig = Rig()
    assert rig.step().alerts == []
    alerts = [a for _ in range(8) for a in rig.step(scan=False).alerts]
    assert len(alerts) == 1
    raised = alerts[0]
    assert raised.active and raised.code == "TOPIC_SILENT.scan" and raised.severity == 2
    assert raised.robot_id == "r7" and raised.source == "health_monitor_tree/scan_silent" and raised.alert_id
    assert raised.values["topic"] == "scan" and raised.stamp > 1_700_000_000
    alerts = [a for _ in range(5) for a in rig.step().alerts]
    assert [(a.active, a.alert_id) for a in alerts] == [(False, raised.alert_id)]
    assert alerts[0].message.startswith("cleared: ")


def test_severity_escalation_resends_the_same_alert() -> None:
    rig = Rig()
    first = rig.step(battery=0.15).alerts
    assert [(a.code, a.severity, a.active) for a in first] == [("BATTERY_LOW", 1, True)]
    second = rig.step(battery=0.05).alerts
    assert [(a.severity, a.alert_id) for a in second] == [(3, first[0].alert_id)]
    assert rig.step(battery=0.05).alerts == []


def test_acknowledge_is_recorded_and_republished() -> None:
    rig = Rig()
    alert = rig.step(battery=0.15).alerts[0]
    acked = rig.monitor.acknowledge(alert.alert_id, "alice")
    assert acked.acknowledged and acked.acknowledged_by == "alice" and acked.active
    assert rig.step(battery=0.15).alerts == []  # no duplicate re-send from the tick
    assert rig.monitor.audit[-1].user == "alice" and rig.monitor.audit[-1].action == "acknowledge"
    with pytest.raises(UnknownCheckError):
        rig.monitor.acknowledge("no-such-id", "alice")
    with pytest.raises(ValueError):
        rig.monitor.acknowledge(alert.alert_id, "")
    snap = outputs.tree_snapshot(rig.monitor)
    battery = snap["root"]["children"][1]["children"][0]
    assert battery["acknowledged_by"] == "alice"


def test_silence_holds_back_raises_until_it_expires() -> None:
    rig = Rig()
    rig.step()
    rig.monitor.silence("scan_silent", 3.0, "bob")
    assert [a for _ in range(8) for a in rig.step(scan=False).alerts] == []  # 1.6 s: raised but silenced
    assert rig.metric("robot_health_check_silenced", check="scan_silent") == 1.0
    assert rig.metric("robot_health_fault_active", check="scan_silent") == 1.0
    alerts = [a for _ in range(8) for a in rig.step(scan=False).alerts]
    assert [a.active for a in alerts] == [True]  # silence expired, still faulty: raise now
    with pytest.raises(UnknownCheckError):
        rig.monitor.silence("nope", 1.0, "bob")
    with pytest.raises(ValueError):
        rig.monitor.silence("scan_silent", -1.0, "bob")


def test_diagnostics_markers_and_snapshot() -> None:
    rig = Rig()
    rig.step()
    statuses = outputs.diagnostics(rig.monitor)
    assert [s.name for s in statuses] == [
        "health_monitor_tree: sensors/scan_silent",
        "health_monitor_tree: power/battery",
        "health_monitor_tree: summary",
    ]
    assert all(s.level == outputs.DIAG_OK for s in statuses) and statuses[0].hardware_id == "r7"
    assert outputs.markers(rig.monitor) == []
    rig.step(battery=0.05)
    statuses = outputs.diagnostics(rig.monitor)
    assert statuses[1].level == outputs.DIAG_ERROR and ("code", "BATTERY_LOW") in statuses[1].values
    assert statuses[-1].level == outputs.DIAG_ERROR and "BATTERY_LOW" in statuses[-1].message
    (marker,) = outputs.markers(rig.monitor, "base_footprint")
    assert marker.frame_id == "base_footprint" and marker.text.startswith("[CRIT] BATTERY_LOW")
    snap = json.loads(json.dumps(outputs.tree_snapshot(rig.monitor)))  # JSON-able
    assert snap["robot_id"] == "r7" and snap["active"] == ["BATTERY_LOW"]
    assert snap["counts"]["ACTIVE"] == 1 and snap["root"]["status"] == "FAILURE"
    check = snap["root"]["children"][1]["children"][0]
    assert check["state"] == "ACTIVE" and check["kind"] == "battery" and check["severity"] == 3
    raised_at = 1_700_000_000.0 + rig.t  # the raise's wall clock: a page opened later shows the real age
    rig.step(battery=0.05)
    check = outputs.tree_snapshot(rig.monitor)["root"]["children"][1]["children"][0]
    assert check["raised_stamp"] == raised_at
    assert snap["root"]["children"][0]["children"][0]["raised_stamp"] == 0.0  # not raised


def test_metrics_content_and_http_endpoint_on_loopback() -> None:
    rig = Rig()
    rig.step()
    for _ in range(8):
        rig.step(scan=False)
    assert rig.metric("robot_health_check_state", check="scan_silent", code="TOPIC_SILENT.scan") == 2.0
    assert rig.metric("robot_health_faults_raised_total", check="scan_silent") == 1.0
    assert rig.metric("robot_health_topic_age_seconds", topic="scan") == pytest.approx(1.6)
    assert rig.metric("robot_health_topic_messages", topic="battery_state") == 9.0
    assert rig.metric("robot_health_ticks_total", robot="r7") == 9.0
    for _ in range(15):  # the scan is back: gauges follow (they are set only when their value changes)
        rig.step()
    assert rig.metric("robot_health_check_state", check="scan_silent", code="TOPIC_SILENT.scan") == 0.0
    assert rig.metric("robot_health_fault_active", check="scan_silent") == 0.0
    assert rig.metric("robot_health_topic_age_seconds", topic="scan") == pytest.approx(0.0)
    assert rig.metric("robot_health_topic_messages", topic="battery_state") == 24.0
    port = rig.metrics.serve(0)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'robot_health_check_state{check="scan_silent"' in body
        assert "python_gc" not in body  # own registry: nothing from the global default collectors
    finally:
        rig.metrics.close()
    other = HealthMetrics("r8")  # a second instance in the same process does not collide
    assert other.registry is not rig.metrics.registry


def test_operator_requests_validate_untrusted_input() -> None:
    from robot_platform.health.operator_requests import handle_request

    rig = Rig()
    alert = rig.step(battery=0.15).alerts[0]
    for action, payload, fragment in [
        ("ack", {"alert_id": alert.alert_id}, "user"),
        ("ack", {"alert_id": 5, "user": "u"}, "alert_id"),
        ("ack", {"alert_id": "nope", "user": "u"}, "no active alert"),
        ("silence", {"check": "battery", "duration_s": True, "user": "u"}, "duration_s"),
        ("silence", {"check": "battery", "duration_s": 1e9, "user": "u"}, "within"),
        ("silence", {"check": "battery", "duration_s": 5, "user": "x" * 500}, "user"),
        ("reboot", {"user": "u"}, "unknown action"),
    ]:
        result = handle_request(rig.monitor, action, payload)
        assert not result.ok and result.reply["success"] is False and fragment in result.reply["message"], payload
    ok = handle_request(rig.monitor, "ack", {"alert_id": alert.alert_id, "user": "dora"})
    assert ok.ok and ok.alert is not None and ok.alert.acknowledged_by == "dora"
    ok = handle_request(rig.monitor, "silence", {"check": "battery", "duration_s": 30, "user": "dora"})
    assert ok.ok and rig.monitor.silenced("battery")
    assert [r.action for r in rig.monitor.audit] == ["acknowledge", "silence"]


def test_ack_note_silence_reason_and_whole_robot_silence_reach_the_alert_history() -> None:
    """The note and the reason are in Alert.values (fleet.alerts.query shows them); check '*' silences
    every check (maintenance); a bad note is refused without changing anything."""
    from robot_platform.health.operator_requests import handle_request

    rig = Rig()
    alert = rig.step(battery=0.15).alerts[0]
    bad = handle_request(rig.monitor, "ack", {"alert_id": alert.alert_id, "user": "u", "note": "x" * 300})
    assert not bad.ok and "note" in bad.reply["message"] and not rig.monitor.audit
    ok = handle_request(rig.monitor, "ack", {"alert_id": alert.alert_id, "user": "dora", "note": "charger booked"})
    assert ok.ok and ok.alert.values["ack_note"] == "charger booked"
    every = handle_request(
        rig.monitor, "silence", {"check": "*", "duration_s": 600, "user": "dora", "reason": "lidar swap"}
    )
    assert every.ok and every.reply["checks"] == sorted(rig.monitor.meta), every.reply
    assert all(rig.monitor.silenced(name) for name in rig.monitor.meta)
    result = rig.step(battery=0.15)
    records = [r for r in (*result.alerts, *result.notices) if r.code.startswith("SILENCED.")]
    assert len(records) == len(rig.monitor.meta) and all(r.values["reason"] == "lidar swap" for r in records)
    assert {s.reason for s in rig.monitor.running_silences()} == {"lidar swap"}  # kept across a restart
    lifted = handle_request(rig.monitor, "silence", {"check": "*", "duration_s": 0, "user": "dora"})
    assert lifted.ok and not any(rig.monitor.silenced(name) for name in rig.monitor.meta)
