"""'Export ±N min around this alert' end to end, on the site's own NATS layout and least-privilege users.

Stack (real processes, loopback only): a secured hub (service users from site_setup/nats_config.py) and
r1's leaf nats-server; on r1 robot_sim, health_monitor_tree (alerts into EVENTS_r1, sourced into the hub's
FLEET_EVENTS) and robot_agent (/rosout into LOGS_r1, sourced into FLEET_LOGS by fleet_registry; a capture
buffer of /odom and /imu; a roles file granting fleet_registry list_graph and capture); on the control
side fleet_registry (user fleet_registry) and the console's ws_agent (user console, fleet mode).

test_export_around_a_real_alert: a sensor goes silent (a real TOPIC_SILENT.scan alert), a marker line is
logged while it is active, the sensor comes back (clear), a second marker is logged after the clear; an
operator exports ±1 min through ws_agent's HTTP routes and gets one MCAP file that the mcap library and
rosbags both read: the alert's raise and clear, the first marker and no line stamped outside the window
(so not the second marker), r1's /odom and /imu from its capture buffer inside the window, and the
metadata (alert, robot, window, who exported). A viewer is refused (403, audited), a malformed request
gets a 400 naming the argument, an unknown alert id a 404 from the registry.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import nats
import rclpy
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.highlevel import AnyReader

from helpers import REPO, free_port, ros_env, wait_for, wait_port
from robot_platform.messaging.streams import ensure_stream, events_hub_stream_config, events_stream_config
from robot_platform.site_setup.nats_config import Endpoint, Fleet, render_hub, render_robot, service_user_entry
from robot_platform.ws.hashing import hash_secret
from robot_platform_interfaces.srv import InjectFault
from test_health_system import Observer

SRC = str(REPO / "src" / "robot_platform")
WAIT_S = 40.0
USERS = {"olga": ("operator", secrets.token_urlsafe(12)), "vic": ("viewer", secrets.token_urlsafe(12))}
CHECKS = """\
defaults: {debounce_s: 0.5, clear_s: 1.0, startup_grace_s: 0}
topics:
  scan: sensor_msgs/msg/LaserScan
checks:
  - {name: scan_silent, kind: topic_silence, group: sensors, topic: scan, timeout_s: 1.0, severity: error}
"""
ROLES = "roles:\n  exporter: [list_graph, capture]\nusers:\n  fleet_registry: exporter\n"
ROBOT = """
/**/robot_sim:
  ros__parameters:
    robot_id: r1
    odom_rate_hz: 10.0
    imu_rate_hz: 10.0
    scan_rate_hz: 5.0
/**/health_monitor_tree:
  ros__parameters:
    robot_id: r1
    checks_file: {checks}
    metrics_port: 0
    nats_url: {url}
    nats_alert_stream: ""
    state_dir: {state}
/**/robot_agent:
  ros__parameters:
    robot_id: r1
    nats_url: {url}
    announce_period_s: 1.0
    roles_file: {roles}
    capture_topics: [/odom, /imu]
    capture_window_s: 60.0
"""
CONTROL = """
/**/fleet_registry:
  ros__parameters:
    nats_url: {url}
    nats_user: fleet_registry
    nats_password_file: {registry_pw}
    fleet_robots: [r1]
/**/ws_agent:
  ros__parameters:
    mode: fleet
    robot_id: control
    port: {port}
    nats_url: {url}
    nats_user: console
    nats_password_file: {console_pw}
    users_file: {users}
"""


def write_private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


async def _streams(hub_url: str, control_pw: str, robot_url: str) -> None:
    """FLEET_EVENTS on the hub sourcing r1's EVENTS_r1 (what the control side's nats_bridge sets up)."""
    robot = await nats.connect(robot_url)
    hub = await nats.connect(hub_url, user="control", password=control_pw)
    try:
        await ensure_stream(robot, events_stream_config("r1"))
        await ensure_stream(hub, events_hub_stream_config(["r1"]))
    finally:
        await robot.close()
        await hub.close()


def http(port: int, path: str, user: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Authorization": f"Bearer {user}:{USERS[user][1]}"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def export(port: int, user: str, query: str) -> tuple[int, dict[str, str], bytes]:
    """Start an export and poll it until it is done (what the console does)."""
    status, headers, body = http(port, f"/fleet/alerts/export?{query}", user)
    if status != 202:
        return status, headers, body
    poll = json.loads(body)["poll"]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        status, headers, body = http(port, poll, user)
        if status != 202:
            return status, headers, body
        time.sleep(0.3)
    raise TimeoutError("export not done")


def test_export_around_a_real_alert(ros_domain: int, procs: Any, tmp_path: Path) -> None:
    exe = os.environ.get("NATS_SERVER") or "nats-server"
    fleet = Fleet.generate(["r1"])
    pw = {u: secrets.token_urlsafe(24) for u in ("console", "fleet_registry")}
    hub_port, leaf_port, robot_port, console_port = free_port(), free_port(), free_port(), free_port()
    hub_conf = write_private(tmp_path / "hub.conf", render_hub(
        fleet, Endpoint(port=hub_port), leaf_port, str(tmp_path / "js-hub"),
        extra_users=[service_user_entry(u, p) for u, p in pw.items()]))  # fmt: skip
    leaf = f"127.0.0.1:{leaf_port}"
    robot_conf = write_private(tmp_path / "r1.conf", render_robot(
        "r1", fleet.robots["r1"], Endpoint(port=robot_port), leaf, str(tmp_path / "js-r1")))  # fmt: skip
    procs.start("hub", [exe, "-c", str(hub_conf)])
    procs.start("nats-r1", [exe, "-c", str(robot_conf)])
    wait_port(hub_port)
    wait_port(robot_port)
    hub_url, robot_url = f"nats://127.0.0.1:{hub_port}", f"nats://127.0.0.1:{robot_port}"
    wait_for(lambda: asyncio.run(_streams(hub_url, fleet.control_password, robot_url)) or True, WAIT_S, "streams")

    users = tmp_path / "users.yaml"
    users.write_text("users:\n" + "".join(f"  {u}: {{role: {r}, secret_hash: '{hash_secret(s)}'}}\n"
                                          for u, (r, s) in USERS.items()))  # fmt: skip
    (tmp_path / "checks.yaml").write_text(CHECKS)
    (tmp_path / "roles.yaml").write_text(ROLES)
    robot_params = tmp_path / "robot.yaml"
    robot_params.write_text(ROBOT.format(checks=tmp_path / "checks.yaml", url=robot_url, state=tmp_path / "state",
                                         roles=tmp_path / "roles.yaml"))  # fmt: skip
    control_params = tmp_path / "control.yaml"
    secret = {u: write_private(tmp_path / f"{u}.pw", p + "\n") for u, p in pw.items()}
    control_params.write_text(CONTROL.format(url=hub_url, registry_pw=secret["fleet_registry"], port=console_port,
                                             console_pw=secret["console"], users=users))  # fmt: skip
    env = ros_env(ros_domain, {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")})
    for name, module, params in (
        ("robot_sim", "sim.node", robot_params), ("health_monitor_tree", "health.node", robot_params),
        ("robot_agent", "ops.node", robot_params), ("fleet_registry", "ops.registry_node", control_params),
        ("ws_agent", "ws.node", control_params),
    ):  # fmt: skip
        argv = [sys.executable, "-m", f"robot_platform.{module}", "--ros-args", "--params-file", str(params)]
        procs.start(name, argv, env=env)
    wait_port(console_port, timeout=WAIT_S)

    rclpy.init()
    obs = Observer()
    log = obs.node.get_logger()
    try:
        # The console's checks before any alert: a viewer may not export; bad arguments are named.
        status, _, body = http(console_port, "/fleet/alerts/export?alert_id=x&minutes=1", "vic")
        assert status == 403 and "viewer" in json.loads(body)["error"], body
        status, _, body = http(console_port, "/fleet/alerts/export?alert_id=x&minutes=500", "olga")
        assert status == 400 and json.loads(body)["field"] == "minutes", body
        status, _, body = export(console_port, "olga", "alert_id=no-such-alert&minutes=1")
        assert status == 404 and "no alert" in json.loads(body)["error"], body

        obs.spin_until(lambda: obs.fault.service_is_ready(), WAIT_S, "robot_sim")
        # Scan heard and no alert active before it goes silent: DDS discovery past the 1 s start-up grace
        # raises and clears a 'never received' alert first, whose window would end before the marker below.
        obs.spin_until(obs.started_healthy, WAIT_S, "a healthy start (scan heard, no alert active)")
        injected = time.monotonic()
        obs.inject(InjectFault.Request.FAULT_SILENCE_SENSOR, target="scan")
        scan = obs.spin_until(lambda: obs.active_since("TOPIC_SILENT.scan", injected), WAIT_S, "raise")[0]
        log.warning("export-test marker inside the window")
        time.sleep(0.5)
        obs.inject(InjectFault.Request.FAULT_RESTORE_SENSOR, target="scan")
        obs.spin_until(
            lambda: any(a.alert_id == scan.alert_id and not a.active for a in obs.alerts_for("TOPIC_SILENT.scan")),
            WAIT_S,
            "clear",
        )
        time.sleep(1.5)  # past the clear: the window ends there
        log.warning("export-test marker after the clear")

        def exported() -> Any:
            """The export, once the marker and the clear have reached the hub's streams."""
            t0 = time.monotonic()
            status, headers, body = export(console_port, "olga", f"alert_id={scan.alert_id}&minutes=1")
            assert status == 200, (status, body[:300])
            print(f"\nexport took {time.monotonic() - t0:.2f} s (start, polls every 0.3 s, file)")
            summary = json.loads(headers["X-Alert-Export"])
            wanted = ("/robots/r1/alerts", "/robots/r1/rosout", "/robots/r1/odom", "/robots/r1/imu")
            done = all(summary["included"].get(t) for t in wanted) and _has_marker(body)
            last["summary"] = {**summary, "marker": _has_marker(body)}
            return (headers, body, summary) if done else None

        last: dict[str, Any] = {}
        try:
            headers, file, summary = wait_for(exported, WAIT_S, "an export with alerts, logs and telemetry")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; the last export said {last.get('summary')}") from None
        assert headers["Content-Disposition"].startswith('attachment; filename="alert-r1-TOPIC_SILENT.scan-')
        check_file(file, tmp_path, scan.alert_id, summary)
    finally:
        obs.node.destroy_node()
        rclpy.try_shutdown()


def _has_marker(file: bytes) -> bool:
    reader = make_reader(io.BytesIO(file), decoder_factories=[DecoderFactory()])
    lines = reader.iter_decoded_messages(topics=["/robots/r1/rosout"])
    return any("inside the window" in m.msg for _, _, _, m in lines)


def check_file(file: bytes, tmp_path: Path, alert_id: str, summary: dict[str, Any]) -> None:
    reader = make_reader(io.BytesIO(file), decoder_factories=[DecoderFactory()])
    meta = {m.name: dict(m.metadata) for m in reader.iter_metadata()}["robot_platform"]
    assert (meta["alert_id"], meta["robot"], meta["exported_by"], meta["minutes"]) == (alert_id, "r1", "olga", "1")
    start, end = summary["window"]["start"], summary["window"]["end"]
    by_topic: dict[str, list[tuple[int, Any]]] = {}
    for _, channel, message, decoded in reader.iter_decoded_messages():
        by_topic.setdefault(channel.topic, []).append((message.log_time, decoded))
    own = [m for _, m in by_topic["/robots/r1/alerts"] if m.alert_id == alert_id]
    assert own[0].active is True and own[-1].active is False  # raise ... clear
    lines = [m for _, m in by_topic["/robots/r1/rosout"]]
    assert any("inside the window" in m.msg for m in lines)
    assert not any("after the clear" in m.msg for m in lines)
    for m in lines:
        stamp = m.stamp.sec + m.stamp.nanosec / 1e9
        assert start - 0.001 <= stamp <= end + 0.001, (stamp, start, end, m.msg)
    for topic in ("/robots/r1/odom", "/robots/r1/imu"):
        times = [t / 1e9 for t, _ in by_topic[topic]]
        assert times and start - 0.001 <= min(times) and max(times) <= end + 0.001, topic
    print(f"\nexport: {len(file)} bytes, {summary['included']}, notes {summary['notes']}")
    path = tmp_path / "export.mcap"
    path.write_bytes(file)
    with AnyReader([path]) as bag:
        types = {c.topic: c.msgtype for c in bag.connections}
        assert types["/robots/r1/alerts"] == "robot_platform_interfaces/msg/Alert"
        assert types["/robots/r1/rosout"] == "rcl_interfaces/msg/Log"
        assert types["/robots/r1/odom"] == "nav_msgs/msg/Odometry"
        alerts = [bag.deserialize(raw, c.msgtype) for c, _, raw in bag.messages() if c.topic == "/robots/r1/alerts"]
        assert any(a.alert_id == alert_id and not a.active for a in alerts)
