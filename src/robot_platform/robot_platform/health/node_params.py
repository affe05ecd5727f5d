"""Parameters of ``health_monitor_tree``: declared with descriptors, read once into a frozen dataclass.

Why a module of its own: the node file wires ROS to the monitor; the parameter table (names, defaults,
descriptions, ranges) is the node's interface and reads best in one place. All parameters are read-only
(the tree, ports and transports are built once at start). config/robot.yaml repeats these defaults
(test_param_tables.py holds the two equal). See node.py's module docstring for what each one does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node

from robot_platform.common.params import REQUIRED, Param, ParamTable, declare_params
from robot_platform.health.nats_out import OUTBOX_MAX
from robot_platform.messaging import subjects

OUTBOX_FILE = "nats_outbox.sqlite3"


@dataclass(frozen=True)
class MqttParams:
    """Real-time alert push (``host`` "" disables it)."""

    host: str
    port: int
    client_id: str
    topic: str
    ca_file: str
    cert_file: str
    key_file: str


@dataclass(frozen=True)
class HealthParams:
    robot_id: str
    tick_rate_hz: float
    checks_file: str
    checks_yaml: str
    metrics_port: int
    diagnostics_period_s: float
    snapshot_rate_hz: float
    markers_frame_id: str
    nats_url: str
    nats_alert_stream: str
    state_dir: str
    outbox_durable: bool
    outbox_max: int
    persist_alerts: bool
    restart_grace_s: float
    mqtt: MqttParams

    def state_path(self) -> Path:
        """The per-robot state directory (outbox and active alerts)."""
        return Path(self.state_dir or f"~/.robot_platform/health/{self.robot_id}").expanduser()

    def outbox_path(self) -> Path | None:
        """SQLite file of the durable NATS outbox, or None when alerts are kept in memory only."""
        if not self.outbox_durable:
            return None
        return self.state_path() / OUTBOX_FILE

    def alert_state_dir(self) -> Path | None:
        """Where the active alerts are kept across restarts (alert_state), or None when disabled."""
        return self.state_path() if self.persist_alerts else None


PARAMS: tuple[Param, ...] = (
    Param("robot_id", str, REQUIRED, "Robot name (alerts, metrics)"),
    Param("tick_rate_hz", float, 5.0, "Tree ticks per second", (1.0, 50.0)),
    Param("checks_file", str, "", "YAML file describing the health tree ('' = the installed checks.yaml)"),
    Param("checks_yaml", str, "", "Health tree as YAML text (wins over checks_file)"),
    Param("metrics_port", int, 9101, "Prometheus port on 127.0.0.1 (0 disables)", (0, 65535)),
    Param("diagnostics_period_s", float, 1.0, "Max /diagnostics period (s)", (0.1, 60.0)),
    Param("snapshot_rate_hz", float, 1.0, "Tree snapshots to NATS per second", (0.1, 20.0)),
    Param("markers_frame_id", str, "base_link", "Frame of fault markers"),
    Param("nats_url", str, "nats://127.0.0.1:4222", "Robot NATS server ('' disables)"),
    # nats_bridge owns the robot's event stream (EVENTS_<id>, robots.<id>.alerts included): a second
    # stream on the same subject would be refused by JetStream.
    Param(
        "nats_alert_stream",
        str,
        "",
        "JetStream stream created for the alert subject if none captures it "
        "('' = none: EVENTS_<id> of nats_bridge stores alerts)",
    ),
    Param(
        "state_dir",
        str,
        "",
        "Per-robot state directory (alert outbox, active alerts); '' = ~/.robot_platform/health/<id>",
    ),
    Param("outbox_durable", bool, True, "Keep alerts waiting for NATS on disk (restarts)"),
    Param(
        "outbox_max", int, OUTBOX_MAX, "Alerts kept while NATS is unreachable (oldest dropped, counted)", (1, 100_000)
    ),
    Param("persist_alerts", bool, True, "Keep active alerts in state_dir so a restart re-uses or clears their ids"),
    Param(
        "restart_grace_s",
        float,
        10.0,
        "After a restart, how long (plus the check's debounce_s) a restored "
        "alert waits to be seen again before it is cleared",
        (0.0, 3600.0),
    ),
    Param("mqtt_host", str, "", "MQTT broker host for real-time alert push ('' disables)"),
    Param("mqtt_port", int, 1883, "MQTT broker port", (1, 65535)),
    Param("mqtt_client_id", str, "", "MQTT client id (AWS IoT: the thing name); '' = health-<robot_id>"),
    Param("mqtt_topic", str, "", "MQTT topic of alerts; '' = robots/<robot_id>/alerts"),
    Param("mqtt_ca_file", str, "", "CA bundle (PEM) for TLS; '' = plain TCP (on-site broker on loopback only)"),
    Param("mqtt_cert_file", str, "", "Client certificate (PEM) for mutual TLS"),
    Param("mqtt_key_file", str, "", "Client private key (PEM) for mutual TLS"),
)
TABLE = ParamTable("health_monitor_tree", PARAMS)


def read_health_params(node: Node) -> HealthParams:
    """Declare every parameter of :data:`PARAMS` on ``node`` and return the values."""
    p = declare_params(node, PARAMS)
    robot_id = subjects.check_robot_id(p["robot_id"])
    return HealthParams(
        robot_id=robot_id,
        tick_rate_hz=p["tick_rate_hz"],
        checks_file=p["checks_file"],
        checks_yaml=p["checks_yaml"],
        metrics_port=p["metrics_port"],
        diagnostics_period_s=p["diagnostics_period_s"],
        snapshot_rate_hz=p["snapshot_rate_hz"],
        markers_frame_id=p["markers_frame_id"],
        nats_url=p["nats_url"],
        nats_alert_stream=p["nats_alert_stream"],
        state_dir=p["state_dir"],
        outbox_durable=p["outbox_durable"],
        outbox_max=p["outbox_max"],
        persist_alerts=p["persist_alerts"],
        restart_grace_s=p["restart_grace_s"],
        mqtt=MqttParams(
            host=p["mqtt_host"],
            port=p["mqtt_port"],
            client_id=p["mqtt_client_id"] or f"health-{robot_id}",
            topic=p["mqtt_topic"] or f"robots/{robot_id}/alerts",
            ca_file=p["mqtt_ca_file"],
            cert_file=p["mqtt_cert_file"],
            key_file=p["mqtt_key_file"],
        ),
    )
