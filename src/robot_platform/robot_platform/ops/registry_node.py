"""fleet_registry: the control server's registry of robots (thin rclpy glue over RegistryService).

Parameters (config/control.yaml, ``fleet_registry``): nats_url, nats_user, nats_password_file,
fleet_robots (robots accepted; empty: any robot the hub authenticated), offline_after_s,
sweep_period_s, log_stream_max_mb, log_stream_max_age_h.
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

import rclpy
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.node import Node
from rclpy.parameter import Parameter

from robot_platform.common.event_loop import run_to_end
from robot_platform.common.node_main import spin_node
from robot_platform.common.params import declare
from robot_platform.messaging.connect import Credentials

from .registry import OFFLINE_AFTER_S
from .registry_service import SWEEP_PERIOD_S, RegistryService

STOP_JOIN_TIMEOUT_S = 5.0


class FleetRegistryNode(Node):
    def __init__(self) -> None:
        super().__init__("fleet_registry")
        url = declare(self, "nats_url", "nats://127.0.0.1:4222", "the hub", read_only=True)
        user = declare(self, "nats_user", "", "NATS user on the hub (control)", read_only=True)
        password_file = declare(self, "nats_password_file", "", "file with the NATS password", read_only=True)
        descriptor = ParameterDescriptor(
            type=ParameterType.PARAMETER_STRING_ARRAY,
            read_only=True,
            description="robots accepted (empty: any the hub authenticated)",
        )
        self.declare_parameter("fleet_robots", Parameter.Type.STRING_ARRAY, descriptor)
        try:
            fleet = [r for r in (self.get_parameter("fleet_robots").value or []) if r]
        except rclpy.exceptions.ParameterUninitializedException:
            fleet = []
        offline = declare(self, "offline_after_s", OFFLINE_AFTER_S, "silence after which a robot is offline",
                          read_only=True, min_value=0.5, max_value=86400.0)  # fmt: skip
        sweep = declare(self, "sweep_period_s", SWEEP_PERIOD_S, "offline check period", read_only=True,
                        min_value=0.1, max_value=60.0)  # fmt: skip
        max_mb = declare(self, "log_stream_max_mb", 1024, "size limit of FLEET_LOGS", read_only=True,
                         min_value=1, max_value=10_000_000)  # fmt: skip
        max_age_h = declare(self, "log_stream_max_age_h", 336.0, "age limit of FLEET_LOGS", read_only=True,
                            min_value=0.01, max_value=87600.0)  # fmt: skip
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
