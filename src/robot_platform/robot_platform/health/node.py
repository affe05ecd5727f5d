"""ROS 2 node ``health_monitor_tree``: ticks the health behaviour tree and publishes what it finds.

Thin glue: the tree, checks, alert decisions and output contents live in the plain-Python modules of
this package; this file wires parameters, subscriptions, publishers, the metrics endpoint and the
NATS/MQTT transports to them. All ROS callbacks run on one single-threaded executor, so the tick
(which also takes the topics' messages, see ros_drain.py) and the acknowledge service never run
concurrently; the NATS and MQTT clients run on their own threads and talk to the monitor only through
locked caches and queues.

Parameters (the table node_params.PARAMS, repeated in config/robot.yaml):
    robot_id (str, required)             robot name, in every alert and metric
    tick_rate_hz (float, read-only)      tree ticks per second (1..50)
    checks_file (str, read-only)         YAML file of the tree (see tree_builder); used if checks_yaml is
                                         empty; "" = the installed config/health/checks.yaml
    checks_yaml (str, read-only)         the tree as a YAML string (wins over checks_file)
    metrics_port (int, read-only)        Prometheus endpoint on 127.0.0.1:<port>; 0 disables
    diagnostics_period_s (float, r-o)    /diagnostics at least this often (also on every transition)
    snapshot_rate_hz (float, read-only)  tree snapshots to NATS per second (also on every transition)
    markers_frame_id (str, read-only)    frame of the fault text markers
    nats_url (str, read-only)            robot's NATS server; "" disables NATS output
    nats_alert_stream (str, read-only)   JetStream stream to create for the alert subject if none does
                                         ("" = none: nats_bridge's EVENTS_<id> stores the alerts)
    state_dir (str, read-only)           per-robot state (the durable NATS alert outbox, nats_outbox.sqlite3,
                                         and the active alerts, active_alerts.json);
                                         "" = ~/.robot_platform/health/<robot_id>
    outbox_durable (bool, read-only)     keep alerts waiting for NATS on disk (replayed after a restart)
    outbox_max (int, read-only)          alerts kept while NATS is unreachable (drop-oldest beyond, counted)
    persist_alerts (bool, read-only)     keep the active alerts in <state_dir>/active_alerts.json (alert_state)
                                         so a restart re-uses their ids or clears them (no ghosts, no duplicates)
    restart_grace_s (float, read-only)   after a restart, a restored alert that is not seen again within this
                                         (+ the check's debounce_s) is cleared on every sink (see monitor)
    mqtt_host, mqtt_port, mqtt_client_id, mqtt_topic, mqtt_ca_file, mqtt_cert_file, mqtt_key_file
                                         (read-only) real-time alert push; "" host disables MQTT

Subscriptions:  the topics named in the checks config (types and QoS from its ``topics:`` section),
                raw, taken by the tick (ros_drain.py), never by a per-message callback
Publishers:     alerts (robot_platform_interfaces/Alert, reliable, transient local depth 50),
                /diagnostics (diagnostic_msgs/DiagnosticArray), health/markers (MarkerArray)
Services:       ~/acknowledge_alert (robot_platform_interfaces/AcknowledgeAlert)
NATS:           robots.<id>.alerts (Alert, msgpack + envelope headers, JetStream),
                robots.<id>.health (tree snapshot, msgpack map, keep-latest),
                robots.<id>.health.ack {alert_id, user} and robots.<id>.health.silence {check, duration_s, user}
                (requests, msgpack; reply {success, message})
MQTT:           <mqtt_topic> (default robots/<id>/alerts), JSON alert, QoS 1
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any

import msgpack
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from visualization_msgs.msg import Marker, MarkerArray

from robot_platform.common.node_main import spin_node
from robot_platform.exceptions import ConfigError
from robot_platform.health import outputs
from robot_platform.health.alert_state import AlertStateStore
from robot_platform.health.errors import UnknownCheckError
from robot_platform.health.metrics import HealthMetrics
from robot_platform.health.monitor import AlertRecord, HealthMonitor, TickResult
from robot_platform.health.nats_out import NatsPublisher, OutMsg
from robot_platform.health.node_params import read_health_params
from robot_platform.health.operator_requests import handle_request
from robot_platform.health.ros_drain import TopicDrain
from robot_platform.health.ros_messages import alert_msg, default_checks_file, load_message_class
from robot_platform.health.tree_builder import build_tree, load_config_file, load_config_text
from robot_platform.messaging import subjects
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.envelope import CONTENT_TYPE, H_CONTENT_TYPE, H_MSG_ID, H_ROBOT, H_TYPE, EnvelopeFactory
from robot_platform_interfaces.msg import Alert
from robot_platform_interfaces.srv import AcknowledgeAlert

ALERT_TYPE = "robot_platform_interfaces/msg/Alert"
SNAPSHOT_TYPE = "robot_platform/health/TreeSnapshot"  # not a ROS type: a msgpack map, see outputs
ALERT_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
GRAPH_REFRESH_S = 1.0


class HealthMonitorNode(Node):
    """See the module docstring for parameters, topics, services and subjects."""

    def __init__(self) -> None:
        super().__init__("health_monitor_tree")
        p = read_health_params(self)
        self.robot_id = p.robot_id
        tick_rate, metrics_port = p.tick_rate_hz, p.metrics_port
        self.diag_period = p.diagnostics_period_s
        self.frame_id = p.markers_frame_id
        self.snapshot_period = 1.0 / p.snapshot_rate_hz

        # ---- tree ------------------------------------------------------------------------------------
        if p.checks_yaml.strip():
            source = "<parameter checks_yaml>"
            config = load_config_text(p.checks_yaml, source)
        else:
            source = p.checks_file or default_checks_file()
            config = load_config_file(source)
        self.clock_mono = time.monotonic
        tree = build_tree(config, clock=self.clock_mono, source=source)
        self.monitor = HealthMonitor(
            tree,
            self.robot_id,
            source=self.get_name(),
            clock=self.clock_mono,
            wall_clock=lambda: self.get_clock().now().nanoseconds / 1e9,
        )
        self.metrics = HealthMetrics(self.robot_id)
        self.alert_state = AlertStateStore(p.alert_state_dir(), self.robot_id)
        self._restore_alerts(p.restart_grace_s)
        try:  # before any thread starts, so a refusal leaves nothing behind
            self.metrics_port = self.metrics.serve(metrics_port) if metrics_port else 0
        except OSError as exc:
            raise ConfigError("metrics_port", metrics_port, f"cannot listen on 127.0.0.1: {exc.strerror}") from None

        # ---- ROS I/O ---------------------------------------------------------------------------------
        self.alert_pub = self.create_publisher(Alert, "alerts", ALERT_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE_QOS)
        self.marker_pub = self.create_publisher(MarkerArray, "health/markers", RELIABLE_QOS)
        # Topics are taken by the tick, not by per-message callbacks (ros_drain: no executor round each).
        self.topics = TopicDrain(self, self.clock_mono)
        for spec in tree.topics.values():
            qos = qos_profile_sensor_data if spec.qos == "sensor_data" else RELIABLE_QOS
            self.topics.add(load_message_class(spec.msg_type), spec.topic, qos, tree.hub.topics[spec.topic])
        self.create_service(AcknowledgeAlert, "~/acknowledge_alert", self._on_acknowledge)
        if any(c.kind in ("nodes_missing", "topic_silence") for c in tree.checks):
            self.create_timer(GRAPH_REFRESH_S, self._refresh_graph)
            self._refresh_graph()

        # ---- transports --------------------------------------------------------------------------------
        self.codec = Codec()
        self.envelopes = EnvelopeFactory(self.robot_id)
        self.alert_type_hash = self.codec.registry.type_hash(Alert)
        self.mqtt: Any = None  # built first: its config errors stop the start before any thread runs
        if p.mqtt.host:
            from robot_platform.health.mqtt_out import MqttAlertPublisher

            self.mqtt = MqttAlertPublisher(
                **dataclasses.asdict(p.mqtt),
                on_result=lambda r: self.metrics.count_alert("mqtt", r),
            )
        self.nats: NatsPublisher | None = None
        if p.nats_url:
            self.nats = NatsPublisher(
                p.nats_url,
                subjects.alerts(self.robot_id),
                stream=p.nats_alert_stream,
                link=tree.hub.link("nats"),
                clock=self.clock_mono,
                on_result=lambda kind, result: self.metrics.count_alert(f"nats_{kind}", result),
                name=f"health_monitor_tree.{self.robot_id}",
                request_subjects=(subjects.health(self.robot_id, "ack"), subjects.health(self.robot_id, "silence")),
                outbox_max=p.outbox_max,
                outbox_path=p.outbox_path(),
                inbox_owner=self.robot_id,
            )
            self._report_outbox()
            self.nats.start()
        elif any(c.kind == "nats_link" and c.link.name == "nats" for c in tree.checks):  # type: ignore[attr-defined]
            # A check of a link this node was told not to use would raise forever: say so, report it as up.
            self.get_logger().warning("nats_url is empty: the nats_link check reports the link as disabled/up")
            tree.hub.link("nats").set(True, self.clock_mono(), "NATS output disabled (nats_url empty)")
        if self.mqtt is not None:
            self.mqtt.start()
        self._last_diag = -1e9
        self._last_snapshot = -1e9
        self.create_timer(1.0 / tick_rate, self._on_tick)
        self.get_logger().info(
            f"health tree: {len(tree.checks)} checks in {len({c.group for c in tree.checks})} groups, "
            f"{len(tree.topics)} topics, tick {tick_rate:g} Hz, metrics "
            f"{f'127.0.0.1:{self.metrics_port}' if self.metrics_port else 'off'}, nats {p.nats_url or 'off'}"
        )

    def _restore_alerts(self, grace_s: float) -> None:
        """Take over the alerts the previous process left active (see monitor.restore); say what happened."""
        store = self.alert_state
        taken, orphans = self.monitor.restore(store.load(), grace_s)
        silenced = self.monitor.restore_silences(store.silences)
        if silenced:
            self.get_logger().info(f"silences still running after the restart, kept: {silenced}")
        where = str(store.path) if store.durable else "not kept (persist_alerts false or state_dir unusable)"
        self.get_logger().info(
            f"active alert state: {where}; {len(taken)} alert(s) taken over {taken} (grace {grace_s:g}s + debounce), "
            f"{len(orphans)} cleared at once (check gone or its code changed) {orphans}"
        )
        if store.corrupt:
            self.metrics.count_alert("alert_state", "corrupt", store.corrupt)
        if store.dropped:
            self.metrics.count_alert("alert_state", "dropped", store.dropped)

    def _save_alert_state(self) -> None:
        """Persist the published active alerts if they changed (before publishing: no ghost on a crash)."""
        errors = self.alert_state.store_errors
        self.alert_state.save(self.monitor.active_alerts(), self.monitor.running_silences())
        if self.alert_state.store_errors != errors:
            self.metrics.count_alert("alert_state", "store_error")

    def _report_outbox(self) -> None:
        """Say where alerts wait for NATS and count what the outbox had to recover from at open."""
        assert self.nats is not None
        box = self.nats.outbox
        where = str(box.path) if box.durable else "memory only"
        self.get_logger().info(f"NATS alert outbox: {where}, {box.replayed} alert(s) to replay, max {box.max_items}")
        if box.corrupt:
            self.metrics.count_alert("nats_outbox", "corrupt", box.corrupt)
        if box.store_errors:
            self.metrics.count_alert("nats_outbox", "store_error", box.store_errors)

    # ---- tick ------------------------------------------------------------------------------------------

    def _on_tick(self) -> None:
        self.topics.drain()
        if self.nats is not None:
            for request in self.nats.take_requests():
                request.reply(self._operator_request(request.subject, request.payload))
        result = self.monitor.tick()
        now = self.clock_mono()
        if result.starved_s > 0:
            self.get_logger().warning(
                f"health tree did not tick for {result.starved_s:.1f}s (starved): topic verdicts over it are held"
            )
        for check, event in result.events:
            if event.alert_relevant:
                note = ""
                if event.restored:
                    note = " (restored alert seen again)" if event.state is event.previous else " (restored alert gone)"
                self.get_logger().info(
                    f"{check.name}: {event.previous.name} -> {event.state.name} "
                    f"[{event.code} sev {event.severity}] {event.message}{note}"
                )
        if result.alerts:
            self._save_alert_state()
        for record in result.alerts + result.notices:
            self._publish_alert(record)
        self.metrics.observe_tick(self.monitor, result, now)
        if self.nats is not None:
            self.metrics.observe_outbox(self.nats.pending(), self.nats.outbox.durable)
        if result.events or now - self._last_diag >= self.diag_period:
            self._last_diag = now
            self._publish_diagnostics()
            self._publish_markers()
        if self.nats is not None and (result.events or now - self._last_snapshot >= self.snapshot_period):
            self._last_snapshot = now
            self._publish_snapshot(result)

    def _publish_alert(self, record: AlertRecord) -> None:
        msg = alert_msg(record)
        self.alert_pub.publish(msg)
        self.metrics.count_alert("ros", "ok")
        if self.nats is not None:
            env = self.envelopes.make(
                ALERT_TYPE,
                self.alert_type_hash,
                self.alert_pub.topic_name,
                stamp=f"{msg.stamp.sec}.{msg.stamp.nanosec:09d}",
            )
            # Deterministic id per alert state: a re-sent copy is dropped by JetStream's duplicate window.
            state = "raise" if record.active else "clear"
            env = dataclasses.replace(
                env, msg_id=f"{record.alert_id}.{state}.{record.severity}.{int(record.acknowledged)}"
            )
            self.nats.publish_alert(OutMsg(subjects.alerts(self.robot_id), self.codec.encode(msg), env.headers()))
        if self.mqtt is not None:
            self.mqtt.publish(json.dumps(record.to_dict(), sort_keys=True).encode())

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        for s in outputs.diagnostics(self.monitor):
            array.status.append(
                DiagnosticStatus(
                    level=bytes([s.level]),
                    name=s.name,
                    message=s.message,
                    hardware_id=s.hardware_id,
                    values=[KeyValue(key=k, value=v) for k, v in s.values],
                )
            )
        self.diag_pub.publish(array)

    def _publish_markers(self) -> None:
        stamp = self.get_clock().now().to_msg()
        clear = Marker(action=Marker.DELETEALL, ns="health_faults")
        clear.header.frame_id = self.frame_id
        array = MarkerArray(markers=[clear])
        for spec in outputs.markers(self.monitor, self.frame_id):
            m = Marker(ns=spec.ns, id=spec.id, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, text=spec.text)
            m.header.frame_id, m.header.stamp = spec.frame_id, stamp
            m.pose.position.z, m.pose.orientation.w = spec.z, 1.0
            m.scale.z = spec.scale_z
            m.color.r, m.color.g, m.color.b, m.color.a = spec.color
            array.markers.append(m)
        self.marker_pub.publish(array)

    def _publish_snapshot(self, result: TickResult) -> None:
        assert self.nats is not None
        body = msgpack.packb(outputs.tree_snapshot(self.monitor), use_bin_type=True)
        headers = {
            H_CONTENT_TYPE: CONTENT_TYPE,
            H_TYPE: SNAPSHOT_TYPE,
            H_ROBOT: self.robot_id,
            H_MSG_ID: f"{self.robot_id}.health.{self.monitor.tick_count}.{self.envelopes.origin}",
        }
        self.nats.publish_snapshot(OutMsg(subjects.health(self.robot_id), body, headers))

    # ---- services / graph --------------------------------------------------------------------------------

    def _on_acknowledge(
        self, req: AcknowledgeAlert.Request, res: AcknowledgeAlert.Response
    ) -> AcknowledgeAlert.Response:
        try:
            record = self.monitor.acknowledge(req.alert_id, req.user)
        except (UnknownCheckError, ValueError) as exc:
            res.success, res.message = False, str(exc)
            return res
        self.get_logger().info(f"alert {req.alert_id} ({record.code}) acknowledged by {req.user!r}")
        self._save_alert_state()
        self._publish_alert(record)
        res.success, res.message = True, f"{record.code} acknowledged"
        return res

    def _operator_request(self, subject: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Acknowledge / silence from NATS (see :mod:`operator_requests`); logs every decision (audit)."""
        result = handle_request(self.monitor, subject.rsplit(".", 1)[-1], payload)
        if result.ok:
            self.get_logger().info(f"{result.log} via NATS")
        else:
            self.get_logger().warning(f"{result.log} (NATS {subject})")
        if result.alert is not None:
            self._save_alert_state()
            self._publish_alert(result.alert)
        elif result.ok:
            self._save_alert_state()  # a silence: kept across a restart
        return result.reply

    def _refresh_graph(self) -> None:
        """Node names (nodes_missing) and each topic's publishing nodes (the witnesses of a silence)."""
        graph = self.monitor.health.hub.graph
        names = [f"{ns.rstrip('/')}/{name}" for name, ns in self.get_node_names_and_namespaces()]
        graph.set(names, self.clock_mono())
        for topic in self.monitor.health.topics:
            infos = self.get_publishers_info_by_topic(self.resolve_topic_name(topic))
            graph.set_publishers(topic, (f"{i.node_namespace.rstrip('/')}/{i.node_name}" for i in infos))

    def close(self) -> None:
        """Stop the transports and the metrics server (called by spin_node before destroy_node)."""
        if self.nats is not None:
            self.nats.close()
        if self.mqtt is not None:
            self.mqtt.close()
        self.alert_state.close()
        self.metrics.close()


def main(args: list[str] | None = None) -> int:
    # A bad tree stops the node at start with the config error's own message (file, line and key).
    return spin_node(HealthMonitorNode, args=args)


if __name__ == "__main__":
    sys.exit(main())
