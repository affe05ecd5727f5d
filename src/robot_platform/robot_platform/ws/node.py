"""ROS 2 node ``ws_agent``: parameters and /diagnostics around :class:`~.server.WsAgent` (no ROS traffic).

The agent talks to browsers (WebSocket, rosbridge v2) and to NATS; it needs no ROS topic itself, so
the node is thin on purpose: it declares the parameters (the table PARAMS below, repeated in
config/robot.yaml and config/control.yaml, key ``/**/ws_agent``), starts the agent, reports counters on
/diagnostics, and stops everything on SIGINT/SIGTERM.

Parameters:
    robot_id (string, required)          robot mode: the robot served; fleet mode: only used in logs
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
    max_clients, max_clients_per_user, max_frame_bytes, max_client_msgs_per_s, service_timeout_s
    default_queue_length, max_queue_length, max_queue_bytes, max_subscriptions   per-client queues
    frame_lease_ttl_s                    ttl of the agent's camera leases (one per watched camera, renewed ttl/3)
    foxglove, foxglove_bridge_config     serve the Foxglove WebSocket protocol next to rosbridge; its channels,
                                         commands and services come from the nats_bridge params file given
                                         ('' = the installed config/robot.yaml; see foxglove_catalog.py)
    overview_topics, overview_rate_hz    ROS topics the robots' bridges also send decimated on
                                         robots.<id>.overview.<topic> (out.<n>.overview_rate_hz) and that
                                         rate: clients all throttled to >= its period get that copy
                                         (ws/overview.py); control.yaml: [/odom] at 2 Hz, robot mode: none
    diagnostics_period_s                 period of the /diagnostics report
Publishers: /diagnostics (diagnostic_msgs/DiagnosticArray).
"""

from __future__ import annotations

import sys
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from robot_platform.common.node_main import spin_node
from robot_platform.common.params import REQUIRED, Param, ParamTable, declare_params
from robot_platform.exceptions import ConfigError
from robot_platform.ws.client_session import SessionLimits
from robot_platform.ws.gateway import GatewayLimits
from robot_platform.ws.server import GIL_SWITCH_INTERVAL_S, AgentConfig, LoginLimits, WsAgent
from robot_platform.ws.topics import Mode

DIAGNOSTICS_DEPTH = 10
MIB = 1024 * 1024

PARAMS: tuple[Param, ...] = (
    Param("mode", str, "robot", "robot (this robot's subjects) | fleet (all robots)", control="fleet"),
    Param("robot_id", str, REQUIRED, "robot id ([A-Za-z0-9_-]); fleet mode: only used in logs"),
    Param("host", str, "127.0.0.1", "bind address; 127.0.0.1 unless a site network needs more"),
    Param("port", int, 9090, "HTTP/WebSocket port", (1, 65535)),
    Param("nats_url", str, "nats://127.0.0.1:4222", "NATS server"),
    Param("nats_user", str, "", "NATS user ('' = none)"),
    Param("nats_password_file", str, "", "file holding the NATS password (never logged)"),
    Param("users_file", str, "", "users/roles YAML ('' = no users)"),
    Param("anonymous_role", str, "", "role without login ('' = login required)"),
    Param("allowed_origins", list, (), "extra allowed browser origins ('*' = any)"),
    Param("allowed_hosts", list, (), "Host names served besides loopback (site names)"),
    Param("max_pending_connections", int, 128, "accepted connections without a complete request", (1, 100000)),
    Param("handshake_timeout_s", float, 5.0, "accept to complete upgrade", (0.1, 600.0)),
    Param("auth_timeout_s", float, 10.0, "upgrade to auth op (no token)", (0.1, 3600.0)),
    Param("login_max_failures_per_addr", int, 10, "failed logins of an address before backoff", (1, 1000000)),
    Param("login_max_failures_per_user", int, 5, "failed logins of a user before per-address backoff", (1, 1000000)),
    Param("login_window_s", float, 60.0, "failures are forgotten this long after the last one", (1.0, 86400.0)),
    Param("login_max_backoff_s", float, 300.0, "longest login backoff", (1.0, 86400.0)),
    Param("hash_workers", int, 2, "secret checks at once (16 MB each)", (1, 16)),
    Param("web_dir", str, "", "static files ('' = share/robot_platform/web)"),
    Param("site_map_file", str, "", "site map YAML/JSON ('' = none)"),
    Param("tls_cert", str, "", "PEM certificate ('' = plain HTTP)"),
    Param("tls_key", str, "", "PEM private key"),
    Param("permessage_deflate", bool, False, "allow WebSocket compression"),
    Param("ping_interval_s", float, 25.0, "keepalive ping period (0 = off)", (0.0, 3600.0)),
    Param("stall_timeout_s", float, 30.0, "disconnect a client whose write hangs this long", (1.0, 3600.0)),
    Param("frame_lease_ttl_s", float, 5.0, "ttl of camera leases", (0.5, 3600.0)),
    # A robot's touch panel and a few remote viewers; the control server's console serves the fleet's operators.
    Param("max_clients", int, 20, "concurrent WebSocket clients", (1, 10000), control=100),
    # one login cannot take every slot (a leaked viewer secret must not lock the operators out)
    Param("max_clients_per_user", int, 8, "concurrent clients of one user (0 = no limit)", (0, 10000), control=32),
    Param("max_frame_bytes", int, MIB, "largest client frame", (1024, 64 * MIB)),
    Param("max_client_msgs_per_s", float, 200.0, "client message rate (0 = no limit)", (0.0, 1e6)),
    Param("service_timeout_s", float, 5.0, "call_service timeout", (0.1, 600.0)),
    Param("default_queue_length", int, 100, "queue when subscribe says 0", (1, 10000)),
    Param("max_queue_length", int, 100, "cap of a subscription's queue", (1, 100000)),
    Param("max_queue_bytes", int, 8 * MIB, "pending bytes per client", (1024, 1 << 31)),
    # The console watches every robot's topics at once.
    Param("max_subscriptions", int, 256, "topics per client", (1, 100000), control=1024),
    Param("foxglove", bool, True, "serve foxglove.websocket.v1 on /ws too (Foxglove, Lichtblick)"),
    Param("foxglove_bridge_config", str, "", "nats_bridge params YAML ('' = installed config/robot.yaml)"),
    # The fleet overview's odometry (500 ms) from robots.<id>.overview.odom: a tenth of the leaf link and intake.
    Param("overview_topics", list, (), "topics robots also send decimated (overview)", control=("/odom",)),
    Param("overview_rate_hz", float, 2.0, "rate of the robots' overview copies", (0.01, 1000.0)),
    Param("diagnostics_period_s", float, 2.0, "period of /diagnostics", (0.1, 3600.0), read_only=False),
)
TABLE = ParamTable("ws_agent", PARAMS)


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


def default_bridge_config() -> str:
    """config/robot.yaml next to web/ (installed share dir, or the repository when running from source)."""
    return str(Path(default_web_dir()).parent / "config" / "robot.yaml")


class WsAgentNode(Node):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__("ws_agent")
        p = declare_params(self, PARAMS)
        if p["mode"] not in ("robot", "fleet"):
            raise ConfigError("mode", p["mode"], "robot or fleet")
        password_file = p["nats_password_file"]
        config = AgentConfig(
            mode=Mode(p["mode"]),
            robot_id=p["robot_id"],
            host=p["host"],
            port=p["port"],
            nats_url=p["nats_url"],
            nats_user=p["nats_user"],
            nats_password=Path(password_file).read_text().strip() if password_file else "",
            users_file=p["users_file"],
            anonymous_role=p["anonymous_role"],
            allowed_origins=p["allowed_origins"],
            allowed_hosts=p["allowed_hosts"],
            max_pending_connections=p["max_pending_connections"],
            handshake_timeout_s=p["handshake_timeout_s"],
            auth_timeout_s=p["auth_timeout_s"],
            logins=LoginLimits(
                max_failures_per_addr=p["login_max_failures_per_addr"],
                max_failures_per_user=p["login_max_failures_per_user"],
                window_s=p["login_window_s"],
                max_backoff_s=p["login_max_backoff_s"],
                hash_workers=p["hash_workers"],
            ),
            web_dir=p["web_dir"] or default_web_dir(),
            foxglove_bridge_config=self._bridge_config(p) if p["foxglove"] else "",
            site_map_file=p["site_map_file"],
            tls_cert=p["tls_cert"],
            tls_key=p["tls_key"],
            permessage_deflate=p["permessage_deflate"],
            ping_interval_s=p["ping_interval_s"],
            stall_timeout_s=p["stall_timeout_s"],
            frame_lease_ttl_s=p["frame_lease_ttl_s"],
            overview_topics=[t for t in p["overview_topics"] if t],
            overview_rate_hz=p["overview_rate_hz"],
            max_clients=p["max_clients"],
            max_clients_per_user=p["max_clients_per_user"],
            gateway=GatewayLimits(
                max_frame_bytes=p["max_frame_bytes"],
                max_client_msgs_per_s=p["max_client_msgs_per_s"],
                service_timeout_s=p["service_timeout_s"],
            ),
            session=SessionLimits(
                default_queue_length=p["default_queue_length"],
                max_queue_length=p["max_queue_length"],
                max_queue_bytes=p["max_queue_bytes"],
                max_subscriptions=p["max_subscriptions"],
            ),
        )
        period = p["diagnostics_period_s"]
        self._diag = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_DEPTH)
        self.agent = WsAgent(config, self.get_logger())
        self.agent.start()
        self.create_timer(period, self._report)

    def _bridge_config(self, p: dict) -> str:
        """The given file (missing: the agent refuses to start, naming it), else the installed robot.yaml;
        without that (a trimmed install) Foxglove is off with a warning, rosbridge unaffected."""
        if p["foxglove_bridge_config"]:
            return p["foxglove_bridge_config"]
        path = default_bridge_config()
        if not Path(path).is_file():
            self.get_logger().warning(f"Foxglove protocol off: no {path}; set foxglove_bridge_config")
            return ""
        return path

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
