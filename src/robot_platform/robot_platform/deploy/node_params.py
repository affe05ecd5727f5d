"""Parameters of ``deploy_service``: the node's interface as one table (see common/params.py).

Why a module of its own: the table (names, types, defaults, descriptions, ranges) reads best in one
place and keeps node.py to the ROS wiring. All read-only: the engine, store and links are built once
at start. config/robot.yaml repeats these defaults; test_param_tables.py holds the two equal.
"""

from __future__ import annotations

from robot_platform.common.params import REQUIRED, Param, ParamTable
from robot_platform.deploy.nats_adapter import INSTALLED_PERIOD_S

INT_MAX = 2**31 - 1
PARAMS: tuple[Param, ...] = (
    Param("robot_id", str, REQUIRED, "robot identity (statuses, NATS subjects)"),
    Param("install_root", str, "", "install directory root; empty: ~/.robot_platform/deploy/<robot_id>"),
    Param("s3_endpoint_url", str, "", "S3-compatible endpoint, e.g. http://127.0.0.1:8333; empty: AWS S3", site=True),
    Param("s3_bucket", str, "packages", "default bucket for requests without artifact_uri"),
    Param("s3_region", str, "us-east-1", "S3 region name"),
    Param("s3_credentials_file", str, "", "JSON file with access_key_id/secret_access_key"),
    Param("trusted_keys", list, (), "trusted Ed25519 public keys: PEM file paths or ed25519:<base64 raw key>"),
    Param("max_archive_mb", int, 256, "largest archive accepted", (1, INT_MAX)),
    Param("max_extracted_mb", int, 1024, "largest extracted size", (1, INT_MAX)),
    Param("max_files", int, 10000, "most files in one archive", (1, INT_MAX)),
    Param("keep_versions", int, 3, "versions kept on disk per package (active included)", (2, INT_MAX)),
    Param("download_retries", int, 4, "retries of a failed download (resumed)", (0, INT_MAX)),
    Param("install_step_timeout_s", float, 300.0, "timeout of each install step"),
    Param("nats_url", str, "", "NATS server for statuses and invocations; empty disables"),
    Param("status_queue_size", int, 100, "bounded NATS status queue (drop oldest)", (1, INT_MAX)),
    Param("installed_period_s", float, INSTALLED_PERIOD_S, "repeat of robots.<id>.deploy.installed"),
    Param("app_log_forward", bool, True, "publish apps' and functions' output lines on /rosout"),
    Param("app_log_rate", float, 50.0, "output lines/s forwarded per process (the rest: file only)"),
    Param("app_log_burst", int, 200, "output lines forwarded at once before the rate applies", (1, INT_MAX)),
    Param("app_log_max_line_bytes", int, 4096, "longer output lines are cut (and say so)", (80, INT_MAX)),
    Param("app_log_stderr_level", str, "info", "level of a stderr line naming none: info|warn"),
    Param("app_log_queue_size", int, 1000, "output records waiting for /rosout (drop oldest)", (1, INT_MAX)),
    Param("mqtt_endpoint", str, "", "IoT Jobs broker (site Mosquitto, AWS IoT Core); empty disables"),
    Param("mqtt_port", int, 8883, "MQTT/TLS port", (1, INT_MAX)),
    Param("mqtt_ca", str, "", "CA bundle (PEM) the broker's certificate must chain to"),
    Param("mqtt_cert", str, "", "this robot's client certificate (PEM; CN = thing name on site)"),
    Param("mqtt_key", str, "", "this robot's private key (PEM)"),
    Param("thing_name", str, "", "IoT thing name; empty: robot_id"),
    Param("mqtt_client_id", str, "", "MQTT client id; empty: deploy-<thing_name>"),
)
TABLE = ParamTable("deploy_service", PARAMS)
