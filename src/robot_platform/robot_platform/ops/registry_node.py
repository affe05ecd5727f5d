"""fleet_registry: the control server's registry of robots (thin rclpy glue over RegistryService).

Parameters (config/control.yaml, ``fleet_registry``): nats_url, nats_user, nats_password_file,
fleet_robots (robots accepted; empty: any robot the hub authenticated), offline_after_s,
sweep_period_s, log_stream_max_mb, log_stream_max_age_h, ha, export_capture_user/_role (as whom
``fleet.alerts.export`` asks a robot for its capture buffer).
No ROS topics: the registry lives in the hub's JetStream KV bucket ``FLEET_REGISTRY`` (read by
``robot-platform robots`` and the console); logs land in stream ``FLEET_LOGS``. For the console
(ws_agent's ``/fleet/registry/...`` and ``/fleet/logs/query``) it serves ``fleet.registry.list`` and
``fleet.logs.query`` and publishes ``fleet.registry.events`` (see registry_service.py). With the secured
hub config its NATS user is ``fleet_registry`` (``fleet_nats --service-users``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from pathlib import Path

from rclpy.node import Node

from robot_platform.common.event_loop import run_to_end
from robot_platform.common.node_main import spin_node
from robot_platform.common.params import Param, ParamTable, declare_params
from robot_platform.messaging.connect import Credentials
from robot_platform.ops.registry import OFFLINE_AFTER_S
from robot_platform.ops.registry_service import SWEEP_PERIOD_S, RegistryService

STOP_JOIN_TIMEOUT_S = 5.0

PARAMS: tuple[Param, ...] = (
    Param("nats_url", str, "nats://127.0.0.1:4222", "the hub"),
    Param("nats_user", str, "", "NATS user on the hub (fleet_registry with the secured configs)"),
    Param("nats_password_file", str, "", "file with the NATS password"),
    Param("fleet_robots", list, (), "robots accepted (empty: any the hub authenticated)"),
    Param("offline_after_s", float, OFFLINE_AFTER_S, "silence after which a robot is offline", (0.5, 86400.0)),
    Param("sweep_period_s", float, SWEEP_PERIOD_S, "offline check period", (0.1, 60.0)),
    Param("log_stream_max_mb", int, 1024, "size limit of FLEET_LOGS", (1, 10_000_000)),
    Param("log_stream_max_age_h", float, 336.0, "age limit of FLEET_LOGS", (0.01, 87600.0)),
    Param("ha", bool, False, "active/standby with other instances: serve only while holding the KV lease"),
    Param("export_capture_user", str, "fleet_registry", "alert exports: user named in robots' capture requests"),
    Param("export_capture_role", str, "exporter", "alert exports: role named in robots' capture requests"),
)
TABLE = ParamTable("fleet_registry", PARAMS)


class FleetRegistryNode(Node):
    def __init__(self) -> None:
        super().__init__("fleet_registry")
        p = declare_params(self, PARAMS)
        url, user, password_file, fleet = p["nats_url"], p["nats_user"], p["nats_password_file"], p["fleet_robots"]
        offline, sweep, max_mb, max_age_h = (
            p["offline_after_s"],
            p["sweep_period_s"],
            p["log_stream_max_mb"],
            p["log_stream_max_age_h"],
        )
        password = Path(password_file).read_text(encoding="utf-8").strip() if password_file else ""
        self.service = RegistryService(
            url,
            Credentials(user, password),
            fleet,
            float(offline),
            float(sweep),
            int(max_mb) * 1024 * 1024,
            float(max_age_h) * 3600.0,
            self.get_logger(),
            ha=bool(p["ha"]),
            export_capture_user=p["export_capture_user"],
            export_capture_role=p["export_capture_role"],
        )
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="fleet_registry", daemon=True)
        self._thread.start()
        self.get_logger().info(f"fleet_registry: hub {url}, offline after {offline:g}s, fleet {fleet or 'any'}")

    def _run(self) -> None:
        run_to_end(self._loop, self.service.run(self._stop))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STOP_JOIN_TIMEOUT_S)


def main(args: list[str] | None = None) -> int:
    return spin_node(FleetRegistryNode, args=args)


if __name__ == "__main__":
    sys.exit(main())
