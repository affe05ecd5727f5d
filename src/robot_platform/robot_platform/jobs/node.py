"""jobs_service: the AWS IoT Jobs server role for the site, as a ROS node for parameters only.

Why a node at all: the control server starts every service the same way (launch file, pip-only runner,
containers: ``jobs_service --ros-args --params-file control.yaml -p ...``), so parameters come from the
same YAML with descriptors. No topics or services: the API is NATS (:mod:`.nats_api`) and the devices
speak MQTT (:mod:`robot_platform.mqtt`); the logic is plain Python (:mod:`.runtime`, :mod:`.service`).

Parameters (read-only; the table PARAMS below, repeated in config/control.yaml):
    store_path (string): SQLite file of jobs and executions (``~`` expanded).
    nats_url (string): NATS for the console API (``jobs.create|get|list|cancel``, ``jobs.events``);
        empty disables. Credentials never go in the URL (it is logged): nats_user (string) and
        nats_password_file (string, a file holding the password; the secured hub's ``jobs`` user).
    mqtt_endpoint (string), mqtt_port (int), mqtt_ca, mqtt_cert, mqtt_key (PEM paths), mqtt_client_id
        (string): the site broker, with the service's client certificate (CN ``jobs-service``, the ACL's
        user). Empty endpoint: no devices (API only).
    host (string): address of the metrics endpoint (127.0.0.1; a container sets 0.0.0.0).
    metrics_port (int): Prometheus ``/metrics`` (0 disables).
    ha (bool): active/standby with other instances (jobs/ha.py): serve only while holding the lease in
        the hub's KV; every committed row is replicated to the KV bucket JOBS_STATE.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from rclpy.node import Node

from robot_platform.common.node_main import spin_node
from robot_platform.common.params import Param, ParamTable, declare_params
from robot_platform.exceptions import ConfigError
from robot_platform.jobs.runtime import JobsConfig, JobsRuntime

PARAMS: tuple[Param, ...] = (
    Param("store_path", str, "~/.robot_platform/jobs/jobs.sqlite3", "SQLite file of jobs and executions"),
    Param("nats_url", str, "nats://127.0.0.1:4222", "NATS for the console API; empty disables"),
    Param("nats_user", str, "", "NATS user ('' = none)"),
    Param("nats_password_file", str, "", "file holding the NATS password (never logged)"),
    Param("mqtt_endpoint", str, "", "site MQTT broker (TLS); empty: no devices (API only)"),
    Param("mqtt_port", int, 8883, "broker TLS port", (1, 65535)),
    Param("mqtt_ca", str, "", "site CA (PEM) the broker's certificate chains to"),
    Param("mqtt_cert", str, "", "the service's client certificate (CN jobs-service)"),
    Param("mqtt_key", str, "", "the service's private key"),
    Param("mqtt_client_id", str, "jobs-service", "MQTT client id"),
    Param("packages_bucket", str, "", "S3 bucket of signed packages listed by jobs.catalogue; empty: none"),
    Param("s3_endpoint_url", str, "", "S3 endpoint of the packages bucket (empty: AWS)"),
    Param("s3_region", str, "us-east-1", "S3 region"),
    Param("s3_credentials_file", str, "", "JSON {access_key_id, secret_access_key} (read-only is enough)"),
    Param("host", str, "127.0.0.1", "bind address of the metrics endpoint"),
    Param("metrics_port", int, 9203, "Prometheus /metrics port; 0 disables", (0, 65535)),
    Param("ha", bool, False, "active/standby: serve only while holding the NATS KV lease; state replicated to KV"),
)
TABLE = ParamTable("jobs_service", PARAMS)


class JobsServiceNode(Node):
    """Declares the parameters and runs :class:`JobsRuntime` (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__("jobs_service")
        values: dict[str, Any] = dict(declare_params(self, PARAMS))
        password_file = values.pop("nats_password_file")
        try:
            password = Path(password_file).read_text(encoding="utf-8").strip() if password_file else ""
        except OSError as exc:
            raise ConfigError("nats_password_file", password_file, f"unreadable ({exc.strerror})") from exc
        self.runtime = JobsRuntime(JobsConfig(**values, nats_password=password))
        self.runtime.start()
        self.get_logger().info(
            f"jobs_service ready: store={values['store_path']} nats={values['nats_url'] or 'off'} "
            f"mqtt={values['mqtt_endpoint'] or 'off'}:{values['mqtt_port']} metrics={values['metrics_port'] or 'off'}"
        )

    def close(self) -> None:
        self.runtime.close()


def main(args: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return spin_node(JobsServiceNode, args)


if __name__ == "__main__":
    sys.exit(main())
