"""robot_sim as a real node in its own process, observed from a real rclpy node in the test."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import rclpy
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import BatteryState, Image, Imu, LaserScan
from std_srvs.srv import SetBool

from robot_platform.launcher.supervisor import ProcessGroup
from robot_platform_interfaces.msg import RobotState
from robot_platform_interfaces.srv import InjectFault

RATES = {"odom": 20.0, "imu": 50.0, "scan": 10.0, "battery_state": 2.0, "camera/image_raw": 5.0}
TYPES = {"odom": Odometry, "imu": Imu, "scan": LaserScan, "battery_state": BatteryState,
         "camera/image_raw": Image, "robot_state": RobotState}


class Observer:
    """An rclpy node that counts and keeps the last message of each sim topic."""

    def __init__(self) -> None:
        self.node = Node("sim_observer")
        self.stamps: dict[str, list[float]] = defaultdict(list)
        self.last: dict[str, object] = {}
        for topic, msg_type in TYPES.items():
            self.node.create_subscription(msg_type, topic, self._make_cb(topic), qos_profile_sensor_data)
        self.cmd_pub = self.node.create_publisher(Twist, "cmd_vel", 10)
        self.fault_client = self.node.create_client(InjectFault, "robot_sim/inject_fault")
        self.estop_client = self.node.create_client(SetBool, "robot_sim/estop")

    def _make_cb(self, topic: str):
        def cb(msg: object) -> None:
            self.stamps[topic].append(time.monotonic())
            self.last[topic] = msg

        return cb

    def spin_until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.05)
            if predicate():
                return
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}")

    def spin_for(self, seconds: float, each=None) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if each:
                each()
            rclpy.spin_once(self.node, timeout_sec=0.02)

    def inject(self, fault: str, target: str = "", value: float = 0.0) -> InjectFault.Response:
        assert self.fault_client.wait_for_service(timeout_sec=10.0), "inject_fault service not found"
        future = self.fault_client.call_async(InjectFault.Request(fault=fault, target=target, value=value))
        self.spin_until(future.done, 10.0, f"inject_fault {fault}")
        return future.result()


@pytest.fixture
def sim(ros_domain: int, tmp_path: Path) -> Iterator[Observer]:
    group = ProcessGroup(log_dir=tmp_path)
    group.start("robot_sim", [
        sys.executable, "-m", "robot_platform.sim.node", "--ros-args", "-p", "robot_id:=r1",
        "-p", "enable_camera:=true", "-p", "camera_width:=160", "-p", "camera_height:=120",
        "-p", f"camera_rate_hz:={RATES['camera/image_raw']}",
        "-p", f"battery_rate_hz:={RATES['battery_state']}",
    ])
    rclpy.init()
    observer = Observer()
    try:
        observer.spin_until(lambda: len(observer.last) == len(TYPES), 20.0, "every sim topic")
        yield observer
    finally:
        observer.node.destroy_node()
        rclpy.try_shutdown()
        codes = group.stop_all()
        if codes["robot_sim"] not in (0, None):
            sys.stderr.write(group.child("robot_sim").output())
        assert codes["robot_sim"] == 0, f"robot_sim did not exit cleanly on SIGINT: {codes}"


def measured_rate(stamps: list[float], since: float) -> float:
    window = [s for s in stamps if s >= since]
    if len(window) < 2:
        return 0.0
    return (len(window) - 1) / (window[-1] - window[0])


def test_publishes_every_topic_at_its_configured_rate(sim: Observer) -> None:
    start = time.monotonic()
    sim.spin_for(3.0)
    for topic, rate in RATES.items():
        got = measured_rate(sim.stamps[topic], start)
        assert got == pytest.approx(rate, rel=0.25), f"{topic}: {got:.1f} Hz, configured {rate} Hz"
    image = sim.last["camera/image_raw"]
    assert (image.width, image.height, image.encoding, len(image.data)) == (160, 120, "rgb8", 160 * 120 * 3)
    scan = sim.last["scan"]
    assert len(scan.ranges) == 360 and scan.header.frame_id == "laser"


def test_odometry_follows_cmd_vel(sim: Observer) -> None:
    twist = Twist()
    twist.linear.x, twist.angular.z = 0.6, 0.0
    sim.spin_for(2.5, each=lambda: sim.cmd_pub.publish(twist))
    odom = sim.last["odom"]
    assert odom.twist.twist.linear.x == pytest.approx(0.6, abs=0.05)
    assert odom.pose.pose.position.x > 0.5
    assert odom.header.frame_id == "odom" and odom.child_frame_id == "base_link"


def test_injected_faults_take_effect(sim: Observer) -> None:
    # Speed cap: commanded 0.8 m/s, achieved at most 0.3 m/s.
    assert sim.inject(InjectFault.Request.FAULT_SPEED_CAP, value=0.3).success
    twist = Twist()
    twist.linear.x = 0.8
    sim.spin_for(2.0, each=lambda: sim.cmd_pub.publish(twist))
    assert sim.last["odom"].twist.twist.linear.x == pytest.approx(0.3, abs=0.01)

    # Silenced sensor: no scan for a second, other topics go on.
    assert sim.inject(InjectFault.Request.FAULT_SILENCE_SENSOR, target="scan").success
    sim.spin_for(0.3)
    silenced_at = time.monotonic()
    sim.spin_for(1.0)
    assert not [s for s in sim.stamps["scan"] if s > silenced_at]
    assert [s for s in sim.stamps["odom"] if s > silenced_at]

    # Battery level, then clear restores the scan.
    assert sim.inject(InjectFault.Request.FAULT_BATTERY_LEVEL, value=0.1).success
    sim.spin_for(1.2)
    assert sim.last["battery_state"].percentage == pytest.approx(0.1, abs=0.01)
    assert sim.inject(InjectFault.Request.FAULT_CLEAR).success
    cleared_at = time.monotonic()
    sim.spin_until(lambda: sim.stamps["scan"][-1] > cleared_at, 5.0, "scan after clear")


def test_bad_fault_requests_are_refused(sim: Observer) -> None:
    res = sim.inject(InjectFault.Request.FAULT_SILENCE_SENSOR, target="lidar9")
    assert not res.success and "unknown sensor" in res.message
    res = sim.inject("explode")
    assert not res.success and "unknown fault" in res.message
    sim.spin_for(0.5)  # the node keeps publishing
    assert sim.stamps["odom"][-1] > time.monotonic() - 0.5


def test_robot_state_reports_motion_and_estop(sim: Observer) -> None:
    twist = Twist()
    twist.linear.x = 0.5
    sim.spin_for(2.0, each=lambda: sim.cmd_pub.publish(twist))
    state = sim.last["robot_state"]
    assert state.mode == RobotState.MODE_MOVING and state.robot_id == "r1"
    assert state.commanded_linear_speed == pytest.approx(0.5) and state.linear_speed > 0.3
    assert sim.estop_client.wait_for_service(timeout_sec=10.0)
    future = sim.estop_client.call_async(SetBool.Request(data=True))
    sim.spin_until(future.done, 10.0, "estop service")
    sim.spin_until(lambda: sim.last["robot_state"].mode == RobotState.MODE_ESTOP, 2.5, "ESTOP in robot_state")
