"""ROS 2 node ``nats_bridge``: thin rclpy glue around :class:`BridgeCore` and :class:`NatsLink`.

Wiring of both modes; robot mode's services are in robot_side.py, control mode's fleet mirror and
commands in fleet_side.py, the parameter tables in node_params.py.

Parameters (all declared with descriptors, all read-only: restart the node to change them; defaults in
node_params.py, repeated in config/robot.yaml and config/control.yaml):
    robot_id (string, required)       robot this bridge speaks for; namespaces every subject
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
      out.<n>.overview_rate_hz        0 = none; else also a keep-latest copy at most this often on
                                      robots.<id>.overview.<topic> (what a fleet overview subscribes)
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
    mirror.reliability, mirror.depth  control mode: QoS of the mirrored topics
    mirror.frame_prefix (bool)        control mode: frame ids become <id>/<frame>, each robot's TF under 'fleet'
    mirror.origins (string)           control mode: where robots' odom frames sit in 'fleet' ("r1:0,0,0; r2:5,0,1.57")
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
NATS: publishes robots.<id>.ros.<topic> (or the configured subject), robots.<id>.overview.<topic> (routes
with an overview rate), robots.<id>.health.nats_bridge;
subscribes robots.<id>.cmd.> (only allowlisted subject+type pairs reach ROS); answers requests on
robots.<id>.srv.<service> (one subscription per allowlisted service, plus robots.<id>.srv.> to refuse
the rest; see services.py for the reply format); in control mode also robots.*.ros.<topic> for each
mirrored topic (robots.*.overview.<topic> for those of mirror.overview_topics).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import QoSProfile

from robot_platform.bridge.core import BridgeCore, OutRoute
from robot_platform.bridge.filters import TopicFilter
from robot_platform.bridge.fleet_side import FleetSide
from robot_platform.bridge.metrics import BridgeCollector, BridgeMetrics
from robot_platform.bridge.node_params import IN_PARAMS, OUT_PARAMS, PARAMS, qos
from robot_platform.bridge.report import flat_values
from robot_platform.bridge.robot_side import ServiceSide
from robot_platform.bridge.ros_batch import cdr_decoder
from robot_platform.bridge.ros_reader import OutReader
from robot_platform.common.node_main import spin_node
from robot_platform.common.params import Params, declare_params
from robot_platform.exceptions import ConfigError
from robot_platform.messaging import streams, subjects
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.connect import Credentials
from robot_platform.messaging.errors import BridgeError, CodecError
from robot_platform.messaging.nats_link import NatsLink
from robot_platform.messaging.rostypes import TypeRegistry, type_name_of

HEALTH_PART = "nats_bridge"


class NatsBridgeNode(Node):
    """Bridges configured ROS topics out to NATS and allowlisted NATS commands into ROS."""

    def __init__(self) -> None:
        super().__init__("nats_bridge")
        p = declare_params(self, PARAMS)
        robot_id, mode, dedup = subjects.check_robot_id(p["robot_id"]), p["mode"], p["dedup_capacity"]
        if mode not in ("robot", "control"):
            raise ConfigError("mode", mode, "'robot' or 'control'")
        in_names = p["in.names"]
        self._core = BridgeCore(
            robot_id,
            Codec(TypeRegistry(), p["max_payload_bytes"]),
            send=self._send,
            allowlist=self._read_allowlist(robot_id, in_names),
            log=self.get_logger().warning,
            dedup_capacity=dedup,
        )
        self._in_publishers: dict[str, Any] = {}
        for name, r in self._in_routes.items():
            self._in_publishers[r["topic"]] = self.create_publisher(
                self._core.codec.registry.load(r["type"]), r["topic"],
                qos(r["reliability"], r["durability"], r["depth"], f"in.{name}"),
            )  # fmt: skip
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        nats_subs = [subjects.robot_wildcard(robot_id, "cmd")] if in_names else []
        self._fleet: FleetSide | None = None
        self._service_side: ServiceSide | None = None
        if mode == "control":
            self._fleet = FleetSide(self, self._core, dedup)
            nats_subs += self._fleet.subscriptions()
        else:
            self._service_side = ServiceSide(self, robot_id, self._core.codec, self._send)
        request_subs = self._service_side.request_subjects if self._service_side is not None else []
        self._link = self._make_link(p, robot_id, nats_subs, request_subs)

        # Outbound subscriptions are read by their own thread (ros_reader: no executor round per message),
        # which also releases rate-limited messages when due.
        self._reader = OutReader(
            self.context, self._core.flush_due, self._link.batch, self.get_logger(), min_period_s=p["out.read_period_s"]
        )
        self._subs: dict[str, Any] = {}
        for name in p["out.names"]:
            self._add_out(name)
        if self._fleet is not None:
            self._fleet.add_commands(self._subscribe)
        self._filter = TopicFilter(p["out.allow"], p["out.deny"])
        self._pattern_rate = p["out.pattern_max_rate_hz"]
        self._pattern_qos = qos(p["out.pattern_reliability"], "volatile", p["out.pattern_depth"], "out.pattern")
        self._skipped: set[str] = set()
        if p["discovery_period_s"] > 0 and self._filter.allow:
            self.create_timer(p["discovery_period_s"], self._discover)
        self.create_timer(p["health_period_s"], self._report)
        self._metrics: BridgeMetrics | None = None
        if p["metrics_port"]:
            self._metrics = BridgeMetrics(BridgeCollector(robot_id, self._snapshot, self._link_counters))
            bound = self._metrics.serve(p["metrics_port"])
            self.get_logger().info(f"metrics on http://127.0.0.1:{bound}/metrics")
        self._link.start()
        self._reader.start()
        n_services = len(self._service_side.clients) if self._service_side is not None else 0
        self.get_logger().info(
            f"nats_bridge {robot_id}: {len(self._core.routes)} out topics, "
            f"{len(self._core.allowlist.rules)} allowlisted commands, {n_services} services, NATS {p['nats_url']}"
        )

    def _make_link(self, p: Params, robot_id: str, nats_subs: list[str], request_subs: list[str]) -> NatsLink:
        """The NATS link; on (re)connect it ensures this mode's event stream(s) when events_stream is on."""
        robot_mode = p["mode"] == "robot"
        stream_config = None
        if p["events_stream"] and robot_mode:
            stream_config = streams.events_stream_config(robot_id)
        elif p["events_stream"] and self._fleet is not None and self._fleet.fleet:
            stream_config = streams.events_hub_stream_config(self._fleet.fleet)

        async def on_connected(nc: Any) -> None:
            if stream_config is not None:
                await streams.ensure_stream(nc, stream_config)
                self.get_logger().info(f"JetStream stream {stream_config.name} ready")

        password_file = p["nats_password_file"]
        password = Path(password_file).read_text().strip() if password_file else ""
        # On a robot, replies come back over the leaf link only into the robot's own inbox (inbox.py).
        credentials = Credentials(p["nats_user"], password, robot_id if robot_mode else "")
        return NatsLink(
            p["nats_url"],
            self._on_nats,
            nats_subs,
            name=f"nats_bridge.{robot_id}",
            outbox_capacity=p["outbox_capacity"],
            credentials=credentials,
            log=self.get_logger(),
            on_connected=on_connected,
            requests=request_subs,
            on_request=self._service_side.on_request if request_subs and self._service_side is not None else None,
        )

    # ------------------------------------------------------------------ parameters
    def _read_allowlist(self, robot_id: str, names: list[str]) -> subjects.CommandAllowlist:
        """Declare in.<n>.* and build the command allowlist (its publishers are created once core exists)."""
        self._in_routes = {name: declare_params(self, IN_PARAMS, f"in.{name}") for name in names}
        rules = [(r["topic"], r["type"], r["allow_non_finite"]) for r in self._in_routes.values()]
        return subjects.CommandAllowlist(robot_id, rules)

    def _add_out(self, name: str) -> OutRoute:
        prefix = f"out.{name}"
        r = declare_params(self, OUT_PARAMS, prefix)
        suffix = r["subject"]
        subject = ""
        if suffix:
            tokens = suffix.split(".")
            for token in tokens:
                subjects.check_token(token)
            if tokens[0] not in subjects.KINDS or tokens[0] == "srv":
                raise ConfigError(f"{prefix}.subject", suffix, f"must start with one of {subjects.KINDS}")
            subject = f"{subjects.ROOT}.{self._core.robot_id}.{suffix}"
        route = self._core.add_out_route(r["topic"], r["type"], r["max_rate_hz"], subject, r["overview_rate_hz"])
        self._subscribe(route, qos(r["reliability"], r["durability"], r["depth"], prefix))
        return route

    def _subscribe(self, route: OutRoute, profile: QoSProfile) -> None:
        """Subscribe for the reader thread (ros_reader); the executor never runs this subscription.

        A rate-limited route takes raw CDR and deserializes only what its limit sends (``OutRoute.decode``:
        the IMU's 10 of 50 a second); an unlimited one sends every message, so it takes them deserialized
        at once (one copy of the CDR less)."""
        raw = route.limiter.interval > 0
        if raw:
            route.decode = partial(decode_cdr, cdr_decoder(route.cls), type_name_of(route.cls))
        handle = partial(self._core.on_ros_message, route)
        sub = self.create_subscription(
            route.cls, route.topic, handle, profile, callback_group=self._reader.group, raw=raw
        )
        self._subs[route.topic] = sub
        self._reader.add(sub, handle)

    # ------------------------------------------------------------------ timers
    def _discover(self) -> None:
        in_topics = set(self._in_publishers)
        for topic, types in self.get_topic_names_and_types():
            if topic in self._core.routes or topic in self._skipped or topic in in_topics:
                continue
            if self._fleet is not None and topic.startswith(self._fleet.namespace + "/"):
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
        if self._fleet is not None:
            snap.update(self._fleet.snapshot())
        if self._service_side is not None:
            self._service_side.merge_counters(snap)
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
        if self._fleet is not None and self._fleet.on_message(subject, headers, data):
            return
        result = self._core.on_command(subject, headers, data)
        if result is not None:
            topic, msg = result
            self._in_publishers[topic].publish(msg)

    def destroy_node(self) -> None:
        if self._service_side is not None:
            self._service_side.close()
        self._reader.stop()
        self._link.stop()
        if self._metrics is not None:
            self._metrics.close()
        super().destroy_node()


def decode_cdr(decode: Callable[[bytes], Any], type_name: str, data: bytes) -> Any:
    """CDR taken raw -> message (``decode``: :func:`.ros_batch.cdr_decoder`); CodecError (counted, the
    bridge goes on) if it does not decode."""
    try:
        return decode(data)
    except Exception as exc:  # rclpy raises plain RuntimeError/TypeError from C
        raise CodecError(type_name, "", f"CDR does not deserialize: {exc}") from None


def main(args: list[str] | None = None) -> int:
    return spin_node(NatsBridgeNode, args)


if __name__ == "__main__":
    sys.exit(main())
