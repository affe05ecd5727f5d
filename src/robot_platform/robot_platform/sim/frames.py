"""The simulated robot's coordinate frames (REP-105): what robot_sim publishes on /tf and /tf_static.

    odom -> base_link          dynamic, from the integrated pose (with every odometry message)
    base_link -> laser         static: the lidar sits on the base's centre (the ray-cast origin), 0.2 m up
    base_link -> imu_link      static
    base_link -> camera_link -> camera_optical_frame   static (optical frame: z forward, x right, y down,
                                                       REP-103's camera convention)

Plain Python (no rclpy, no tf2): the node turns these into geometry_msgs/TransformStamped when the
tf2_msgs interface package is importable (a ROS install from apt; the pip wheels lack it).
"""

from __future__ import annotations

from robot_platform.common.transforms import IDENTITY, Transform, yaw_quaternion

ODOM = "odom"
BASE = "base_link"


# camera_link (x forward) -> optical frame (z forward, x right, y down): roll -90 deg, then yaw -90 deg
OPTICAL = (-0.5, 0.5, -0.5, 0.5)

STATIC: tuple[Transform, ...] = (
    Transform(BASE, "laser", (0.0, 0.0, 0.2), IDENTITY),
    Transform(BASE, "imu_link", (0.0, 0.0, 0.05), IDENTITY),
    Transform(BASE, "camera_link", (0.15, 0.0, 0.3), IDENTITY),
    Transform("camera_link", "camera_optical_frame", (0.0, 0.0, 0.0), OPTICAL),
)


def odom_to_base(x: float, y: float, yaw: float) -> Transform:
    """The dynamic odom -> base_link transform for a planar pose."""
    return Transform(ODOM, BASE, (x, y, 0.0), yaw_quaternion(yaw))


def static_frames(with_camera: bool) -> tuple[Transform, ...]:
    return tuple(t for t in STATIC if with_camera or "camera" not in t.child)
