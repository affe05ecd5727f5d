"""System test: alert identity survives a restart of health_monitor_tree (no ghost, no duplicate).

Real processes: nats-server (JetStream), Mosquitto, robot_sim (fault injection), health_monitor_tree
(twice, same state_dir in tmp_path). Observed on the ROS ``alerts`` topic (a subscriber that lives across
the restart, like the console's bridge), in the JetStream stream ALERTS_r1 and on MQTT.

1. /scan silent -> alert A; SIGTERM; restart with /scan still silent -> A is taken over (same id, still
   active, no second id on any sink); /scan back -> A cleared.
2. /scan silent -> alert B; SIGTERM; /scan back; restart -> B cleared after the grace window with a
   message saying so, on ROS, NATS and MQTT; nothing raised.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import rclpy

from helpers import free_port, ros_env, wait_for, wait_port
from robot_platform_interfaces.msg import Alert
from robot_platform_interfaces.srv import AcknowledgeAlert, InjectFault
from test_health_system import CHECKS, SRC, TICK_HZ, WAIT_S, MqttWatcher, NatsWatcher, Observer

SCAN = "TOPIC_SILENT.scan"
# A restarted node's /scan subscription may take a moment to match on a loaded machine: with the shared
# 1 s timeout a healthy scan could look silent right after the start. 3 s keeps "silent" meaning silent.
SCAN_TIMEOUT_S = 3.0
RESTART_CHECKS = CHECKS.replace("topic: scan, timeout_s: 1.0,", f"topic: scan, timeout_s: {SCAN_TIMEOUT_S},")
GRACE_S = 5.0  # restart_grace_s: a still-silent scan (seen SCAN_TIMEOUT_S after the start) is within it
assert RESTART_CHECKS != CHECKS


class Robot:
    """robot_sim + Mosquitto + the observers; health_monitor_tree started and stopped by the test."""

    def __init__(self, ros_domain: int, nats_url: str, procs: Any, tmp_path: Path) -> None:
        self.procs = procs
        self.env = ros_env(ros_domain, {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")})
        mqtt_port = free_port()
        (tmp_path / "mosquitto.conf").write_text(
            f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        procs.start("mosquitto", [mosquitto, "-c", str(tmp_path / "mosquitto.conf")], stop_last=True)
        wait_port(mqtt_port)
        checks = tmp_path / "checks.yaml"
        checks.write_text(RESTART_CHECKS)
        self.state = tmp_path / "health-state"
        self.argv = [sys.executable, "-m", "robot_platform.health.node", "--ros-args"]
        for param in (
            "robot_id:=r1",
            f"tick_rate_hz:={TICK_HZ}",
            f"checks_file:={checks}",
            "metrics_port:=0",
            f"nats_url:={nats_url}",
            f"state_dir:={self.state}",
            f"restart_grace_s:={GRACE_S}",
            "nats_alert_stream:=ALERTS_r1",  # no nats_bridge (and its EVENTS_r1) here: the node keeps its own
            "diagnostics_period_s:=0.5",
            "mqtt_host:=127.0.0.1",
            f"mqtt_port:={mqtt_port}",
        ):
            self.argv += ["-p", param]
        procs.start("robot_sim", [sys.executable, "-m", "robot_platform.sim.node", "--ros-args", "-p", "robot_id:=r1"],
                    env=self.env)  # fmt: skip
        self.nats = NatsWatcher(nats_url)
        self.mqtt = MqttWatcher(mqtt_port)
        rclpy.init()
        self.obs = Observer()
        self.lives = 0

    def start_health(self) -> str:
        self.lives += 1
        name = f"health_{self.lives}"
        self.procs.start(name, self.argv, env=self.env)
        return name

    def stop_health(self, name: str) -> None:
        child = self.procs.child(name)
        child.popen.send_signal(signal.SIGTERM)
        assert child.popen.wait(WAIT_S) == 0, "health_monitor_tree did not exit cleanly on SIGTERM"

    def scan_alerts(self, since: int = 0) -> list[Alert]:
        return [a for _, a in self.obs.alerts[since:] if a.code == SCAN]

    def stream(self) -> list[dict[str, Any]]:
        return [a for a in self.nats.stored_alerts() if a["code"] == SCAN]

    def healthy(self) -> None:
        self.obs.spin_until(
            lambda: (s := self.obs.diag("summary")) is not None and s.message.startswith("0 active"),
            WAIT_S,
            "a healthy robot (0 active faults)",
        )

    def raise_scan(self) -> Alert:
        since = len(self.obs.alerts)
        self.obs.inject(InjectFault.Request.FAULT_SILENCE_SENSOR, target="scan")
        raised = self.obs.spin_until(lambda: [a for a in self.scan_alerts(since) if a.active], WAIT_S, "scan alert")[0]
        wait_for(lambda: any(a["alert_id"] == raised.alert_id for a in self.stream()), WAIT_S, "the raise in JetStream")
        return raised

    def saved_ids(self, check: str = "scan_silent") -> list[str]:
        """Ids of ``check``'s alerts in the saved state (other checks, e.g. a NODES_MISSING raised when a
        loaded machine discovers robot_sim late, are not what these tests are about)."""
        doc = json.loads((self.state / "active_alerts.json").read_text())
        return [a["alert_id"] for a in doc["alerts"] if a["check"] == check]

    def close(self) -> None:
        self.obs.node.destroy_node()
        rclpy.try_shutdown()
        self.nats.close()
        self.mqtt.close()


@pytest.fixture
def robot(ros_domain: int, nats_server: Any, procs: Any, tmp_path: Path) -> Any:
    r = Robot(ros_domain, nats_server.url, procs, tmp_path)
    try:
        yield r
    finally:
        r.close()
        codes = procs.stop_all()
        assert all(code == 0 for name, code in codes.items() if name.startswith("health_")), codes


def test_fault_present_across_a_restart_keeps_its_alert_id(robot: Robot) -> None:
    obs = robot.obs
    first = robot.start_health()
    robot.healthy()
    a = robot.raise_scan()
    res = obs.call(obs.ack, AcknowledgeAlert.Request(alert_id=a.alert_id, user="alice"))
    assert res.success, res.message
    wait_for(lambda: any(m["alert_id"] == a.alert_id and m["acknowledged"] for m in robot.stream()), WAIT_S, "ack")
    robot.stop_health(first)
    assert robot.saved_ids() == [a.alert_id], "the active alert is on disk after SIGTERM"

    # ---- restart while /scan is still silent ----
    restart_from, restarted_at = len(obs.alerts), time.monotonic()
    obs.diagnostics = None
    second = robot.start_health()
    status = obs.spin_until(lambda: obs.diag("sensors/scan_silent"), WAIT_S, "the restarted node's /diagnostics")
    values = {kv.key: kv.value for kv in status.values}
    # The first status of the new process already counts A as active (in the grace window, before the
    # silent scan is seen again; unit tests check the restored_until_s value - here discovery may be late).
    assert values["alert_id"] == a.alert_id and values["state"] == "ACTIVE", values
    obs.spin_until(
        lambda: [x for x in robot.scan_alerts(restart_from) if x.alert_id == a.alert_id and x.active],
        WAIT_S,
        "A announced again by the restarted node",
    )
    # Past the grace window with the sensor still silent: no clear, no second alert, A still active.
    obs.spin_until(lambda: time.monotonic() - restarted_at > GRACE_S + 2.0, WAIT_S, "the grace window to pass")
    after = robot.scan_alerts(restart_from)
    assert {x.alert_id for x in after} == {a.alert_id} and all(x.active for x in after), after
    assert after[-1].acknowledged_by == "alice", "the acknowledgement survives the restart"
    stream = robot.stream()
    assert {m["alert_id"] for m in stream} == {a.alert_id} and all(m["active"] for m in stream), stream
    assert len(stream) == 2, f"raise + ack, the re-announcement dropped as a duplicate: {stream}"
    assert re.search(r"alert\(s\) taken over \[[^]]*'scan_silent'", robot.procs.child(second).output())
    assert robot.saved_ids() == [a.alert_id]

    # ---- the sensor comes back: A is cleared (same id) everywhere ----
    obs.inject(InjectFault.Request.FAULT_RESTORE_SENSOR, target="scan")
    obs.spin_until(
        lambda: [x for x in robot.scan_alerts(restart_from) if x.alert_id == a.alert_id and not x.active],
        WAIT_S,
        "A cleared on ROS",
    )
    wait_for(lambda: any(not m["active"] for m in robot.stream()), WAIT_S, "A's clear in JetStream")
    wait_for(lambda: any(m["alert_id"] == a.alert_id and not m["active"] for m in robot.mqtt.messages), WAIT_S,
             "A's clear on MQTT")  # fmt: skip
    assert {x.alert_id for x in robot.scan_alerts()} == {a.alert_id}, "one id on ROS over both lifetimes"
    assert {m["alert_id"] for m in robot.stream()} == {a.alert_id}, "one id in the stream over both lifetimes"
    wait_for(lambda: robot.saved_ids() == [], WAIT_S, "the cleared alert removed from disk")


def test_fault_gone_during_the_restart_is_cleared_after_the_grace_window(robot: Robot) -> None:
    obs = robot.obs
    first = robot.start_health()
    robot.healthy()
    b = robot.raise_scan()
    robot.stop_health(first)
    obs.inject(InjectFault.Request.FAULT_RESTORE_SENSOR, target="scan")

    restart_from, restarted_at = len(obs.alerts), time.monotonic()
    second = robot.start_health()
    cleared = obs.spin_until(
        lambda: [x for x in robot.scan_alerts(restart_from) if x.alert_id == b.alert_id and not x.active],
        WAIT_S,
        "B cleared by the restarted node",
    )[0]
    took = time.monotonic() - restarted_at
    print(f"\nrestart -> clear of the stale alert: {took:.2f}s (restart_grace_s {GRACE_S:g})")
    assert took >= GRACE_S, "not before the grace window ended"
    assert "cleared after a restart of health_monitor_tree" in cleared.message, cleared.message
    assert robot.scan_alerts(restart_from) == [cleared], "nothing raised again, one clear"
    wait_for(
        lambda: [m["active"] for m in robot.stream() if m["alert_id"] == b.alert_id] == [True, False],
        WAIT_S,
        "B's raise then its clear in JetStream",
    )
    wait_for(
        lambda: any(m["alert_id"] == b.alert_id and not m["active"] and "after a restart" in m["message"]
                    for m in robot.mqtt.messages),
        WAIT_S,
        "B's clear on MQTT",
    )  # fmt: skip
    assert {m["alert_id"] for m in robot.stream()} == {b.alert_id}
    assert robot.saved_ids() == []
    robot.healthy()
    assert re.search(r"alert\(s\) taken over \[[^]]*'scan_silent'", robot.procs.child(second).output())
