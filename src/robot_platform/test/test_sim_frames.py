"""robot_sim's frames (REP-105): the tree RViz needs to place scans and images on the odometry."""

from __future__ import annotations

import math

import pytest

from robot_platform.sim import frames


def rotate(q: tuple[float, float, float, float], v: tuple[float, float, float]) -> tuple[float, float, float]:
    """v rotated by unit quaternion q (x, y, z, w)."""
    x, y, z, w = q
    vx, vy, vz = v
    # t = 2 q_vec x v ; v' = v + w t + q_vec x t
    tx, ty, tz = 2 * (y * vz - z * vy), 2 * (z * vx - x * vz), 2 * (x * vy - y * vx)
    return (vx + w * tx + (y * tz - z * ty), vy + w * ty + (z * tx - x * tz), vz + w * tz + (x * ty - y * tx))


@pytest.mark.parametrize("yaw", [0.0, 0.5, math.pi / 2, -2.0, math.pi])
def test_odom_to_base_follows_the_pose(yaw: float) -> None:
    t = frames.odom_to_base(1.5, -2.0, yaw)
    assert (t.parent, t.child) == ("odom", "base_link")
    assert t.translation == (1.5, -2.0, 0.0)
    assert math.isclose(sum(c * c for c in t.rotation), 1.0)
    fx, fy, _ = rotate(t.rotation, (1.0, 0.0, 0.0))  # the base's x axis points along the heading
    assert math.isclose(fx, math.cos(yaw), abs_tol=1e-9) and math.isclose(fy, math.sin(yaw), abs_tol=1e-9)


def test_static_tree_is_rooted_at_base_link_and_names_the_sensor_frames() -> None:
    tree = {t.child: t.parent for t in frames.static_frames(with_camera=True)}
    # the frame ids robot_sim stamps on its messages all resolve to base_link
    for child in ("laser", "imu_link", "camera_optical_frame"):
        node = child
        while node != "base_link":
            node = tree[node]
    assert "camera_link" not in {t.child for t in frames.static_frames(with_camera=False)}


def test_optical_frame_looks_along_the_camera_x_axis() -> None:
    optical = next(t for t in frames.STATIC if t.child == "camera_optical_frame")
    z = rotate(optical.rotation, (0.0, 0.0, 1.0))  # optical z (forward) = camera_link x
    x = rotate(optical.rotation, (1.0, 0.0, 0.0))  # optical x (right) = camera_link -y
    y = rotate(optical.rotation, (0.0, 1.0, 0.0))  # optical y (down) = camera_link -z
    for got, want in ((z, (1, 0, 0)), (x, (0, -1, 0)), (y, (0, 0, -1))):
        assert all(math.isclose(g, w, abs_tol=1e-9) for g, w in zip(got, want, strict=True)), (got, want)
