"""ROS 2 node ``ws_agent``: parameters and /diagnostics around :class:`~.server.WsAgent` (no ROS traffic).

The agent talks to browsers (WebSocket, rosbridge v2) and to NATS; it needs no ROS topic itself, so
the node is thin on purpose: it declares the parameters (one documented place: config/robot.yaml and
config/control.yaml, key ``/**/ws_agent``), starts the agent, reports counters on /diagnostics, and
stops everything on SIGINT/SIGTERM.

Parameters:
    robot_id (string, read-only)         robot mode: the robot served; fleet mode: only used in logs
    mode (string, read-only)             robot | fleet
    host, port (read-only)               bind address (127.0.0.1 by default) and port (9090)
    nats_url, nats_user, nats_password_file   NATS server and optional credentials (password from a file)
    users_file (string)                  users and roles YAML ('' = nobody can log in)
    anonymous_role (string)              role of clients without credentials ('' = they must log in)
    allowed_origins (string[])           extra browser origins allowed besides the agent's own; '*' = any
    allowed_hosts (string[])             Host names served besides loopback and a specific bind address
                                         (site names; '*' = any, i.e. no DNS-rebinding protection)
    max_pending_connections              connections accepted whose request is not complete; the oldest is cut
    handshake_timeout_s, auth_timeout_s  accept -> complete upgrade; upgrade -> auth op (without a token)
    login_max_failures_per_addr, login_max_failures_per_user, login_window_s, login_max_backoff_s,
    hash_workers                         failed-login limits of every login path; secret checks at once
    web_dir (string)                     static files ('' = share/robot_platform/web)
    site_map_file (string)               the console's site map: robots' origins, floor plan (site_map.py)
    tls_cert, tls_key (string)           PEM files; both set = HTTPS/WSS
    permessage_deflate (bool)            allow WebSocket compression (CPU per client and message)
    ping_interval_s, stall_timeout_s     keepalive pings; disconnect a client whose socket write hangs
    max_clients, max_frame_bytes, max_client_msgs_per_s, service_timeout_s
    default_queue_length, max_queue_length, max_queue_bytes, max_subscriptions   per-client queues
    frame_lease_ttl_s                    ttl of the agent's camera leases (one per watched camera, renewed ttl/3)
    diagnostics_period_s                 period of the /diagnostics report
Publishers: /diagnostics (diagnostic_msgs/DiagnosticArray).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.node import Node
from rclpy.parameter import Parameter

from robot_platform.common.node_main import spin_node
from robot_platform.common.params import declare
from robot_platform.exceptions import ConfigError

from .client_session import SessionLimits
from .gateway import GatewayLimits
from .server import GIL_SWITCH_INTERVAL_S, AgentConfig, LoginLimits, WsAgent
from .topics import Mode

DIAGNOSTICS_DEPTH = 10


def default_web_dir() -> str:
    """share/robot_platform/web when installed, else the repository's web/ (running from source)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        share = Path(get_package_share_directory("robot_platform")) / "web"
        if share.is_dir():
            return str(share)
    except (ImportError, PackageNotFoundError):
        pass
    return str(Path(__file__).resolve().parents[4] / "web")


class WsAgentNode(Node):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__("ws_agent")
        d = self._declare
        mode = str(d("mode", "robot", "robot (this robot's subjects) | fleet (all robots)", read_only=True))
        if mode not in ("robot", "fleet"):
            raise ConfigError("mode", mode, "robot or fleet")
        password_file = str(d("nats_password_file", "", "file holding the NATS password (never logged)"))
        config = AgentConfig(
            mode=Mode(mode),
            robot_id=str(d("robot_id", "r1", "robot id ([A-Za-z0-9_-])", read_only=True)),
            host=str(
                d("host", "127.0.0.1", "bind address; 127.0.0.1 unless a site network needs more", read_only=True)
            ),
            port=int(d("port", 9090, "HTTP/WebSocket port", read_only=True, min_value=1, max_value=65535)),
            nats_url=str(d("nats_url", "nats://127.0.0.1:4222", "NATS server", read_only=True)),
            nats_user=str(d("nats_user", "", "NATS user ('' = none)", read_only=True)),
            nats_password=Path(password_file).read_text().strip() if password_file else "",
            users_file=str(d("users_file", "", "users/roles YAML ('' = no users)", read_only=True)),
            anonymous_role=str(d("anonymous_role", "", "role without login ('' = login required)", read_only=True)),
            allowed_origins=self._strings("allowed_origins", "extra allowed browser origins ('*' = any)"),
            allowed_hosts=self._strings("allowed_hosts", "Host names served besides loopback (site names)"),
            max_pending_connections=int(
                d(
                    "max_pending_connections",
                    128,
                    "accepted connections without a complete request",
                    read_only=True,
                    min_value=1,
                    max_value=100000,
                )
            ),
            handshake_timeout_s=float(
                d(
                    "handshake_timeout_s",
                    5.0,
                    "accept to complete upgrade",
                    read_only=True,
                    min_value=0.1,
                    max_value=600.0,
                )
            ),
            auth_timeout_s=float(
                d(
                    "auth_timeout_s",
                    10.0,
                    "upgrade to auth op (no token)",
                    read_only=True,
                    min_value=0.1,
                    max_value=3600.0,
                )
            ),
            logins=LoginLimits(
                max_failures_per_addr=int(
                    d(
                        "login_max_failures_per_addr",
                        10,
                        "failed logins of an address before backoff",
                        read_only=True,
                        min_value=1,
                        max_value=1000000,
                    )
                ),
                max_failures_per_user=int(
                    d(
                        "login_max_failures_per_user",
                        5,
                        "failed logins of a user before per-address backoff",
                        read_only=True,
                        min_value=1,
                        max_value=1000000,
                    )
                ),
                window_s=float(
                    d(
                        "login_window_s",
                        60.0,
                        "failures are forgotten this long after the last one",
                        read_only=True,
                        min_value=1.0,
                        max_value=86400.0,
                    )
                ),
                max_backoff_s=float(
                    d(
                        "login_max_backoff_s",
                        300.0,
                        "longest login backoff",
                        read_only=True,
                        min_value=1.0,
                        max_value=86400.0,
                    )
                ),
                hash_workers=int(
                    d(
                        "hash_workers",
                        2,
                        "secret checks at once (16 MB each)",
                        read_only=True,
                        min_value=1,
                        max_value=16,
                    )
                ),
            ),
            web_dir=str(d("web_dir", "", "static files ('' = share/robot_platform/web)", read_only=True))
            or default_web_dir(),
            site_map_file=str(d("site_map_file", "", "site map YAML/JSON ('' = none)", read_only=True)),
            tls_cert=str(d("tls_cert", "", "PEM certificate ('' = plain HTTP)", read_only=True)),
            tls_key=str(d("tls_key", "", "PEM private key", read_only=True)),
            permessage_deflate=bool(d("permessage_deflate", False, "allow WebSocket compression", read_only=True)),
            ping_interval_s=float(
                d(
                    "ping_interval_s",
                    25.0,
                    "keepalive ping period (0 = off)",
                    read_only=True,
                    min_value=0.0,
                    max_value=3600.0,
                )
            ),
            stall_timeout_s=float(
                d(
                    "stall_timeout_s",
                    30.0,
                    "disconnect a client whose write hangs this long",
                    read_only=True,
                    min_value=1.0,
                    max_value=3600.0,
                )
            ),
            frame_lease_ttl_s=float(
                d("frame_lease_ttl_s", 5.0, "ttl of camera leases", read_only=True, min_value=0.5, max_value=3600.0)
            ),
            max_clients=int(
                d("max_clients", 100, "concurrent WebSocket clients", read_only=True, min_value=1, max_value=10000)
            ),
            gateway=GatewayLimits(
                max_frame_bytes=int(
                    d(
                        "max_frame_bytes",
                        1024 * 1024,
                        "largest client frame",
                        read_only=True,
                        min_value=1024,
                        max_value=64 * 1024 * 1024,
                    )
                ),
                max_client_msgs_per_s=float(
                    d(
                        "max_client_msgs_per_s",
                        200.0,
                        "client message rate (0 = no limit)",
                        read_only=True,
                        min_value=0.0,
                        max_value=1e6,
                    )
                ),
                service_timeout_s=float(
                    d("service_timeout_s", 5.0, "call_service timeout", read_only=True, min_value=0.1, max_value=600.0)
                ),
            ),
            session=SessionLimits(
                default_queue_length=int(
                    d(
                        "default_queue_length",
                        100,
                        "queue when subscribe says 0",
                        read_only=True,
                        min_value=1,
                        max_value=10000,
                    )
                ),
                max_queue_length=int(
                    d(
                        "max_queue_length",
                        100,
                        "cap of a subscription's queue",
                        read_only=True,
                        min_value=1,
                        max_value=100000,
                    )
                ),
                max_queue_bytes=int(
                    d(
                        "max_queue_bytes",
                        8 * 1024 * 1024,
                        "pending bytes per client",
                        read_only=True,
                        min_value=1024,
                        max_value=1 << 31,
                    )
                ),
                max_subscriptions=int(
                    d("max_subscriptions", 256, "topics per client", read_only=True, min_value=1, max_value=100000)
                ),
            ),
        )
        period = float(d("diagnostics_period_s", 2.0, "period of /diagnostics", min_value=0.1, max_value=3600.0))
        self._diag = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_DEPTH)
        self.agent = WsAgent(config, self.get_logger())
        self.agent.start()
        self.create_timer(period, self._report)

    def _declare(self, name: str, default: Any, description: str, **kwargs: Any) -> Any:
        return declare(self, name, default, description, **kwargs)

    def _strings(self, name: str, description: str) -> list[str]:
        desc = ParameterDescriptor(type=ParameterType.PARAMETER_STRING_ARRAY, description=description, read_only=True)
        value = self.declare_parameter(name, Parameter.Type.STRING_ARRAY, desc).value
        return [v for v in (value or []) if v]

    def _report(self) -> None:
        stats = self.agent.stats()
        hub, gw = stats["hub"], stats["gateway"]
        values = {
            "clients": hub["clients"],
            "subjects": hub["subjects"],
            "received": hub["received"],
            "offered": hub["offered"],
            "dropped": hub["dropped"],
            "frames_in": gw["frames"],
            "commands": gw["commands"],
            "service_calls": gw["service_calls"],
            "audit_events": stats["audit_events"],
            "nats_connected": stats["nats_connected"],
            "camera_leases": len(stats["leases"]["held"]),
            "lease_failures": stats["leases"]["failures"],
        }
        for key in ("sent", "received", "dropped_outbox", "dropped_slow_consumer", "connects", "disconnects",
                    "requests", "request_failures"):  # fmt: skip
            values[f"nats.{key}"] = stats["nats"][key]
        for kind, n in {**hub["errors"], **gw["errors"]}.items():
            values[f"errors.{kind}"] = n
        for kind, n in stats["refused"].items():
            values[f"refused.{kind}"] = n
        level = DiagnosticStatus.OK if stats["nats_connected"] else DiagnosticStatus.WARN
        status = DiagnosticStatus(
            level=level,
            name=f"ws_agent: {self.agent.config.robot_id}",
            message="NATS connected" if stats["nats_connected"] else "NATS not connected",
            hardware_id=self.agent.config.robot_id,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag.publish(array)

    def close(self) -> None:
        """Called by spin_node before destroy_node: stop server, clients, NATS."""
        self.agent.stop()


def main(args: list[str] | None = None) -> int:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # see server.GIL_SWITCH_INTERVAL_S
    return spin_node(WsAgentNode, args)


if __name__ == "__main__":
    sys.exit(main())
