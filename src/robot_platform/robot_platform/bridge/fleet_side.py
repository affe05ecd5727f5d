"""Control mode of ``nats_bridge``: the fleet mirror and the fleet commands.

Why a module of its own: in control mode the bridge also mirrors every robot's telemetry into
``/fleet/<id>/<topic>`` (frame ids prefixed, each robot's TF tree under ``fleet``) and sends
``/fleet/<id>/<topic>`` commands to ``robots.<id>.cmd.<topic>``. None of it exists on a robot, so it
lives apart from the node's common wiring (node.py) and from the robot's service side (robot_side.py).
The node hands itself in: this class creates its publishers and declares its parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.node import Node
from rclpy.qos import QoSProfile

from robot_platform.bridge import fleet_tf, fleet_tf_tree
from robot_platform.bridge.core import BridgeCore, OutRoute
from robot_platform.bridge.mirror import Mirror
from robot_platform.bridge.node_params import CONTROL_PARAMS, ROUTE_PARAMS, qos
from robot_platform.common.params import declare_params
from robot_platform.exceptions import ConfigError
from robot_platform.messaging import subjects


class FleetSide:
    """Mirrors robots' ``robots.<id>.ros.<topic>`` (or its overview copy) into ROS and routes fleet commands
    out to NATS.

    Parameters: :data:`~.node_params.CONTROL_PARAMS` and ``commands.<n>.*`` (declared here).
    Publishers: ``<mirror.namespace>/<id>/<topic>`` for each mirrored message's topic, created on the
    first message; ``/tf`` and ``/tf_static`` of the robots (fleet_tf.py) with ``mirror.frame_prefix``.
    Subscriptions: ``<mirror.namespace>/<id>/<topic>`` of each command and fleet robot (through the
    node's ``subscribe``, i.e. the reader thread).
    """

    def __init__(self, node: Node, core: BridgeCore, dedup_capacity: int) -> None:
        self._node = node
        self._core = core
        p = declare_params(node, CONTROL_PARAMS)
        self.fleet: list[str] = p["fleet_robots"]
        self.command_names: list[str] = p["commands.names"]
        self.mirror = Mirror(
            core.codec,
            p["mirror.topics"],
            p["mirror.robots"],
            p["mirror.namespace"],
            dedup_capacity,
            node.get_logger().warning,
            p["mirror.max_robots"],
            p["mirror.overview_topics"],
        )
        self._qos = qos(p["mirror.reliability"], "volatile", p["mirror.depth"], "mirror")
        self._frame_prefix: bool = p["mirror.frame_prefix"]
        try:
            origins = fleet_tf_tree.parse_origins(p["mirror.origins"])
        except ValueError as exc:
            raise ConfigError("mirror.origins", p["mirror.origins"], str(exc)) from None
        self._fleet_tf = fleet_tf.make(node, origins) if self._frame_prefix else None
        if self._frame_prefix and self._fleet_tf is None:
            node.get_logger().warning("tf2_msgs is not installed (pip-only ROS): mirrored frames are "
                                      "prefixed, but no /tf is published for them")  # fmt: skip
        self._pubs: dict[str, Any] = {}

    @property
    def namespace(self) -> str:
        return self.mirror.namespace

    def subscriptions(self) -> list[str]:
        """NATS subjects of the mirrored topics."""
        return self.mirror.subscriptions()

    def add_commands(self, subscribe: Callable[[OutRoute, QoSProfile], None]) -> None:
        """/fleet/<id>/<topic> published here goes to robots.<id>.cmd.<topic> for each fleet robot."""
        for name in self.command_names:
            prefix = f"commands.{name}"
            r = declare_params(self._node, ROUTE_PARAMS, prefix)
            if r["topic"] in self.mirror.topics:
                raise ConfigError(f"{prefix}.topic", r["topic"], "also mirrored: it would loop")
            route_qos = qos(r["reliability"], r["durability"], r["depth"], prefix)
            for robot in self.fleet:
                local = f"{self.namespace}/{subjects.check_robot_id(robot)}{subjects.check_topic(r['topic'])}"
                route = self._core.add_out_route(local, r["type"], 0.0, subjects.command(robot, r["topic"]))
                subscribe(route, route_qos)

    def on_message(self, subject: str, headers: dict[str, str] | None, data: bytes) -> bool:
        """NATS thread: mirror a robot's ``robots.<id>.ros.<topic>`` (or ``.overview.``, see mirror.py); False
        if the subject is not one."""
        if subject.split(".")[2:3] not in (["ros"], ["overview"]):
            return False
        mirrored = self.mirror.on_message(subject, headers, data)
        if mirrored is None:
            return True
        if self._frame_prefix:
            fleet_tf_tree.prefix_frames(mirrored.msg, mirrored.robot_id)
            if self._fleet_tf is not None:
                self._fleet_tf.on_mirrored(mirrored.robot_id, mirrored.msg)
        pub = self._pubs.get(mirrored.ros_topic)
        if pub is None:
            pub = self._node.create_publisher(mirrored.cls, mirrored.ros_topic, self._qos)
            self._pubs[mirrored.ros_topic] = pub
            self._node.get_logger().info(f"mirroring {subject} -> {mirrored.ros_topic}")
        pub.publish(mirrored.msg)
        return True

    def snapshot(self) -> dict[str, Any]:
        return self.mirror.snapshot()
