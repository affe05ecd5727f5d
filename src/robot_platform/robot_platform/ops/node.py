"""robot_agent: the robot's side of remote operations (one small node, four duties).

Why one node: the announcer, the /rosout forwarder, the rolling capture buffer and the remote-action
server all need the robot's identity, its local NATS connection and a view of the ROS graph; one
process with one NATS connection is cheaper on a 2-core robot than four. The reverse SSH tunnel is an
``autossh`` child this node supervises (stopped with it), so enabling remote access is one parameter.

Parameters (the table :data:`PARAMS`, :data:`TUNNEL_PARAMS`; config/robot.yaml, ``robot_agent``):
robot_id (required), site, nats_url, nats_user, nats_password_file, announce_period_s, capabilities,
report_packages, deploy_install_root, log_min_level, log_stream_max_mb, log_stream_max_age_h,
capture_topics, capture_window_s, capture_max_mb, capture_reply_max_mb, allowed_actions, roles_file,
tunnel.* (enable, bastion_host, bastion_port, bastion_user, remote_port, key_file, known_hosts,
local_ssh_port, autossh).
Subscriptions: /rosout (rcl_interfaces/msg/Log, reliable, transient local, depth 100); each capture
topic (raw CDR, best effort, depth 10; read by a thread of its own, bridge/ros_reader.py).
NATS: publishes robots.<id>.presence (JSON) and robots.<id>.logs.<level> (stream LOGS_<id>); serves
robots.<id>.ops.<action> (see ops/actions.py). Captures are MCAP files whose schemas come from the
``.msg`` files of the ament index (robot_platform.recording).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import Log
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from robot_platform.bridge.ros_reader import OutReader
from robot_platform.common.node_main import spin_node
from robot_platform.common.params import REQUIRED, Param, ParamTable, declare_params, prefixed
from robot_platform.exceptions import ConfigError
from robot_platform.messaging.connect import Credentials
from robot_platform.messaging.errors import BridgeError, SubjectError
from robot_platform.messaging.rostypes import TypeRegistry
from robot_platform.messaging.subjects import check_robot_id, check_token
from robot_platform.ops import logs
from robot_platform.ops.actions import ACTIONS, ActionDispatcher, RollingBuffer, build_capture
from robot_platform.ops.agent import AgentLink, AgentSettings
from robot_platform.ops.errors import ActionError, ActionUnavailableError
from robot_platform.ops.operator_roles import Roles
from robot_platform.ops.registry import ANNOUNCE_PERIOD_S, Announcement, deployed_versions, package_versions
from robot_platform.ops.tunnel import AUTOSSH_ENV, TunnelSpec, autossh_argv
from robot_platform.recording.msgdefs import MessageDefinitions

ROSOUT_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RESOLVE_PERIOD_S = 2.0
TUNNEL_CHECK_PERIOD_S = 5.0
TUNNEL_STOP_TIMEOUT_S = 5.0
RESTART_TIMEOUT_S = 20.0

PARAMS: tuple[Param, ...] = (
    Param("robot_id", str, REQUIRED, "robot identity"),
    Param("site", str, "", "site name shown in the registry", site=True),
    Param("nats_url", str, "nats://127.0.0.1:4222", "the robot's local nats-server"),
    Param("nats_user", str, "", "NATS user (empty: none)"),
    Param("nats_password_file", str, "", "file with the NATS password"),
    Param("announce_period_s", float, ANNOUNCE_PERIOD_S, "presence period", (0.2, 300.0)),
    Param("capabilities", list, (), "capabilities announced (e.g. camera, deploy)", site=True),
    Param("report_packages", list, (), "Python distributions whose versions are announced", site=True),
    Param(
        "deploy_install_root",
        str,
        "",
        "deploy_service's install_root, whose active package versions are "
        "announced; empty: its default ~/.robot_platform/deploy/<robot_id>",
    ),
    Param("log_min_level", str, "info", "lowest level forwarded", read_only=False),
    Param("log_stream_max_mb", int, 64, "size limit of LOGS_<id> on the robot", (1, 100000)),
    Param("log_stream_max_age_h", float, 72.0, "age limit of LOGS_<id> on the robot", (0.01, 8760.0)),
    Param("capture_topics", list, (), "topics kept in the rolling capture buffer", site=True),
    Param("capture_window_s", float, 30.0, "seconds kept per topic", (1.0, 600.0)),
    Param("capture_max_mb", int, 64, "capture buffer memory limit (drop oldest)", (1, 4096)),
    Param("capture_reply_max_mb", int, 4, "largest capture (MCAP) file sent", (1, 64)),
    Param("allowed_actions", list, ACTIONS, f"remote actions served (of {', '.join(ACTIONS)})"),
    Param("roles_file", str, "", "roles file (YAML); empty: every action refused"),
)
TUNNEL_PARAMS: tuple[Param, ...] = (  # tunnel.<name>
    Param("enable", bool, False, "keep a reverse SSH tunnel to the bastion"),
    Param("bastion_host", str, "127.0.0.1", "bastion host"),
    Param("bastion_port", int, 22, "bastion sshd port", (1, 65535)),
    Param("bastion_user", str, "rptunnel", "bastion tunnel account"),
    Param("remote_port", int, 2201, "port this robot holds on the bastion", (1, 65535)),
    Param("key_file", str, "", "this robot's tunnel private key"),
    Param("known_hosts", str, "", "known_hosts with the bastion's key"),
    Param("local_ssh_port", int, 22, "the robot's own sshd port", (1, 65535)),
    Param("autossh", str, "autossh", "autossh executable"),
)
TABLE = ParamTable("robot_agent", PARAMS + prefixed("tunnel", TUNNEL_PARAMS))


class RobotAgentNode(Node):
    """ROS glue of robot_agent (see the module docstring for its interface)."""

    def __init__(self) -> None:
        super().__init__("robot_agent")
        self.started = time.monotonic()
        p = declare_params(self, PARAMS)
        self.robot_id = check_robot_id(p["robot_id"])
        self.site = p["site"]
        nats_url, nats_user, password_file = p["nats_url"], p["nats_user"], p["nats_password_file"]
        self.period = p["announce_period_s"]
        self.capabilities, self.report_packages = p["capabilities"], p["report_packages"]
        install_root = p["deploy_install_root"]
        self.deploy_root = Path(os.path.expanduser(install_root or f"~/.robot_platform/deploy/{self.robot_id}"))
        self.min_level = logs.LEVELS[logs.parse_level(p["log_min_level"])]
        stream_mb, stream_age_h = p["log_stream_max_mb"], p["log_stream_max_age_h"]
        self.capture_topics = p["capture_topics"]
        window, buffer_mb = p["capture_window_s"], p["capture_max_mb"]
        self.reply_max = p["capture_reply_max_mb"] * 1024 * 1024
        allowed = p["allowed_actions"] or list(ACTIONS)  # [""] in YAML: every action, as before
        roles_file = p["roles_file"]

        password = Path(password_file).read_text(encoding="utf-8").strip() if password_file else ""
        roles = Roles.load(roles_file) if roles_file else Roles()
        if not roles_file:
            self.get_logger().warning("no roles_file: every remote action will be refused")
        self.buffer = RollingBuffer(window, int(buffer_mb) * 1024 * 1024)
        self.types: dict[str, str] = {}
        self._type_registry = TypeRegistry()
        self._definitions = MessageDefinitions()
        dispatcher = ActionDispatcher(self.robot_id, allowed, roles, {
            "list_graph": self._list_graph, "capture": self._capture, "restart_app": self._restart_app,
        }, audit=self.get_logger())  # fmt: skip
        settings = AgentSettings(self.robot_id, nats_url, Credentials(nats_user, password, self.robot_id),
                                 int(stream_mb) * 1024 * 1024, float(stream_age_h) * 3600.0)  # fmt: skip
        self.agent = AgentLink(settings, dispatcher, self.get_logger())
        self.tunnel_spec = self._tunnel_parameters()
        self.tunnel: subprocess.Popen[bytes] | None = None
        self.create_subscription(Log, "/rosout", self._on_log, ROSOUT_QOS)
        self.agent.start()
        self._announce()
        self.create_timer(float(self.period), self._announce)
        # Capture topics (odom, imu: 70 messages/s by default) are read by a thread of their own over one
        # wait set (bridge/ros_reader.py), not by the executor: about 1 ms of executor per message here.
        self._reader: OutReader | None = None
        if self.capture_topics:
            self._reader = OutReader(self.context, lambda now: None, contextlib.nullcontext, self.get_logger())
            self._resolve_capture_topics()
            self._reader.start()
            self.create_timer(RESOLVE_PERIOD_S, self._resolve_capture_topics)
        if self.tunnel_spec is not None:
            self._start_tunnel()
            self.create_timer(TUNNEL_CHECK_PERIOD_S, self._check_tunnel)
        self.get_logger().info(
            f"robot_agent {self.robot_id} ready: nats={nats_url} actions={sorted(dispatcher.allowed)} "
            f"capture={self.capture_topics} tunnel={'on' if self.tunnel_spec else 'off'}"
        )

    # ------------------------------------------------------------------ parameters
    def _tunnel_parameters(self) -> TunnelSpec | None:
        values = dict(declare_params(self, TUNNEL_PARAMS, "tunnel"))
        enable, self.autossh = values.pop("enable"), values.pop("autossh")
        if not enable:
            return None
        if not values["key_file"] or not values["known_hosts"]:
            raise ConfigError("tunnel.key_file/known_hosts", "", "both are required when tunnel.enable is true")
        return TunnelSpec(robot_id=self.robot_id, **values).check()

    # ------------------------------------------------------------------ registry
    def _announce(self) -> None:
        self.agent.announce(Announcement(
            robot_id=self.robot_id, site=self.site, software_version=_software_version(),
            packages=package_versions(self.report_packages) | deployed_versions(self.deploy_root),
            host=socket.gethostname(),
            uptime_s=round(time.monotonic() - self.started, 1), capabilities=tuple(self.capabilities),
            ssh_port=self.tunnel_spec.remote_port if self.tunnel_spec else 0, sent_at=time.time(),
        ))  # fmt: skip

    # ------------------------------------------------------------------ logs
    def _on_log(self, msg: Log) -> None:
        if msg.level < self.min_level:
            return
        body = logs.encode_record(msg.stamp.sec, msg.stamp.nanosec, msg.level, msg.name, msg.msg, msg.file,
                                  msg.function, msg.line)  # fmt: skip
        self.agent.forward_log(msg.level, body, f"{msg.stamp.sec}.{msg.stamp.nanosec:09d}")

    # ------------------------------------------------------------------ capture buffer
    def _resolve_capture_topics(self) -> None:
        pending = [t for t in self.capture_topics if t not in self.types]
        if not pending:
            return
        known = dict(self.get_topic_names_and_types())
        for topic in pending:
            if not known.get(topic):
                continue
            type_name = known[topic][0]
            try:
                cls = self._type_registry.load(type_name)
            except BridgeError as exc:
                self.get_logger().warning(f"capture topic {topic}: {exc}")
                continue
            self.types[topic] = type_name
            assert self._reader is not None  # capture topics come with their reader

            def keep(data: bytes, t: str = topic) -> None:
                self.buffer.add(t, data)

            sub = self.create_subscription(cls, topic, keep, qos_profile_sensor_data, raw=True,
                                           callback_group=self._reader.group)  # fmt: skip
            self._reader.add(sub, keep)

    # ------------------------------------------------------------------ remote actions (link loop)
    async def _list_graph(self, args: dict[str, Any]) -> dict[str, Any]:
        rates = self.buffer.rates()
        nodes = sorted(f"{ns.rstrip('/')}/{name}" for name, ns in self.get_node_names_and_namespaces())
        topics = [
            {"name": name, "types": types, "publishers": self.count_publishers(name),
             "subscribers": self.count_subscribers(name), "rate_hz": rates.get(name)}
            for name, types in sorted(self.get_topic_names_and_types())
        ]  # fmt: skip
        return {"nodes": nodes, "topics": topics, "buffered": sorted(self.types), "buffer_dropped": self.buffer.dropped,
                "capture_window_s": self.buffer.window_s}  # fmt: skip

    async def _capture(self, args: dict[str, Any]) -> dict[str, Any]:
        return build_capture(self.robot_id, self.buffer, dict(self.types), args.get("topics"),
                             args.get("seconds"), self.reply_max, self._definitions)  # fmt: skip

    async def _restart_app(self, args: dict[str, Any]) -> dict[str, Any]:
        import msgpack
        import nats.errors

        try:
            package = check_token(args.get("package", ""))
        except SubjectError:
            raise ActionError("restart_app", "'package' must be a package name") from None
        subject = f"robots.{self.robot_id}.deploy.restart.{package}"
        try:
            reply = await self.agent.request(subject, msgpack.packb({"package": package}), RESTART_TIMEOUT_S)
        except nats.errors.NoRespondersError:
            raise ActionUnavailableError(
                "restart_app", f"nothing serves {subject} (is deploy_service running?)"
            ) from None
        except (TimeoutError, nats.errors.Error) as exc:
            raise ActionUnavailableError("restart_app", f"{subject}: {type(exc).__name__}") from None
        return msgpack.unpackb(reply, raw=False)

    # ------------------------------------------------------------------ tunnel (autossh child)
    def _start_tunnel(self) -> None:
        assert self.tunnel_spec is not None
        exe = shutil.which(self.autossh) or self.autossh
        env = {**os.environ, **AUTOSSH_ENV}
        self.tunnel = subprocess.Popen(autossh_argv(self.tunnel_spec, exe), env=env, stdin=subprocess.DEVNULL,
                                       start_new_session=True)  # fmt: skip
        self.get_logger().info(
            f"reverse tunnel: bastion port {self.tunnel_spec.remote_port} (autossh pid {self.tunnel.pid})"
        )

    def _check_tunnel(self) -> None:
        if self.tunnel is not None and self.tunnel.poll() is not None:
            self.get_logger().error(f"autossh exited with status {self.tunnel.returncode}; restarting it")
            self._start_tunnel()

    def close(self) -> None:
        """Stop the capture reader, the tunnel (its whole process group: autossh and its ssh) and the NATS
        link."""
        if self._reader is not None:
            self._reader.stop()
        if self.tunnel is not None and self.tunnel.poll() is None:
            os.killpg(self.tunnel.pid, signal.SIGTERM)
            try:
                self.tunnel.wait(TUNNEL_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.tunnel.pid, signal.SIGKILL)
                self.tunnel.wait(TUNNEL_STOP_TIMEOUT_S)
        self.tunnel = None
        self.agent.stop()


def _software_version() -> str:
    try:
        return metadata.version("robot_platform")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(args: list[str] | None = None) -> int:
    return spin_node(RobotAgentNode, args=args)


if __name__ == "__main__":
    sys.exit(main())
