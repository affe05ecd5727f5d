"""Mirrored frames on the control server: one prefixed TF tree per robot under the fleet frame."""

from __future__ import annotations

import math

import pytest
from nav_msgs.msg import Odometry
from sensor_msgs.msg import LaserScan
from visualization_msgs.msg import Marker, MarkerArray

from robot_platform.bridge import fleet_tf_tree as ff


def test_odometry_and_scan_frames_get_the_robot_prefix() -> None:
    odom = Odometry()
    odom.header.frame_id, odom.child_frame_id = "odom", "base_link"
    odom.pose.pose.position.x = 1.5
    ff.prefix_frames(odom, "r1")
    assert (odom.header.frame_id, odom.child_frame_id) == ("r1/odom", "r1/base_link")
    assert odom.pose.pose.position.x == 1.5
    scan = LaserScan()
    scan.header.frame_id = "/laser"  # a leading slash is not a tf2 frame: dropped
    scan.ranges = [1.0, 2.0]
    assert ff.prefix_frames(scan, "r2").header.frame_id == "r2/laser" and list(scan.ranges) == [1.0, 2.0]


def test_message_arrays_are_walked_and_prefixing_is_idempotent() -> None:
    markers = MarkerArray(markers=[Marker(), Marker()])
    markers.markers[0].header.frame_id = "base_link"
    ff.prefix_frames(markers, "r1")
    ff.prefix_frames(markers, "r1")
    assert [m.header.frame_id for m in markers.markers] == ["r1/base_link", ""]


def test_static_tree_and_odometry_transform() -> None:
    frames = ff.static_frames("r3", origin=(5.0, -2.0, math.pi / 2))
    root = frames[0]
    assert (root.parent, root.child, root.translation) == ("fleet", "r3/odom", (5.0, -2.0, 0.0))
    assert math.isclose(root.rotation[2], math.sin(math.pi / 4))
    assert math.isclose(root.rotation[3], math.cos(math.pi / 4))
    assert {(f.parent, f.child) for f in frames[1:]} == {("r3/base_link", "r3/laser"), ("r3/base_link", "r3/imu_link")}
    odom = Odometry()
    odom.header.frame_id, odom.child_frame_id = "r3/odom", "r3/base_link"
    odom.pose.pose.position.y = 2.0
    odom.pose.pose.orientation.w = 1.0
    moved = ff.odometry_frame(odom)
    assert moved is not None and (moved.parent, moved.child, moved.translation[1]) == ("r3/odom", "r3/base_link", 2.0)
    assert ff.odometry_frame(Odometry()) is None


def test_origins_parse_and_bad_entries_are_named() -> None:
    assert ff.parse_origins("r1:0,0,0; r2:5,0,1.57") == {"r1": (0.0, 0.0, 0.0), "r2": (5.0, 0.0, 1.57)}
    assert ff.parse_origins("") == {}
    for bad in ("r1:0,0", "r1:a,b,c", ":1,2,3", "r1:nan,0,0"):
        with pytest.raises(ValueError, match="origin"):
            ff.parse_origins(bad)
