"""System test of health_monitor_tree with the robot simulator's fault injection.

Real processes: robot_sim, health_monitor_tree, nats-server (JetStream), Mosquitto, Prometheus.
Observed from a real rclpy node (alerts, /diagnostics), a nats-py client, an MQTT client (awscrt), the
metrics endpoint and Prometheus' query API.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import nats
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from helpers import REPO, free_port, ros_env, wait_for, wait_port
from robot_platform.messaging.envelope import Envelope
from robot_platform_interfaces.msg import Alert
from robot_platform_interfaces.srv import AcknowledgeAlert, InjectFault

TICK_HZ = 10.0
SCAN_TIMEOUT_S = 1.0
WAIT_S = 25.0
SRC = str(REPO / "src" / "robot_platform")

CHECKS = f"""\
defaults: {{debounce_s: 0.0, clear_s: 1.0}}
topics:
  scan: sensor_msgs/msg/LaserScan
  odom: {{type: nav_msgs/msg/Odometry, qos: reliable}}
  cmd_vel: {{type: geometry_msgs/msg/Twist, qos: reliable}}
checks:
  - {{name: scan_silent, kind: topic_silence, group: sensors, topic: scan, timeout_s: {SCAN_TIMEOUT_S},
     severity: error}}
  - {{name: speed_drop, kind: speed_drop, group: motion, ratio: 0.5, clear_ratio: 0.6, min_command: 0.1,
     command_timeout_s: 0.5, debounce_s: 1.0, clear_s: 1.5}}
  - {{name: battery, kind: battery, group: power, low: 0.2, critical: 0.1}}
  - {{name: nats_link, kind: nats_link, group: comms, debounce_s: 3.0}}
  - {{name: nodes, kind: nodes_missing, group: system, expected: [robot_sim], debounce_s: 3.0}}
"""


class Observer:
    """rclpy node in the test: alerts, diagnostics, cmd_vel publisher, fault injection client."""

    def __init__(self) -> None:
        self.node = Node("health_test_observer")
        self.alerts: list[tuple[float, Alert]] = []
        self.diagnostics: DiagnosticArray | None = None
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(Alert, "alerts", lambda m: self.alerts.append((time.monotonic(), m)), qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.cmd_pub = self.node.create_publisher(Twist, "cmd_vel", 10)
        self.fault = self.node.create_client(InjectFault, "robot_sim/inject_fault")
        self.ack = self.node.create_client(AcknowledgeAlert, "health_monitor_tree/acknowledge_alert")

    def _on_diag(self, msg: DiagnosticArray) -> None:
        self.diagnostics = msg

    def spin_until(self, predicate, timeout: float, what: str, each=None) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if each:
                each()
            rclpy.spin_once(self.node, timeout_sec=0.02)
            result = predicate()
            if result:
                return result
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}")

    def call(self, client, request) -> Any:
        assert client.wait_for_service(timeout_sec=WAIT_S), f"{client.srv_name} not found"
        future = client.call_async(request)
        self.spin_until(future.done, WAIT_S, f"{client.srv_name} response")
        return future.result()

    def inject(self, fault: str, target: str = "", value: float = 0.0) -> None:
        res = self.call(self.fault, InjectFault.Request(fault=fault, target=target, value=value))
        assert res.success, res.message

    def alerts_for(self, code: str) -> list[Alert]:
        return [a for _, a in self.alerts if a.code == code]

    def active_since(self, code: str, since: float) -> list[Alert]:
        """Active alerts with ``code`` received at or after ``since`` (monotonic): the one a test caused,
        not one left from before (e.g. a start-up silence on a loaded host)."""
        return [a for t, a in self.alerts if t >= since and a.code == code and a.active]

    def started_healthy(self) -> bool:
        """0 active faults, the sim's scan received and every alert seen so far cleared: DDS discovery can
        take seconds on a loaded host, past the health node's start-up grace, and such a start-up alert
        must not be taken for the one a test injects (the rig forgets them once healthy)."""
        summary, scan = self.diag("summary"), self.diag("sensors/scan_silent")
        last = {a.alert_id: a for _, a in self.alerts}
        return (
            summary is not None
            and summary.message.startswith("0 active")
            and scan is not None
            and "last message" in scan.message
            and not any(a.active for a in last.values())
        )

    def diag(self, name_suffix: str):
        if self.diagnostics is None:
            return None
        return next((s for s in self.diagnostics.status if s.name.endswith(name_suffix)), None)


class NatsWatcher:
    """nats-py client on its own thread collecting robots.r1.alerts and robots.r1.health."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.alerts: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.snapshots: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        assert self._ready.wait(10.0), "nats watcher did not connect"

    async def _main(self) -> None:
        nc = await nats.connect(self.url)

        async def on_alert(msg) -> None:
            self.alerts.append((dict(msg.headers or {}), msgpack.unpackb(msg.data)))

        async def on_health(msg) -> None:
            self.snapshots.append(msgpack.unpackb(msg.data))

        await nc.subscribe("robots.r1.alerts", cb=on_alert)
        await nc.subscribe("robots.r1.health", cb=on_health)
        self._ready.set()
        while not self._stop.is_set():
            await asyncio.sleep(0.05)
        await nc.drain()

    def stored_alerts(self) -> list[dict[str, Any]]:
        """Every alert in the JetStream stream (what a console that was offline would replay)."""

        async def fetch() -> list[dict[str, Any]]:
            nc = await nats.connect(self.url)
            try:
                js = nc.jetstream()
                info = await js.stream_info("ALERTS_r1")
                out = []
                for seq in range(info.state.first_seq, info.state.last_seq + 1):
                    raw = await js.get_msg("ALERTS_r1", seq)
                    out.append(msgpack.unpackb(raw.data))
                return out
            finally:
                await nc.close()

        return asyncio.run(fetch())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


class MqttWatcher:
    """awscrt MQTT client subscribed to robots/r1/alerts on the test's Mosquitto."""

    def __init__(self, port: int) -> None:
        from awscrt import io, mqtt

        self.messages: list[dict[str, Any]] = []
        elg = io.EventLoopGroup(1)
        bootstrap = io.ClientBootstrap(elg, io.DefaultHostResolver(elg))
        self.conn = mqtt.Connection(
            client=mqtt.Client(bootstrap, None),
            host_name="127.0.0.1",
            port=port,
            client_id="health-test-watcher",
            keep_alive_secs=30,
        )
        self.conn.connect().result(10)
        fut, _ = self.conn.subscribe(
            "robots/r1/alerts",
            mqtt.QoS.AT_LEAST_ONCE,
            callback=lambda topic, payload, **kw: self.messages.append(json.loads(payload)),
        )
        fut.result(10)

    def close(self) -> None:
        self.conn.disconnect().result(5)


def metrics_text(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()


def metric_value(port: int, name: str, check: str) -> float | None:
    for line in metrics_text(port).splitlines():
        if line.startswith(name + "{") and f'check="{check}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def prom_query(port: int, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    body = json.loads(urllib.request.urlopen(url, timeout=2).read())
    assert body["status"] == "success", body
    return body["data"]["result"]


class Rig:
    def __init__(
        self,
        observer: Observer,
        nats_watch: NatsWatcher,
        metrics_port: int,
        prom_port: int | None,
        mqtt_watch: MqttWatcher | None,
    ) -> None:
        self.obs, self.nats, self.metrics_port = observer, nats_watch, metrics_port
        self.prom_port, self.mqtt = prom_port, mqtt_watch


@pytest.fixture
def rig(ros_domain: int, nats_server, procs, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Rig]:
    env = ros_env(ros_domain, {"PYTHONPATH": SRC + ":" + os.environ.get("PYTHONPATH", "")})
    with_servers = bool(getattr(request, "param", False))  # Mosquitto + Prometheus too
    mqtt_port = prom_port = None
    if with_servers:
        for exe in ("mosquitto", "prometheus"):
            assert shutil.which(exe) or Path(f"/usr/sbin/{exe}").exists(), (
                f"{exe} not installed: apt-get install -y mosquitto prometheus (Debian packages)"
            )
        mqtt_port = free_port()
        (tmp_path / "mosquitto.conf").write_text(
            f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        procs.start(
            "mosquitto", [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(tmp_path / "mosquitto.conf")]
        )
        wait_port(mqtt_port)
    metrics_port = free_port()
    checks = tmp_path / "checks.yaml"
    checks.write_text(CHECKS)
    procs.start(
        "robot_sim",
        [
            sys.executable,
            "-m",
            "robot_platform.sim.node",
            "--ros-args",
            "-p",
            "robot_id:=r1",
            "-p",
            "battery_rate_hz:=2.0",
        ],
        env=env,
    )
    health_args = [
        sys.executable,
        "-m",
        "robot_platform.health.node",
        "--ros-args",
        "-p",
        "robot_id:=r1",
        "-p",
        f"tick_rate_hz:={TICK_HZ}",
        "-p",
        f"checks_file:={checks}",
        "-p",
        f"metrics_port:={metrics_port}",
        "-p",
        f"nats_url:={nats_server.url}",
        "-p",
        "diagnostics_period_s:=0.5",
        "-p",
        f"state_dir:={tmp_path / 'health-state'}",  # the durable outbox: never the user's ~/.robot_platform
        "-p",
        "nats_alert_stream:=ALERTS_r1",  # no nats_bridge (and its EVENTS_r1) here: the node keeps its own stream
    ]
    if mqtt_port:
        health_args += ["-p", "mqtt_host:=127.0.0.1", "-p", f"mqtt_port:={mqtt_port}"]
    procs.start("health_monitor_tree", health_args, env=env)
    if with_servers:
        prom_port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n  - job_name: robot_health\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}'], labels: {{robot: r1}}}}]\n"
        )
        procs.start(
            "prometheus",
            [
                "prometheus",
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ],
        )
    nats_watch = NatsWatcher(nats_server.url)
    mqtt_watch = MqttWatcher(mqtt_port) if mqtt_port else None
    rclpy.init()
    observer = Observer()
    try:
        wait_port(metrics_port, timeout=WAIT_S)
        # Healthy start: sim publishing, health ticking, NATS up, no fault raised.
        observer.spin_until(
            lambda: (
                observer.started_healthy()
                and metric_value(metrics_port, "robot_health_check_state", "nats_link") == 0.0
            ),
            WAIT_S,
            "a healthy robot (0 active faults)",
        )
        observer.alerts.clear()
        yield Rig(observer, nats_watch, metrics_port, prom_port, mqtt_watch)
    finally:
        observer.node.destroy_node()
        rclpy.try_shutdown()
        nats_watch.close()
        if mqtt_watch:
            mqtt_watch.close()
        codes = procs.stop_all()
        assert codes.get("health_monitor_tree") == 0, f"health_monitor_tree did not exit cleanly: {codes}"


@pytest.mark.parametrize("rig", [True], indirect=True, ids=["with-mqtt-prometheus"])
def test_silenced_scan_raises_alert_everywhere_and_clears(rig: Rig) -> None:
    obs = rig.obs
    obs.inject(InjectFault.Request.FAULT_SILENCE_SENSOR, target="scan")
    injected = time.monotonic()
    raised = obs.spin_until(
        lambda: obs.active_since("TOPIC_SILENT.scan", injected), WAIT_S, "TOPIC_SILENT.scan alert on ROS"
    )[0]
    latency = next(t for t, a in obs.alerts if a.alert_id == raised.alert_id) - injected
    print(f"\nscan silence -> alert latency {latency:.3f}s (timeout {SCAN_TIMEOUT_S}s, tick {1 / TICK_HZ}s)")
    # Within the timeout plus one tick (plus slack for DDS delivery and process scheduling on 2 cores).
    assert latency <= SCAN_TIMEOUT_S + 1 / TICK_HZ + 0.5
    assert raised.severity == Alert.SEVERITY_ERROR and raised.robot_id == "r1"
    assert raised.source == "health_monitor_tree/scan_silent" and raised.alert_id

    # /diagnostics shows the check at ERROR level.
    obs.spin_until(
        lambda: (s := obs.diag("sensors/scan_silent")) is not None and s.level == b"\x02",
        WAIT_S,
        "scan_silent ERROR on /diagnostics",
    )
    # NATS: the same alert, enveloped, decodable without ROS.
    headers, body = wait_for(
        lambda: next(((h, b) for h, b in rig.nats.alerts if b["alert_id"] == raised.alert_id), None),
        WAIT_S,
        "alert on NATS",
    )
    env = Envelope.from_headers("robots.r1.alerts", headers)
    assert env.type_name == "robot_platform_interfaces/msg/Alert" and env.robot_id == "r1"
    assert body["code"] == "TOPIC_SILENT.scan" and body["active"] is True and body["severity"] == 2
    # MQTT: the same alert as JSON.
    assert rig.mqtt is not None
    wait_for(
        lambda: any(m["alert_id"] == raised.alert_id and m["active"] for m in rig.mqtt.messages),
        WAIT_S,
        "alert on MQTT",
    )
    # Metrics: the endpoint and a real Prometheus scraping it.
    assert metric_value(rig.metrics_port, "robot_health_check_state", "scan_silent") == 2.0
    assert rig.prom_port is not None
    wait_for(
        lambda: any(
            r["value"][1] == "2" for r in prom_query(rig.prom_port, 'robot_health_check_state{check="scan_silent"}')
        ),
        WAIT_S,
        "Prometheus to see ACTIVE",
    )
    # Tree snapshot for the UI.
    wait_for(lambda: any("TOPIC_SILENT.scan" in s["active"] for s in rig.nats.snapshots), WAIT_S, "snapshot")

    # Operator acknowledges: re-published with who.
    res = obs.call(obs.ack, AcknowledgeAlert.Request(alert_id=raised.alert_id, user="alice"))
    assert res.success, res.message
    obs.spin_until(
        lambda: any(a.acknowledged and a.acknowledged_by == "alice" for a in obs.alerts_for("TOPIC_SILENT.scan")),
        WAIT_S,
        "acknowledged alert",
    )

    # Restore the scan: the alert clears (same id) everywhere.
    obs.inject(InjectFault.Request.FAULT_RESTORE_SENSOR, target="scan")
    obs.spin_until(
        lambda: any(not a.active and a.alert_id == raised.alert_id for a in obs.alerts_for("TOPIC_SILENT.scan")),
        WAIT_S,
        "cleared alert on ROS",
    )
    wait_for(
        lambda: any(b["alert_id"] == raised.alert_id and not b["active"] for _, b in rig.nats.alerts),
        WAIT_S,
        "cleared alert on NATS",
    )
    wait_for(
        lambda: any(m["alert_id"] == raised.alert_id and not m["active"] for m in rig.mqtt.messages),
        WAIT_S,
        "cleared alert on MQTT",
    )
    wait_for(
        lambda: metric_value(rig.metrics_port, "robot_health_check_state", "scan_silent") == 0.0,
        WAIT_S,
        "metric back to OK",
    )
    assert len([a for a in obs.active_since("TOPIC_SILENT.scan", injected) if not a.acknowledged]) == 1
    # JetStream kept all of them (a console offline during the fault replays raise, ack, clear).
    stored = [a for a in rig.nats.stored_alerts() if a["alert_id"] == raised.alert_id]
    assert [(a["active"], a["acknowledged"]) for a in stored] == [(True, False), (True, True), (False, True)]


def test_speed_cap_raises_speed_drop_and_oscillation_raises_at_most_once(rig: Rig) -> None:
    obs = rig.obs
    twist = Twist()
    twist.linear.x = 0.6
    drive = lambda: obs.cmd_pub.publish(twist)  # noqa: E731
    obs.inject(InjectFault.Request.FAULT_SPEED_CAP, value=0.15)
    raised = obs.spin_until(
        lambda: [a for a in obs.alerts_for("SPEED_DROP") if a.active], WAIT_S, "SPEED_DROP alert", each=drive
    )[0]
    values = {kv.key: kv.value for kv in raised.values}
    assert float(values["commanded"]) == pytest.approx(0.6, abs=0.01) and float(values["actual"]) < 0.3
    obs.inject(InjectFault.Request.FAULT_SPEED_CAP, value=-1.0)
    obs.spin_until(
        lambda: any(not a.active for a in obs.alerts_for("SPEED_DROP")), WAIT_S, "SPEED_DROP cleared", each=drive
    )

    # Oscillate the achieved speed around the threshold (0.3 m/s = 0.5 x 0.6): long enough below it to
    # raise (1.3 s > debounce 1.0 s), then briefly well above it (0.7 s < clear_s 1.5 s), four times.
    # The debounce/hysteresis must turn that into exactly one alert that does not clear in between.
    before = len(obs.alerts)
    for _ in range(4):
        for cap, seconds in ((0.2, 1.3), (0.45, 0.7)):
            obs.inject(InjectFault.Request.FAULT_SPEED_CAP, value=cap)
            phase_end = time.monotonic() + seconds
            while time.monotonic() < phase_end:
                drive()
                rclpy.spin_once(obs.node, timeout_sec=0.02)
    during = [a for _, a in obs.alerts[before:] if a.code == "SPEED_DROP"]
    print(f"\noscillating speed around the threshold for 8 s: {[a.active for a in during]} (True = raise)")
    assert [a.active for a in during] == [True], "one raise, no clear while the signal oscillates"


def test_malformed_tree_fails_at_start_naming_the_line(ros_domain: int, procs, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(CHECKS + "  - {name: gps, kind: gps_fix, topic: fix}\n")
    env = ros_env(ros_domain, {"PYTHONPATH": SRC + ":" + os.environ.get("PYTHONPATH", "")})
    child = procs.start(
        "health_bad",
        [
            sys.executable,
            "-m",
            "robot_platform.health.node",
            "--ros-args",
            "-p",
            "robot_id:=r1",
            "-p",
            f"checks_file:={bad}",
            "-p",
            "metrics_port:=0",
            "-p",
            "nats_url:=''",
        ],
        env=env,
    )
    assert child.wait(timeout=WAIT_S) == 2
    out = procs.child("health_bad").output()
    line = CHECKS.count("\n") + 1
    assert f"{bad}:{line}: health config error at checks[5].kind: unknown check kind 'gps_fix'" in out, out


def nats_request(url: str, subject: str, payload: dict[str, Any]) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        nc = await nats.connect(url)
        try:
            msg = await nc.request(subject, msgpack.packb(payload), timeout=5.0)
            return msgpack.unpackb(msg.data)
        finally:
            await nc.close()

    return asyncio.run(go())


def test_operator_silence_and_acknowledge_over_nats(rig: Rig) -> None:
    obs, url = rig.obs, rig.nats.url
    bad = nats_request(url, "robots.r1.health.silence", {"check": "no_such_check", "duration_s": 5, "user": "bob"})
    assert bad["success"] is False and "no_such_check" in bad["message"]
    res = nats_request(url, "robots.r1.health.silence", {"check": "scan_silent", "duration_s": 60, "user": "bob"})
    assert res["success"] is True, res
    obs.inject(InjectFault.Request.FAULT_SILENCE_SENSOR, target="scan")
    # The fault is detected (diagnostics ERROR) but, silenced, raises no alert.
    obs.spin_until(
        lambda: (s := obs.diag("sensors/scan_silent")) is not None and s.level == b"\x02",
        WAIT_S,
        "scan_silent ERROR on /diagnostics",
    )
    assert obs.alerts_for("TOPIC_SILENT.scan") == []
    assert metric_value(rig.metrics_port, "robot_health_check_silenced", "scan_silent") == 1.0
    # Lifting the silence while the fault holds raises the alert now.
    res = nats_request(url, "robots.r1.health.silence", {"check": "scan_silent", "duration_s": 0, "user": "bob"})
    assert res["success"] is True, res
    raised = obs.spin_until(lambda: obs.alerts_for("TOPIC_SILENT.scan"), WAIT_S, "alert after unsilence")[0]
    assert raised.active and not raised.acknowledged
    res = nats_request(url, "robots.r1.health.ack", {"alert_id": raised.alert_id, "user": "carol"})
    assert res["success"] is True, res
    obs.spin_until(
        lambda: any(a.acknowledged_by == "carol" for a in obs.alerts_for("TOPIC_SILENT.scan")), WAIT_S, "ack"
    )
    res = nats_request(url, "robots.r1.health.ack", {"alert_id": "not-an-alert", "user": "carol"})
    assert res["success"] is False
