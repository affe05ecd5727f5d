"""ROS 2 node ``nats_bridge``: thin rclpy glue around :class:`BridgeCore` and :class:`NatsLink`.

Parameters (all declared with descriptors, all read-only: restart the node to change them; defaults in
config/robot.yaml):
    robot_id (string, read-only)      robot this bridge speaks for; namespaces every subject
    nats_url (string)                 NATS server, normally the robot's local one (nats://127.0.0.1:4222)
    nats_user (string)                NATS user ('' = no auth); nats_password_file: file holding the password
    max_payload_bytes (int)           larger encoded messages are refused (PayloadTooLargeError, counted)
    outbox_capacity (int)             messages kept while NATS is unreachable (drop-oldest, counted)
    dedup_capacity (int)              message ids remembered to drop duplicate commands
    discovery_period_s (double)       how often new topics matching out.allow are looked for (0 = never)
    health_period_s (double)          how often counters go to /diagnostics and robots.<id>.health.nats_bridge
    out.names (string[])              named outbound topics; for each <n>:
      out.<n>.topic, out.<n>.type     ROS topic and type ('nav_msgs/msg/Odometry')
      out.<n>.max_rate_hz             0 = unlimited; else keep-latest at most this rate
      out.<n>.reliability/durability/depth   QoS of the ROS subscription
      out.<n>.subject                 '' = robots.<id>.ros.<topic>; else a suffix under robots.<id> ('alerts')
    out.allow, out.deny (string[])    topic globs bridged when discovered (deny wins)
    out.pattern_max_rate_hz, out.pattern_reliability, out.pattern_depth   settings of discovered topics
    in.names (string[])               allowlisted commands; for each <n>: in.<n>.topic, in.<n>.type,
                                      in.<n>.reliability/durability/depth (QoS of the ROS publisher),
                                      in.<n>.allow_non_finite (bool, default false: NaN/inf refused and
                                      counted as out_of_range)
    mode (string, read-only)          'robot', or 'control' to also mirror robots' telemetry into ROS
    mirror.topics (string[])          control mode: robot topics to mirror (e.g. /odom)
    mirror.robots (string[])          control mode: robots to mirror (empty = all)
    mirror.namespace (string)         control mode: prefix of mirrored topics (/fleet -> /fleet/r1/odom)
    mirror.max_robots (int)           control mode, mirror.robots empty: most robot ids mirrored (first come)
    events_stream (bool)              robot mode: ensure JetStream stream EVENTS_<id> (alerts, deploy) on
                                      the local server; control mode: ensure FLEET_EVENTS sourcing
                                      the streams of fleet_robots
    fleet_robots (string[])           control mode: robots whose event streams the hub sources, and
                                      whose /fleet/<id>/<topic> command topics are bridged (see commands)
    commands.names (string[])         control mode: commands sent from this graph; for each <n>:
                                      commands.<n>.topic (robot-side topic, e.g. /cmd_vel), .type, QoS;
                                      /fleet/<id>/<topic> here -> robots.<id>.cmd.<topic> for each fleet robot
    metrics_port (int, read-only)     Prometheus /metrics on 127.0.0.1:<port>; 0 disables
    services.names (string[])         robot mode: ROS services callable through NATS; for each <n>:
      services.<n>.service            ROS service name (fully qualified, e.g. /robot_sim/estop)
      services.<n>.type               service type (std_srvs/srv/SetBool)
      services.<n>.timeout_s          the caller gets Rp-Error 'timeout' after this long
      services.<n>.allow_non_finite   NaN/inf accepted in the Request (default false: Rp-Error out_of_range)
    services.max_pending (int)        service calls in flight at once; more are refused ('busy')
Subscriptions: every out topic (read by a thread of their own, see ros_reader.py).
Publishers: every in topic, /diagnostics, mirrored /fleet/<id>/<topic>.
Service clients: every allowlisted service (robot mode).
NATS: publishes robots.<id>.ros.<topic> (or the configured subject), robots.<id>.health.nats_bridge;
subscribes robots.<id>.cmd.> (only allowlisted subject+type pairs reach ROS); answers requests on
robots.<id>.srv.<service> (one subscription per allowlisted service, plus robots.<id>.srv.> to refuse
the rest; see services.py for the reply format); in control mode also robots.*.ros.<topic> for each
mirrored topic.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_services_default

from robot_platform.common.node_main import spin_node
from robot_platform.exceptions import ConfigError
from robot_platform.messaging import streams, subjects
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.connect import Credentials
from robot_platform.messaging.errors import BridgeError
from robot_platform.messaging.nats_link import NatsLink
from robot_platform.messaging.rostypes import TypeRegistry

from . import fleet_frames, fleet_tf
from .core import BridgeCore, OutRoute
from .filters import TopicFilter
from .metrics import BridgeCollector, BridgeMetrics
from .mirror import Mirror
from .report import flat_values
from .ros_reader import OutReader
from .services import PendingCall, ServiceAllowlist, ServiceRouter

RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}
DURABILITY = {"volatile": DurabilityPolicy.VOLATILE, "transient_local": DurabilityPolicy.TRANSIENT_LOCAL}
HEALTH_PART = "nats_bridge"
SERVICE_EXPIRY_PERIOD_S = 0.1  # how often overdue service calls are answered with 'timeout'

S, INT, D, SA = (
    ParameterType.PARAMETER_STRING,
    ParameterType.PARAMETER_INTEGER,
    ParameterType.PARAMETER_DOUBLE,
    ParameterType.PARAMETER_STRING_ARRAY,
)


def _qos(reliability: str, durability: str, depth: int, where: str) -> QoSProfile:
    if reliability not in RELIABILITY:
        raise ConfigError(f"{where}.reliability", reliability, f"one of {sorted(RELIABILITY)}")
    if durability not in DURABILITY:
        raise ConfigError(f"{where}.durability", durability, f"one of {sorted(DURABILITY)}")
    if depth < 1:
        raise ConfigError(f"{where}.depth", depth, "at least 1")
    return QoSProfile(depth=depth, reliability=RELIABILITY[reliability], durability=DURABILITY[durability])


class NatsBridgeNode(Node):
    """Bridges configured ROS topics out to NATS and allowlisted NATS commands into ROS."""

    def __init__(self) -> None:
        super().__init__("nats_bridge")
        p = self._param
        robot_id = p("robot_id", "r1", S, "robot id, a single subject token ([A-Za-z0-9_-])", read_only=True)
        url = p("nats_url", "nats://127.0.0.1:4222", S, "NATS server URL (the robot's local server)")
        user = p("nats_user", "", S, "NATS user name; empty = no authentication")
        password_file = p("nats_password_file", "", S, "file holding the NATS password (never logged)")
        max_payload = p("max_payload_bytes", 1024 * 1024, INT, "refuse larger encoded messages",
                        int_range=(1024, 64 * 1024 * 1024))  # fmt: skip
        outbox = p("outbox_capacity", 1000, INT, "messages kept while NATS is down (drop oldest)",
                   int_range=(1, 1_000_000))  # fmt: skip
        dedup = p("dedup_capacity", 10_000, INT, "recent message ids remembered for duplicate dropping",
                  int_range=(1, 10_000_000))  # fmt: skip
        discovery = p("discovery_period_s", 2.0, D, "period of the search for topics matching out.allow; 0=off",
                      float_range=(0.0, 3600.0))  # fmt: skip
        health = p("health_period_s", 1.0, D, "period of the counters report", float_range=(0.1, 3600.0))
        subjects.check_robot_id(robot_id)
        mode = p("mode", "robot", S, "'robot' or 'control' (control also mirrors robots into ROS)", read_only=True)
        if mode not in ("robot", "control"):
            raise ConfigError("mode", mode, "'robot' or 'control'")

        in_names = self._names("in.names")
        registry = TypeRegistry()
        self._core = BridgeCore(
            robot_id,
            Codec(registry, max_payload),
            send=self._send,
            allowlist=self._read_allowlist(robot_id, in_names),
            log=self.get_logger().warning,
            dedup_capacity=dedup,
        )
        self._in_publishers: dict[str, Any] = {}
        for name in in_names:
            self._add_in(name)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._mirror: Mirror | None = None
        self._frame_prefix = False
        self._fleet_tf: fleet_tf.FleetTf | None = None
        self._mirror_pubs: dict[str, Any] = {}
        nats_subs = [subjects.robot_wildcard(robot_id, "cmd")] if in_names else []
        fleet = self._names("fleet_robots") if mode == "control" else []
        if mode == "control":
            max_robots = p("mirror.max_robots", 256, INT, "with mirror.robots empty: most robot ids mirrored",
                           int_range=(1, 100_000))  # fmt: skip
            self._mirror = Mirror(
                self._core.codec,
                self._names("mirror.topics"),
                self._names("mirror.robots"),
                p("mirror.namespace", "/fleet", S, "prefix of mirrored topics", read_only=True),
                dedup,
                self.get_logger().warning,
                max_robots,
            )
            self._mirror_qos = _qos(
                p("mirror.reliability", "reliable", S, "QoS reliability of mirrored topics"),
                "volatile",
                p("mirror.depth", 10, INT, "QoS depth of mirrored topics", int_range=(1, 1000)),
                "mirror",
            )
            self._frame_prefix = p("mirror.frame_prefix", True, ParameterType.PARAMETER_BOOL,
                                   "prefix mirrored frame ids with the robot id (r1/odom) and publish each "
                                   "robot's TF tree under 'fleet' (needs tf2_msgs)")  # fmt: skip
            origins_text = p("mirror.origins", "", S, "where robots' odom frames sit in 'fleet': r1:x,y,yaw; ...")
            try:
                origins = fleet_frames.parse_origins(origins_text)
            except ValueError as exc:
                raise ConfigError("mirror.origins", origins_text, str(exc)) from None
            self._fleet_tf = fleet_tf.make(self, origins) if self._frame_prefix else None
            if self._frame_prefix and self._fleet_tf is None:
                self.get_logger().warning("tf2_msgs is not installed (pip-only ROS): mirrored frames are "
                                          "prefixed, but no /tf is published for them")  # fmt: skip
            nats_subs += self._mirror.subscriptions()
        self._srv_router: ServiceRouter | None = None
        self._srv_clients: dict[str, Any] = {}
        self._srv_wildcard = subjects.robot_wildcard(robot_id, "srv")
        request_subs: list[str] = []
        if mode == "robot":
            self._srv_router = self._read_services(robot_id)
            if self._srv_router is not None:
                request_subs = [r.subject for r in self._srv_router.allowlist.rules] + [self._srv_wildcard]
        events = p("events_stream", True, ParameterType.PARAMETER_BOOL, "ensure the JetStream event stream(s)")
        stream_config = None
        if events and mode == "robot":
            stream_config = streams.events_stream_config(robot_id)
        elif events:
            stream_config = streams.events_hub_stream_config(fleet) if fleet else None

        async def on_connected(nc: Any) -> None:
            if stream_config is not None:
                await streams.ensure_stream(nc, stream_config)
                self.get_logger().info(f"JetStream stream {stream_config.name} ready")

        password = Path(password_file).read_text().strip() if password_file else ""
        # On a robot, replies come back over the leaf link only into the robot's own inbox (inbox.py).
        credentials = Credentials(user, password, robot_id if mode == "robot" else "")
        self._link = NatsLink(
            url,
            self._on_nats,
            nats_subs,
            name=f"nats_bridge.{robot_id}",
            outbox_capacity=outbox,
            credentials=credentials,
            log=self.get_logger(),
            on_connected=on_connected,
            requests=request_subs,
            on_request=self._on_service_request if request_subs else None,
        )

        # Outbound subscriptions are read by their own thread (ros_reader: no executor round per message),
        # which also releases rate-limited messages when due.
        self._reader = OutReader(self.context, self._core.flush_due, self._link.batch, self.get_logger())
        self._subs: dict[str, Any] = {}
        for name in self._names("out.names"):
            self._add_out(name)
        if mode == "control":
            self._add_fleet_commands(fleet)
        self._filter = TopicFilter(self._names("out.allow"), self._names("out.deny"))
        self._pattern_rate = p("out.pattern_max_rate_hz", 10.0, D, "max rate of discovered topics; 0=unlimited",
                               float_range=(0.0, 10000.0))  # fmt: skip
        self._pattern_qos = _qos(
            p("out.pattern_reliability", "best_effort", S, "QoS reliability of discovered topics"),
            "volatile",
            p("out.pattern_depth", 5, INT, "QoS depth of discovered topics", int_range=(1, 1000)),
            "out.pattern",
        )
        self._skipped: set[str] = set()
        if discovery > 0 and self._filter.allow:
            self.create_timer(discovery, self._discover)
        self.create_timer(health, self._report)
        if self._srv_router is not None:
            self.create_timer(SERVICE_EXPIRY_PERIOD_S, self._expire_service_calls)
        self._metrics: BridgeMetrics | None = None
        metrics_port = p("metrics_port", 0, INT, "Prometheus port on 127.0.0.1; 0 = off", read_only=True,
                         int_range=(0, 65535))  # fmt: skip
        if metrics_port:
            self._metrics = BridgeMetrics(BridgeCollector(robot_id, self._snapshot, self._link_counters))
            bound = self._metrics.serve(metrics_port)
            self.get_logger().info(f"metrics on http://127.0.0.1:{bound}/metrics")
        self._link.start()
        self._reader.start()
        self.get_logger().info(
            f"nats_bridge {robot_id}: {len(self._core.routes)} out topics, "
            f"{len(self._core.allowlist.rules)} allowlisted commands, {len(self._srv_clients)} services, NATS {url}"
        )

    # ------------------------------------------------------------------ parameters
    def _param(
        self,
        name: str,
        default: Any,
        ptype: int,
        description: str,
        read_only: bool = True,
        int_range: tuple[int, int] | None = None,
        float_range: tuple[float, float] | None = None,
    ) -> Any:
        desc = ParameterDescriptor(type=ptype, description=description, read_only=read_only)
        if int_range:
            desc.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1], step=1)]
        if float_range:
            desc.floating_point_range = [FloatingPointRange(from_value=float_range[0], to_value=float_range[1])]
        return self.declare_parameter(name, default, desc).value

    def _names(self, name: str) -> list[str]:
        desc = ParameterDescriptor(type=SA, description=f"{name} (list of strings)", read_only=True)
        value = self.declare_parameter(name, Parameter.Type.STRING_ARRAY, desc).value
        return [v for v in (value or []) if v]

    def _route_params(self, prefix: str, default_reliability: str) -> dict[str, Any]:
        p = self._param
        return {
            "topic": p(f"{prefix}.topic", "", S, "ROS topic (fully qualified)", read_only=True),
            "type": p(f"{prefix}.type", "", S, "ROS type, e.g. nav_msgs/msg/Odometry", read_only=True),
            "reliability": p(f"{prefix}.reliability", default_reliability, S, "reliable | best_effort"),
            "durability": p(f"{prefix}.durability", "volatile", S, "volatile | transient_local"),
            "depth": p(f"{prefix}.depth", 10, INT, "QoS history depth", int_range=(1, 10000)),
        }

    def _allow_non_finite(self, prefix: str) -> bool:
        description = "accept NaN/inf in float fields (default: refuse, counted as out_of_range)"
        return bool(self._param(f"{prefix}.allow_non_finite", False, ParameterType.PARAMETER_BOOL, description))

    def _read_allowlist(self, robot_id: str, names: list[str]) -> subjects.CommandAllowlist:
        rules = []
        for name in names:
            r = self._route_params(f"in.{name}", "reliable")
            rules.append((r["topic"], r["type"], self._allow_non_finite(f"in.{name}")))
        return subjects.CommandAllowlist(robot_id, rules)

    def _read_services(self, robot_id: str) -> ServiceRouter | None:
        """Service allowlist and one ROS client per service; None when no service is listed."""
        names = self._names("services.names")
        max_pending = self._param("services.max_pending", 16, INT, "service calls in flight at once",
                                  int_range=(1, 1000))  # fmt: skip
        if not names:
            return None
        rules = []
        for name in names:
            pre = f"services.{name}"
            rules.append((
                name,
                self._param(f"{pre}.service", "", S, "ROS service name (fully qualified)"),
                self._param(f"{pre}.type", "", S, "service type, e.g. std_srvs/srv/SetBool"),
                self._param(f"{pre}.timeout_s", 5.0, D, "reply 'timeout' after this long", float_range=(0.01, 600.0)),
                self._allow_non_finite(pre),
            ))  # fmt: skip
        try:
            allowlist = ServiceAllowlist(robot_id, rules)
        except BridgeError as exc:
            raise ConfigError("services", names, str(exc)) from None
        logger = self.get_logger()
        router = ServiceRouter(
            robot_id, self._core.codec, allowlist, self._send, max_pending, logger.warning, logger.info
        )
        for rule in allowlist.rules:
            srv = self._core.codec.registry.load_service(rule.type_name)
            client = self.create_client(srv, rule.service, qos_profile=qos_profile_services_default)
            self._srv_clients[rule.subject] = client
        return router

    def _add_in(self, name: str) -> None:
        prefix = f"in.{name}"
        keys = ("topic", "type", "reliability", "durability", "depth")
        r = {k: self.get_parameter(f"{prefix}.{k}").value for k in keys}
        cls = self._core.codec.registry.load(r["type"])
        qos = _qos(r["reliability"], r["durability"], r["depth"], prefix)
        self._in_publishers[r["topic"]] = self.create_publisher(cls, r["topic"], qos)

    def _add_out(self, name: str) -> OutRoute:
        prefix = f"out.{name}"
        r = self._route_params(prefix, "reliable")
        rate = self._param(f"{prefix}.max_rate_hz", 0.0, D, "max rate, keep latest; 0 = unlimited",
                           float_range=(0.0, 100000.0))  # fmt: skip
        suffix = self._param(f"{prefix}.subject", "", S, "'' or a suffix under robots.<id>", read_only=True)
        subject = ""
        if suffix:
            tokens = suffix.split(".")
            for token in tokens:
                subjects.check_token(token)
            if tokens[0] not in subjects.KINDS or tokens[0] == "srv":
                raise ConfigError(f"{prefix}.subject", suffix, f"must start with one of {subjects.KINDS}")
            subject = f"{subjects.ROOT}.{self._core.robot_id}.{suffix}"
        route = self._core.add_out_route(r["topic"], r["type"], rate, subject)
        self._subscribe(route, _qos(r["reliability"], r["durability"], r["depth"], prefix))
        return route

    def _add_fleet_commands(self, fleet: list[str]) -> None:
        """Control mode: /fleet/<id>/<topic> published here goes to robots.<id>.cmd.<topic>."""
        assert self._mirror is not None
        for name in self._names("commands.names"):
            r = self._route_params(f"commands.{name}", "reliable")
            if r["topic"] in self._mirror.topics:
                raise ConfigError(f"commands.{name}.topic", r["topic"], "also mirrored: it would loop")
            qos = _qos(r["reliability"], r["durability"], r["depth"], f"commands.{name}")
            for robot in fleet:
                local = f"{self._mirror.namespace}/{subjects.check_robot_id(robot)}{subjects.check_topic(r['topic'])}"
                route = self._core.add_out_route(local, r["type"], 0.0, subjects.command(robot, r["topic"]))
                self._subscribe(route, qos)

    def _subscribe(self, route: OutRoute, qos: QoSProfile) -> None:
        """Subscribe for the reader thread (ros_reader); the executor never runs this subscription."""
        handle = partial(self._core.on_ros_message, route)
        sub = self.create_subscription(route.cls, route.topic, handle, qos, callback_group=self._reader.group)
        self._subs[route.topic] = sub
        self._reader.add(sub, handle)

    # ------------------------------------------------------------------ timers
    def _discover(self) -> None:
        in_topics = set(self._in_publishers)
        for topic, types in self.get_topic_names_and_types():
            if topic in self._core.routes or topic in self._skipped or topic in in_topics:
                continue
            if self._mirror is not None and topic.startswith(self._mirror.namespace + "/"):
                continue  # our own mirror output: bridging it back out would loop
            if not self._filter(topic):
                continue
            if len(types) != 1:
                self._skip(topic, f"has {len(types)} types {types}")
                continue
            try:
                route = self._core.add_out_route(topic, types[0], self._pattern_rate)
            except BridgeError as exc:
                self._skip(topic, str(exc))
                continue
            self._subscribe(route, self._pattern_qos)
            self.get_logger().info(f"bridging discovered topic {topic} ({route.type_name}) -> {route.subject}")

    def _skip(self, topic: str, reason: str) -> None:
        self._skipped.add(topic)
        self.get_logger().warning(f"not bridging discovered topic {topic}: {reason}")

    def _report(self) -> None:
        values = flat_values(self._snapshot(), self._link_counters())
        level = DiagnosticStatus.OK if self._link.connected else DiagnosticStatus.WARN
        status = DiagnosticStatus(
            level=level,
            name=f"nats_bridge: {self._core.robot_id}",
            message=f"NATS {self._link.state.value}",
            hardware_id=self._core.robot_id,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)
        subject = subjects.health(self._core.robot_id, HEALTH_PART)
        try:
            body = self._core.codec.encode(array, subject)
        except BridgeError as exc:
            self.get_logger().warning(f"health report not sent: {exc}")
            return
        registry = self._core.codec.registry
        env = self._core.envelopes.make(
            "diagnostic_msgs/msg/DiagnosticArray", registry.type_hash(DiagnosticArray), "/diagnostics"
        )
        self._link.publish(subject, body, env.headers())

    def _snapshot(self) -> dict[str, Any]:
        snap = self._core.snapshot()
        if self._mirror is not None:
            snap.update(self._mirror.snapshot())
        if self._srv_router is not None:  # service subjects count like inbound commands (same counters)
            srv = self._srv_router.snapshot()
            snap["in"].update(srv["in"])
            for kind, n in srv["errors"].items():
                snap["errors"][kind] = snap["errors"].get(kind, 0) + n
        return snap

    def _link_counters(self) -> dict[str, Any]:
        c = self._link.counters
        return {
            "sent": c.sent, "received": c.received, "dropped_outbox": c.dropped_outbox,
            "dropped_slow_consumer": c.dropped_slow_consumer, "connects": c.connects,
            "disconnects": c.disconnects, "connect_failures": c.connect_failures,
            "connected": self._link.connected, "queued": self._link.queued, "state": self._link.state.value,
        }  # fmt: skip

    # ------------------------------------------------------------------ NATS side
    def _send(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        self._link.publish(subject, body, headers)

    def _on_nats(self, subject: str, headers: dict[str, str] | None, data: bytes) -> None:
        """Runs in the NATS thread; rclpy publishers are safe to use from it."""
        if self._mirror is not None and subject.split(".")[2:3] == ["ros"]:
            mirrored = self._mirror.on_message(subject, headers, data)
            if mirrored is not None and self._frame_prefix:
                fleet_frames.prefix_frames(mirrored.msg, mirrored.robot_id)
                if self._fleet_tf is not None:
                    self._fleet_tf.on_mirrored(mirrored.robot_id, mirrored.msg)
            if mirrored is not None:
                pub = self._mirror_pubs.get(mirrored.ros_topic)
                if pub is None:
                    pub = self.create_publisher(mirrored.cls, mirrored.ros_topic, self._mirror_qos)
                    self._mirror_pubs[mirrored.ros_topic] = pub
                    self.get_logger().info(f"mirroring {subject} -> {mirrored.ros_topic}")
                pub.publish(mirrored.msg)
            return
        result = self._core.on_command(subject, headers, data)
        if result is not None:
            topic, msg = result
            self._in_publishers[topic].publish(msg)

    def _on_service_request(
        self, pattern: str, subject: str, reply: str, headers: dict[str, str] | None, data: bytes
    ) -> None:
        """NATS thread: validate, then call the ROS service asynchronously (never waits for it)."""
        router = self._srv_router
        assert router is not None
        if pattern == self._srv_wildcard and router.allowlist.get(subject) is not None:
            return  # the service's own subscription delivers it too
        result = router.on_request(subject, reply, headers, data)
        if result is None:
            return
        call, request = result
        client = self._srv_clients[call.rule.subject]
        if not client.service_is_ready():
            router.fail(call, "unavailable", f"no server for {call.rule.service} is running")
            return
        future = client.call_async(request)
        call.handle = future
        future.add_done_callback(lambda f, call=call: self._on_service_response(call, f))

    def _on_service_response(self, call: PendingCall, future: Any) -> None:
        """Executor thread: the ROS service answered (or the call was cancelled after a timeout)."""
        assert self._srv_router is not None
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self._srv_router.fail(call, "failed", f"{type(exc).__name__}: {exc}")
        else:
            self._srv_router.complete(call, future.result())

    def _expire_service_calls(self) -> None:
        assert self._srv_router is not None
        for call in self._srv_router.expire():
            client = self._srv_clients.get(call.rule.subject)
            if call.handle is not None and client is not None:
                client.remove_pending_request(call.handle)
                call.handle.cancel()

    def destroy_node(self) -> None:
        if self._srv_router is not None:
            self._srv_router.fail_all("the bridge is stopping")
        self._reader.stop()
        self._link.stop()
        if self._metrics is not None:
            self._metrics.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin_node(NatsBridgeNode, args)


if __name__ == "__main__":
    sys.exit(main())
