"""Parameters of ``health_monitor_tree``: declared with descriptors, read once into a frozen dataclass.

Why a module of its own: the node file wires ROS to the monitor; the parameter table (names, defaults,
descriptions, ranges) is the node's interface and reads best in one place. All parameters are read-only
(the tree, ports and transports are built once at start). Defaults live in config/robot.yaml; the
values here are what the node uses without it. See node.py's module docstring for what each one does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node

from robot_platform.common.params import declare
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


def declare_params(node: Node) -> HealthParams:
    """Declare every parameter on ``node`` (read-only, with descriptor and range) and return the values."""

    def ro(name: str, default: object, description: str, lo: float | None = None, hi: float | None = None) -> object:
        return declare(node, name, default, description, read_only=True, min_value=lo, max_value=hi)

    robot_id = str(ro("robot_id", "r1", "Robot name (alerts, metrics)"))
    subjects.check_robot_id(robot_id)
    return HealthParams(
        robot_id=robot_id,
        tick_rate_hz=float(ro("tick_rate_hz", 5.0, "Tree ticks per second", 1.0, 50.0)),
        checks_file=str(ro("checks_file", "", "YAML file describing the health tree")),
        checks_yaml=str(ro("checks_yaml", "", "Health tree as YAML text (wins over checks_file)")),
        metrics_port=int(ro("metrics_port", 9101, "Prometheus port on 127.0.0.1 (0 disables)", 0, 65535)),
        diagnostics_period_s=float(ro("diagnostics_period_s", 1.0, "Max /diagnostics period (s)", 0.1, 60.0)),
        snapshot_rate_hz=float(ro("snapshot_rate_hz", 1.0, "Tree snapshots to NATS per second", 0.1, 20.0)),
        markers_frame_id=str(ro("markers_frame_id", "base_link", "Frame of fault markers")),
        nats_url=str(ro("nats_url", "nats://127.0.0.1:4222", "Robot NATS server ('' disables)")),
        nats_alert_stream=str(
            ro(
                "nats_alert_stream",
                f"ALERTS_{robot_id}",
                "JetStream stream created for the alert subject if none captures it",
            )
        ),
        state_dir=str(
            ro(
                "state_dir",
                "",
                "Per-robot state directory (alert outbox, active alerts); '' = ~/.robot_platform/health/<id>",
            )
        ),
        outbox_durable=bool(ro("outbox_durable", True, "Keep alerts waiting for NATS on disk (restarts)")),
        outbox_max=int(
            ro("outbox_max", OUTBOX_MAX, "Alerts kept while NATS is unreachable (oldest dropped, counted)", 1, 100_000)
        ),
        persist_alerts=bool(
            ro("persist_alerts", True, "Keep active alerts in state_dir so a restart re-uses or clears their ids")
        ),
        restart_grace_s=float(
            ro(
                "restart_grace_s",
                10.0,
                "After a restart, how long (plus the check's debounce_s) a restored alert waits to be seen again "
                "before it is cleared",
                0.0,
                3600.0,
            )
        ),
        mqtt=MqttParams(
            host=str(ro("mqtt_host", "", "MQTT broker host for real-time alert push ('' disables)")),
            port=int(ro("mqtt_port", 1883, "MQTT broker port")),
            client_id=str(ro("mqtt_client_id", f"health-{robot_id}", "MQTT client id (AWS IoT: the thing name)")),
            topic=str(ro("mqtt_topic", f"robots/{robot_id}/alerts", "MQTT topic of alerts")),
            ca_file=str(
                ro("mqtt_ca_file", "", "CA bundle (PEM) for TLS; '' = plain TCP (on-site broker on loopback only)")
            ),
            cert_file=str(ro("mqtt_cert_file", "", "Client certificate (PEM) for mutual TLS")),
            key_file=str(ro("mqtt_key_file", "", "Client private key (PEM) for mutual TLS")),
        ),
    )
