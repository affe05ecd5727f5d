"""Alert history on a real JetStream: robot_sim + health_monitor_tree raise, an operator acknowledges over NATS,
the fault clears; the control side's fleet_registry node answers fleet.alerts.query by robot, severity, code,
time and state, with who acknowledged what and when.

The history stream here takes the robot's alerts directly (on a site FLEET_EVENTS sources each robot's
EVENTS_<id> through its leaf link; long/test_nats_fleet_system.py covers that path)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import nats
import pytest
import rclpy
from nats.js.api import StorageType, StreamConfig

from helpers import REPO, free_port, ros_env, wait_for, wait_port
from robot_platform_interfaces.srv import InjectFault
from test_health_system import Observer, metrics_text

SRC = str(REPO / "src" / "robot_platform")
WAIT_S = 40.0
CHECKS = """\
defaults: {debounce_s: 0.5, clear_s: 1.0, startup_grace_s: 0}
topics:
  scan: sensor_msgs/msg/LaserScan
checks:
  - {name: scan_silent, kind: topic_silence, group: sensors, topic: scan, timeout_s: 1.0, severity: error}
  - {name: battery, kind: battery, group: power, low: 0.2, critical: 0.1}
"""


async def _request(url: str, subject: str, payload: dict[str, Any]) -> dict[str, Any]:
    nc = await nats.connect(url)
    try:
        return msgpack.unpackb((await nc.request(subject, msgpack.packb(payload), timeout=10.0)).data)
    finally:
        await nc.close()


def request(url: str, subject: str, payload: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_request(url, subject, payload))


async def _history_stream(url: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(
            StreamConfig(
                name="FLEET_EVENTS",
                subjects=["robots.*.alerts"],
                storage=StorageType.FILE,
                max_age=3600.0,
                max_bytes=64 * 1024 * 1024,
            )
        )
    finally:
        await nc.close()


def query(url: str, **args: Any) -> list[dict[str, Any]]:
    reply = request(url, "fleet.alerts.query", args)
    assert reply["ok"], reply
    return reply["result"]["alerts"]


def test_raise_ack_clear_kept_and_queried_by_robot_severity_code_time_state(
    ros_domain: int, nats_server, procs, tmp_path: Path
) -> None:
    url = nats_server.url
    asyncio.run(_history_stream(url))
    env = ros_env(ros_domain, {"PYTHONPATH": SRC + ":" + os.environ.get("PYTHONPATH", "")})
    (tmp_path / "checks.yaml").write_text(CHECKS)
    metrics_port = free_port()
    procs.start("robot_sim", [sys.executable, "-m", "robot_platform.sim.node", "--ros-args", "-p", "robot_id:=r1"],
                env=env)  # fmt: skip
    procs.start(
        "health_monitor_tree",
        [sys.executable, "-m", "robot_platform.health.node", "--ros-args", "-p", "robot_id:=r1",
         "-p", f"checks_file:={tmp_path / 'checks.yaml'}", "-p", f"metrics_port:={metrics_port}",
         "-p", f"nats_url:={url}", "-p", "nats_alert_stream:=''", "-p", f"state_dir:={tmp_path / 'state'}"],
        env=env,
    )  # fmt: skip
    procs.start(
        "fleet_registry",
        [sys.executable, "-m", "robot_platform.ops.registry_node", "--ros-args", "-p", f"nats_url:={url}",
         "-p", "fleet_robots:=[r1]"],
        env=env,
    )  # fmt: skip
    wait_port(metrics_port, timeout=WAIT_S)
    t_begin = time.time()
    rclpy.init()
    obs = Observer()
    try:
        obs.spin_until(
            lambda: (
                'robot_health_topic_messages{robot="r1",topic="scan"} 0.0' not in metrics_text(metrics_port)
                and 'topic="scan"' in metrics_text(metrics_port)
            ),
            WAIT_S,
            "scan arriving",
        )
        wait_for(lambda: request(url, "fleet.alerts.query", {}).get("ok"), WAIT_S, "fleet.alerts.query served")
        # No start-up alert active (discovery past the 1 s grace raises one until the scan is heard): the
        # alert picked below is the one this silence raises.
        obs.spin_until(obs.started_healthy, WAIT_S, "a healthy start (scan heard, no alert active)")
        injected = time.monotonic()
        obs.inject(InjectFault.Request.FAULT_SILENCE_SENSOR, target="scan")
        scan = obs.spin_until(lambda: obs.active_since("TOPIC_SILENT.scan", injected), WAIT_S, "raise")[0]
        ack = request(url, "robots.r1.health.ack", {"alert_id": scan.alert_id, "user": "alice"})
        assert ack["success"], ack
        obs.spin_until(lambda: any(a.acknowledged_by == "alice" for _, a in obs.alerts), WAIT_S, "ack")
        obs.inject(InjectFault.Request.FAULT_RESTORE_SENSOR, target="scan")
        obs.spin_until(
            lambda: any(a.alert_id == scan.alert_id and not a.active for _, a in obs.alerts), WAIT_S, "clear"
        )
        t_cleared = time.time()
        obs.inject(InjectFault.Request.FAULT_BATTERY_LEVEL, value=0.15)
        obs.spin_until(lambda: [a for _, a in obs.alerts if a.code == "BATTERY_LOW"], WAIT_S, "battery low")

        silence = request(url, "robots.r1.health.silence", {"check": "battery", "duration_s": 600, "user": "bob"})
        assert silence["success"], silence
        silenced = wait_for(lambda: query(url, code="SILENCED*"), WAIT_S, "the silence in the history")[0]
        assert (silenced["code"], silenced["active"], silenced["values"]["by"]) == ("SILENCED.BATTERY_LOW", True, "bob")
        assert float(silenced["values"]["until"]) == pytest.approx(silenced["raised_at"] + 600, abs=1)
        alerts = wait_for(lambda: len(query(url, robot="r1")) >= 3 and query(url, robot="r1"), WAIT_S, "history")
        by_code = {a["code"]: a for a in alerts}
        hist = next(a for a in alerts if a["alert_id"] == scan.alert_id)
        print(f"\nhistory of {scan.alert_id}: {hist['events']}")
        assert hist["alert_id"] == scan.alert_id and hist["severity"] == 2 and not hist["active"]
        assert [e["event"] for e in hist["events"]] == ["raise", "acknowledge", "clear"]
        assert hist["acknowledged_by"] == "alice"
        assert t_begin <= hist["raised_at"] <= hist["acknowledged_at"] <= hist["cleared_at"] <= t_cleared + 1
        assert by_code["BATTERY_LOW"]["active"] and by_code["BATTERY_LOW"]["severity"] == 1

        assert {a["code"] for a in query(url, severity="error")} == {"TOPIC_SILENT.scan"}
        assert [a["code"] for a in query(url, code="BATTERY*")] == ["BATTERY_LOW"]
        assert [a["alert_id"] for a in query(url, state="acknowledged")] == [scan.alert_id]
        assert [a["code"] for a in query(url, state="active")] == ["SILENCED.BATTERY_LOW", "BATTERY_LOW"]
        assert {a["code"] for a in query(url, state="cleared", robot="r1")} == {"TOPIC_SILENT.scan"}
        after_clear = time.time() - t_cleared - 0.5  # a range starting after the scan alert ended
        assert [a["code"] for a in query(url, since_s=max(0.1, after_clear), code="BATTERY*")] == ["BATTERY_LOW"]
        assert scan.alert_id not in [a["alert_id"] for a in query(url, since_s=max(0.1, after_clear))]
        assert query(url, robot="r2") == []
        bad = request(url, "fleet.alerts.query", {"state": "open"})
        assert bad["ok"] is False and bad["field"] == "state"
    finally:
        obs.node.destroy_node()
        rclpy.try_shutdown()
    codes = procs.stop_all()
    assert codes.get("health_monitor_tree") == 0 and codes.get("fleet_registry") == 0, codes
