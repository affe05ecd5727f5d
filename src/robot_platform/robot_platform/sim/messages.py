"""The simulator's sensor messages, built once and refilled for each publish.

Why: measured on the 2-vCPU VM, constructing a message (its nested messages, zeroed numpy covariance
arrays) cost the simulator more than publishing it, and converting the laser's numpy ranges into the
message's ``array('f')`` value by value cost more than computing them. rclpy serializes a message when it
is published, so one object per sensor can be reused: only the fields that change are set here. Not
thread-safe: only the sensor clock's thread (sensor_clock.py) calls these.
"""

from __future__ import annotations

import array
import math
from typing import Any

import numpy as np
from nav_msgs.msg import Odometry
from sensor_msgs.msg import BatteryState, Imu, LaserScan

from robot_platform.sim.model import LaserModel, RobotModel

GRAVITY = 9.80665  # m/s², on the IMU's z axis (REP-145: gravity included)


class SensorMessages:
    """One reusable message per sensor; each method fills its message for ``stamp`` and returns it."""

    def __init__(self, laser: LaserModel, battery_capacity_ah: float) -> None:
        self._odom = Odometry()
        self._odom.header.frame_id = "odom"
        self._odom.child_frame_id = "base_link"
        self._odom.pose.covariance[0] = self._odom.pose.covariance[7] = 0.01
        self._odom.pose.covariance[35] = 0.02
        self._odom.twist.covariance[0] = self._odom.twist.covariance[35] = 0.001

        self._imu = Imu()
        self._imu.header.frame_id = "imu_link"
        self._imu.linear_acceleration.z = GRAVITY
        cov = self._imu.orientation_covariance
        cov[0] = cov[4] = cov[8] = 1e-3

        self._scan = LaserScan()
        self._scan.header.frame_id = "laser"
        self._scan.angle_min = laser.angle_min
        self._scan.angle_max = laser.angle_max
        self._scan.angle_increment = laser.angle_increment
        self._scan.range_min = laser.range_min
        self._scan.range_max = laser.range_max

        self._ranges: tuple[np.ndarray, array.array] | None = None  # the last ranges, as sent

        self._battery = BatteryState()
        self._battery.header.frame_id = "base_link"
        self._battery.capacity = self._battery.design_capacity = battery_capacity_ah
        self._battery.power_supply_status = BatteryState.POWER_SUPPLY_STATUS_DISCHARGING
        self._battery.power_supply_health = BatteryState.POWER_SUPPLY_HEALTH_GOOD
        self._battery.power_supply_technology = BatteryState.POWER_SUPPLY_TECHNOLOGY_LION
        self._battery.present = True
        self._capacity_ah = battery_capacity_ah

    def odom(self, m: RobotModel, stamp: Any) -> Odometry:
        msg = self._odom
        msg.header.stamp = stamp
        pose = msg.pose.pose
        pose.position.x = m.pose.x
        pose.position.y = m.pose.y
        pose.orientation.z = math.sin(m.pose.yaw / 2.0)
        pose.orientation.w = math.cos(m.pose.yaw / 2.0)
        msg.twist.twist.linear.x = m.linear
        msg.twist.twist.angular.z = m.angular
        return msg

    def imu(self, m: RobotModel, stamp: Any) -> Imu:
        msg = self._imu
        msg.header.stamp = stamp
        msg.orientation.z = math.sin(m.pose.yaw / 2.0)
        msg.orientation.w = math.cos(m.pose.yaw / 2.0)
        msg.angular_velocity.z = m.angular
        msg.linear_acceleration.x = m.linear_accel_now
        msg.linear_acceleration.y = m.linear * m.angular  # centripetal
        return msg

    def scan(self, ranges: np.ndarray, scan_time_s: float, stamp: Any) -> LaserScan:
        """``ranges``: float32 metres (LaserModel.ranges, which returns the same array while the robot
        stands still: then the message keeps its ranges)."""
        msg = self._scan
        msg.header.stamp = stamp
        msg.scan_time = scan_time_s
        if self._ranges is None or self._ranges[0] is not ranges:
            values = array.array("f")  # taken as is by the field; a numpy array is copied value by value
            values.frombytes(np.ascontiguousarray(ranges, dtype=np.float32).tobytes())
            msg.ranges = values
            self._ranges = (ranges, values)
        return msg

    def battery(self, m: RobotModel, stamp: Any) -> BatteryState:
        msg = self._battery
        msg.header.stamp = stamp
        msg.voltage = m.battery_voltage()
        msg.current = m.battery_current()
        msg.charge = m.battery * self._capacity_ah
        msg.percentage = m.battery
        return msg
