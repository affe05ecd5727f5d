"""rclpy glue of :mod:`.fleet_tf_tree`: the control bridge's per-robot TF trees (control mode only).

Publishes on the control graph's ``/tf`` (each mirrored Odometry as ``<id>/odom -> <id>/base_link``) and
``/tf_static`` (``fleet -> <id>/odom`` and the sensor mounts of every robot seen so far; transient local,
the whole set re-sent when a robot appears, as tf2's static broadcaster does). Needs tf2_msgs (ROS from
apt, where RViz runs); without it :func:`make` returns None and the node logs that once.
"""

from __future__ import annotations

import threading
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from robot_platform.bridge.fleet_tf_tree import odometry_frame, static_frames
from robot_platform.common.transforms import to_msg


class FleetTf:
    """Per-robot TF trees from mirrored odometry; thread-safe (the mirror runs in the NATS thread)."""

    def __init__(self, node: Node, tf_message: type, origins: dict[str, tuple[float, float, float]]) -> None:
        self._node = node
        self._tf_message = tf_message
        self._origins = origins
        self._lock = threading.Lock()
        self._static: dict[str, list[Any]] = {}  # robot -> its TransformStamped messages
        self._tf = node.create_publisher(tf_message, "/tf", QoSProfile(depth=100))
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)  # fmt: skip
        self._tf_static = node.create_publisher(tf_message, "/tf_static", latched)

    def on_mirrored(self, robot_id: str, msg: Any) -> None:
        """Called with every mirrored (already frame-prefixed) message of ``robot_id``."""
        with self._lock:
            if robot_id not in self._static:
                stamp = self._node.get_clock().now().to_msg()
                frames = static_frames(robot_id, self._origins.get(robot_id, (0.0, 0.0, 0.0)))
                self._static[robot_id] = [to_msg(f, stamp) for f in frames]
                every = [t for robot in sorted(self._static) for t in self._static[robot]]
                self._tf_static.publish(self._tf_message(transforms=every))
        if hasattr(msg, "child_frame_id") and hasattr(msg, "pose") and hasattr(msg.pose, "pose"):
            frame = odometry_frame(msg)
            if frame is not None:
                self._tf.publish(self._tf_message(transforms=[to_msg(frame, msg.header.stamp)]))


def make(node: Node, origins: dict[str, tuple[float, float, float]]) -> FleetTf | None:
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        return None
    return FleetTf(node, TFMessage, origins)
