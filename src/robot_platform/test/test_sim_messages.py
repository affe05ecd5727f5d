"""The simulator's reused sensor messages (sim/messages.py): each publish carries the model's state now."""

from __future__ import annotations

import array
import math

import pytest
from builtin_interfaces.msg import Time

from robot_platform.sim.messages import GRAVITY, SensorMessages
from robot_platform.sim.model import LaserModel, Pose2D, RobotModel


@pytest.fixture()
def parts() -> tuple[SensorMessages, RobotModel, LaserModel]:
    model, laser = RobotModel(), LaserModel(beams=360, room_half_size=6.0, pillar=(2.0, 0.0, 0.5))
    return SensorMessages(laser, model.battery_cfg.capacity_ah), model, laser


def test_odometry_carries_the_pose_and_stamp_of_each_call(parts) -> None:
    messages, model, _ = parts
    first = messages.odom(model, Time(sec=1, nanosec=5))
    assert (first.header.frame_id, first.child_frame_id) == ("odom", "base_link")
    assert first.pose.pose.position.x == 0.0 and first.pose.pose.orientation.w == pytest.approx(1.0)
    assert first.pose.covariance[0] == pytest.approx(0.01) and first.twist.covariance[35] == pytest.approx(0.001)
    model.pose = Pose2D(x=2.0, y=-1.0, yaw=math.pi / 2)
    model.linear, model.angular = 0.5, 0.25
    second = messages.odom(model, Time(sec=2, nanosec=0))
    assert second.header.stamp.sec == 2
    assert (second.pose.pose.position.x, second.pose.pose.position.y) == (2.0, -1.0)
    assert second.pose.pose.orientation.z == pytest.approx(math.sin(math.pi / 4))
    assert (second.twist.twist.linear.x, second.twist.twist.angular.z) == (0.5, 0.25)


def test_imu_and_battery_follow_the_model(parts) -> None:
    messages, model, _ = parts
    model.linear, model.angular = 1.0, 0.5
    imu = messages.imu(model, Time(sec=3))
    assert imu.header.frame_id == "imu_link" and imu.linear_acceleration.z == pytest.approx(GRAVITY)
    assert imu.angular_velocity.z == 0.5 and imu.linear_acceleration.y == pytest.approx(0.5)
    model.battery = 0.42
    battery = messages.battery(model, Time(sec=4))
    assert battery.percentage == pytest.approx(0.42) and battery.present
    assert battery.charge == pytest.approx(0.42 * model.battery_cfg.capacity_ah)


def test_scan_ranges_change_with_the_pose_and_are_kept_while_still(parts) -> None:
    messages, _, laser = parts
    scan = messages.scan(laser.ranges(Pose2D()), 0.1, Time(sec=5))
    assert isinstance(scan.ranges, array.array) and len(scan.ranges) == 360
    assert scan.ranges[180] == pytest.approx(1.5, abs=0.01) and scan.scan_time == pytest.approx(0.1)
    kept = scan.ranges
    assert messages.scan(laser.ranges(Pose2D()), 0.1, Time(sec=6)).ranges is kept
    moved = messages.scan(laser.ranges(Pose2D(x=1.0)), 0.1, Time(sec=7))
    assert moved.ranges[180] == pytest.approx(0.5, abs=0.01) and moved.header.stamp.sec == 7
