"""A rigid transform between two named frames, as plain data (no rclpy, no tf2), and its ROS message.

Shared by the simulator's frames (sim/frames.py) and the control bridge's per-robot fleet trees
(bridge/fleet_tf_tree.py); :func:`to_msg` is the one place that builds geometry_msgs/TransformStamped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

IDENTITY = (0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Transform:
    parent: str
    child: str
    translation: tuple[float, float, float]
    rotation: tuple[float, float, float, float]  # quaternion x, y, z, w


def yaw_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """Rotation about z by ``yaw`` radians, as a unit quaternion (x, y, z, w)."""
    return (0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0))


def to_msg(t: Transform, stamp: Any) -> Any:
    """geometry_msgs/TransformStamped of ``t`` at ``stamp`` (imported here so plain users need no ROS)."""
    from geometry_msgs.msg import TransformStamped

    msg = TransformStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = t.parent
    msg.child_frame_id = t.child
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = t.translation
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = t.rotation
    return msg
