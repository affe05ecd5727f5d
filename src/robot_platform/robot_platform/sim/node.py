"""ROS 2 node ``robot_sim``: a simulated differential-drive robot publishing standard messages.

Thin glue over :mod:`robot_platform.sim.model`; the physics, battery, lidar and camera live there.

Parameters (the table PARAMS below, repeated in config/robot.yaml):
    robot_id (str, required)            robot name, used in frame ids' documentation and logs
    odom_rate_hz, imu_rate_hz, scan_rate_hz, battery_rate_hz, camera_rate_hz (float)
    enable_camera (bool, read-only)     publish /camera/image_raw (640x480 rgb8); off by default
    publish_tf (bool, read-only)        publish the frames of :mod:`robot_platform.sim.frames` on /tf
    camera_width, camera_height (int, read-only)
    max_linear_speed, max_angular_speed (float, read-only)   base limits, m/s and rad/s
    battery_initial (float, read-only)  starting charge, 0..1
    faults.silenced_sensors (str)       comma-separated sensors that stop publishing:
                                        odom, imu, scan, battery_state, camera
    faults.speed_cap (float)            achieved linear speed is capped here (m/s); < 0 means no cap
    faults.battery_drain_multiplier (float)  1.0 is normal drain

Subscriptions:  cmd_vel (geometry_msgs/Twist)
Publishers:     odom (nav_msgs/Odometry, reliable), imu (sensor_msgs/Imu, sensor QoS),
                scan (sensor_msgs/LaserScan, sensor QoS), battery_state (sensor_msgs/BatteryState),
                camera/image_raw (sensor_msgs/Image, sensor QoS, only with enable_camera),
                robot_state (robot_platform_interfaces/RobotState, 1 Hz: mode, battery, speeds, pose; the
                alert and deployment fields are left to the nodes that own them),
                /tf (odom -> base_link with each odometry message) and /tf_static (laser, imu_link,
                camera frames; transient local) when publish_tf is on and tf2_msgs is importable
                (ROS from apt; the pip wheels have no tf2_msgs: then a warning once, no TF)
Services:       ~/inject_fault (robot_platform_interfaces/InjectFault),
                ~/estop and ~/pause (std_srvs/SetBool): latch an emergency stop / pause motion
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable

import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import BatteryState, Image, Imu, LaserScan
from std_srvs.srv import SetBool

from robot_platform.common.node_main import spin_node
from robot_platform.common.params import REQUIRED, Param, ParamTable, declare_params
from robot_platform.common.transforms import to_msg
from robot_platform.sim import frames
from robot_platform.sim.messages import SensorMessages
from robot_platform.sim.model import SENSORS, BaseConfig, BatteryConfig, CameraModel, LaserModel, RobotModel
from robot_platform.sim.sensor_clock import SensorClock
from robot_platform_interfaces.msg import RobotState
from robot_platform_interfaces.srv import InjectFault

RELIABLE_DEPTH = 10
ROBOT_STATE_PERIOD_S = 1.0
MOVING_THRESHOLD = 0.01  # m/s or rad/s: below this the robot counts as standing still


PARAMS: tuple[Param, ...] = (
    Param("robot_id", str, REQUIRED, "Robot name"),
    Param("odom_rate_hz", float, 20.0, "Odometry rate (Hz)", (0.1, 200.0), read_only=False),
    Param("imu_rate_hz", float, 50.0, "IMU rate (Hz)", (0.1, 400.0), read_only=False),
    Param("scan_rate_hz", float, 10.0, "Laser scan rate (Hz)", (0.1, 40.0), read_only=False),
    Param("battery_rate_hz", float, 1.0, "Battery rate (Hz)", (0.1, 50.0), read_only=False),
    Param("camera_rate_hz", float, 30.0, "Camera rate (Hz)", (0.1, 60.0), read_only=False),
    Param("enable_camera", bool, False, "Publish camera/image_raw"),
    Param("camera_width", int, 640, "Camera width (px)"),
    Param("camera_height", int, 480, "Camera height (px)"),
    Param("max_linear_speed", float, 1.0, "Base speed limit (m/s)"),
    Param("max_angular_speed", float, 1.5, "Base yaw rate limit (rad/s)"),
    Param("battery_initial", float, 1.0, "Initial charge (0..1)", (0.0, 1.0)),
    Param("publish_tf", bool, True, "Publish odom -> base_link and the sensor frames on /tf"),
    # Fault injection, changeable at run time (validated in _validate_params):
    Param("faults.silenced_sensors", str, "", "Comma-separated sensors that stop publishing", read_only=False),
    Param("faults.speed_cap", float, -1.0, "Achieved speed cap in m/s (< 0: none)", read_only=False),
    Param("faults.battery_drain_multiplier", float, 1.0, "Battery drain multiplier", (0.0, 100000.0), read_only=False),
)
TABLE = ParamTable("robot_sim", PARAMS)


def parse_sensor_list(text: str) -> set[str]:
    """Parse ``faults.silenced_sensors``; raise ValueError naming an unknown sensor."""
    names = {s.strip() for s in text.split(",") if s.strip()}
    unknown = names - set(SENSORS)
    if unknown:
        raise ValueError(f"unknown sensor(s) {sorted(unknown)}; known: {', '.join(SENSORS)}")
    return names


class RobotSimNode(Node):
    """See the module docstring for parameters, topics and services."""

    def __init__(self) -> None:
        super().__init__("robot_sim")
        p = declare_params(self, PARAMS)
        self.robot_id = p["robot_id"]
        rates = {
            "odom": p["odom_rate_hz"], "imu": p["imu_rate_hz"], "scan": p["scan_rate_hz"],
            "battery_state": p["battery_rate_hz"], "camera": p["camera_rate_hz"],
        }  # fmt: skip
        enable_camera = p["enable_camera"]
        width, height = p["camera_width"], p["camera_height"]
        base = BaseConfig(max_linear_speed=p["max_linear_speed"], max_angular_speed=p["max_angular_speed"])
        battery = BatteryConfig(initial_percentage=p["battery_initial"])
        self.model = RobotModel(base, battery, start_time=self._now_s())
        # The sensors publish from their own thread (sim/sensor_clock.py); the executor's callbacks take
        # this lock to change the model the sensors read.
        self._lock = threading.Lock()
        self.laser = LaserModel()
        self.camera = CameraModel(width, height) if enable_camera else None

        self.add_on_set_parameters_callback(self._validate_params)
        self.add_post_set_parameters_callback(self._apply_params)
        self._apply_params(
            [
                self.get_parameter(n)
                for n in ("faults.silenced_sensors", "faults.speed_cap", "faults.battery_drain_multiplier")
            ]
        )

        overrides = QoSOverridingOptions.with_default_policies()
        reliable = QoSProfile(depth=RELIABLE_DEPTH)
        self.odom_pub = self.create_publisher(Odometry, "odom", reliable, qos_overriding_options=overrides)
        self.imu_pub = self.create_publisher(Imu, "imu", qos_profile_sensor_data, qos_overriding_options=overrides)
        self.scan_pub = self.create_publisher(
            LaserScan, "scan", qos_profile_sensor_data, qos_overriding_options=overrides
        )
        self.battery_pub = self.create_publisher(
            BatteryState, "battery_state", reliable, qos_overriding_options=overrides
        )
        self.state_pub = self.create_publisher(RobotState, "robot_state", reliable)
        self.tf_pub = None
        if p["publish_tf"]:
            self._start_tf(enable_camera)
        self.create_timer(ROBOT_STATE_PERIOD_S, self._publish_robot_state)
        self.create_subscription(Twist, "cmd_vel", self._on_cmd_vel, reliable)
        self.create_service(InjectFault, "~/inject_fault", self._on_inject_fault)
        self.create_service(SetBool, "~/estop", self._on_estop)
        self.create_service(SetBool, "~/pause", self._on_pause)

        self._messages = SensorMessages(self.laser, self.model.battery_cfg.capacity_ah)
        publishers: dict[str, Callable[[Time], None]] = {
            "odom": self._publish_odom,
            "imu": self._publish_imu,
            "scan": self._publish_scan,
            "battery_state": self._publish_battery,
        }
        if self.camera is not None:
            self.image_pub = self.create_publisher(
                Image, "camera/image_raw", qos_profile_sensor_data, qos_overriding_options=overrides
            )
            publishers["camera"] = self._publish_image
        self._sensor_publishers = publishers  # not self._publishers: rclpy.Node's own list
        self._sensor_periods = {s: 1.0 / float(rates[s]) for s in publishers}
        self._sensor_clock = SensorClock(self._sensor_periods, self._publish_sensor, self._sensor_failed)
        self._sensor_clock.start()
        self.get_logger().info(
            f"robot_sim {self.robot_id}: publishing {', '.join(publishers)} "
            f"at {', '.join(f'{rates[s]:g} Hz' for s in publishers)}"
        )

    # -- helpers --------------------------------------------------------------------------------------
    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _publish_sensor(self, sensor: str) -> None:
        """Called by the sensor clock's thread when ``sensor`` is due: one clock reading for the model and
        the message's stamp."""
        ns = self.get_clock().now().nanoseconds
        with self._lock:
            self.model.advance_to(ns * 1e-9)
            if self.model.publishes(sensor):
                sec, nanosec = divmod(ns, 1_000_000_000)
                self._sensor_publishers[sensor](Time(sec=sec, nanosec=nanosec))

    def _sensor_failed(self, sensor: str, exc: Exception) -> None:
        if rclpy.ok():  # else the context is down (SIGINT/SIGTERM): the publish raced the stop
            self.get_logger().error(f"publishing {sensor} failed: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=5.0)  # fmt: skip

    def close(self) -> None:
        """Stop the sensors' thread (common/node_main.py calls this before destroying the node)."""
        self._sensor_clock.stop()

    # -- parameters -----------------------------------------------------------------------------------
    def _validate_params(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            if p.name == "faults.silenced_sensors":
                try:
                    parse_sensor_list(str(p.value))
                except ValueError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
            elif p.name == "faults.speed_cap" and not math.isfinite(float(p.value)):
                return SetParametersResult(successful=False, reason="faults.speed_cap must be finite")
        return SetParametersResult(successful=True)

    def _apply_params(self, params: list[Parameter]) -> None:
        with self._lock:
            self._apply_faults(params)

    def _apply_faults(self, params: list[Parameter]) -> None:
        faults = self.model.faults
        for p in params:
            if p.name == "faults.silenced_sensors":
                faults.silenced = parse_sensor_list(str(p.value))
            elif p.name == "faults.speed_cap":
                cap = float(p.value)
                faults.speed_cap = cap if cap >= 0.0 else None
            elif p.name == "faults.battery_drain_multiplier":
                faults.battery_drain_multiplier = float(p.value)
            else:
                continue
            self.get_logger().info(f"fault parameter {p.name} = {p.value!r}")

    # -- inputs ---------------------------------------------------------------------------------------
    def _on_cmd_vel(self, msg: Twist) -> None:
        try:
            with self._lock:
                self.model.command(msg.linear.x, msg.angular.z, self._now_s())
        except ValueError as exc:
            self.get_logger().warning(f"cmd_vel rejected: {exc}", throttle_duration_sec=5.0)

    def _on_inject_fault(self, req: InjectFault.Request, res: InjectFault.Response) -> InjectFault.Response:
        """Translate a fault request into the fault parameters, so both ways stay one state."""
        silenced = set(self.model.faults.silenced)
        if req.fault == InjectFault.Request.FAULT_CLEAR:
            with self._lock:
                self.model.faults.clear()
            changes = [
                Parameter("faults.silenced_sensors", value=""),
                Parameter("faults.speed_cap", value=-1.0),
                Parameter("faults.battery_drain_multiplier", value=1.0),
            ]
        elif req.fault in (InjectFault.Request.FAULT_SILENCE_SENSOR, InjectFault.Request.FAULT_RESTORE_SENSOR):
            if req.target not in SENSORS:
                res.success, res.message = False, f"unknown sensor {req.target!r}; known: {', '.join(SENSORS)}"
                return res
            if req.fault == InjectFault.Request.FAULT_SILENCE_SENSOR:
                silenced.add(req.target)
            else:
                silenced.discard(req.target)
            changes = [Parameter("faults.silenced_sensors", value=",".join(sorted(silenced)))]
        elif req.fault == InjectFault.Request.FAULT_SPEED_CAP:
            changes = [Parameter("faults.speed_cap", value=float(req.value))]
        elif req.fault == InjectFault.Request.FAULT_BATTERY_DRAIN:
            changes = [Parameter("faults.battery_drain_multiplier", value=float(req.value))]
        elif req.fault == InjectFault.Request.FAULT_BATTERY_LEVEL:
            if not 0.0 <= req.value <= 1.0:
                res.success, res.message = False, f"battery level {req.value} outside 0..1"
                return res
            with self._lock:
                self.model.advance_to(self._now_s())
                self.model.battery = float(req.value)
            res.success, res.message = True, f"battery set to {req.value:.0%}"
            self.get_logger().info(res.message)
            return res
        else:
            res.success, res.message = False, f"unknown fault {req.fault!r}"
            return res
        results = self.set_parameters(changes)
        failed = [r.reason for r in results if not r.successful]
        res.success = not failed
        res.message = "; ".join(failed) if failed else f"{req.fault} applied"
        return res

    def _on_estop(self, req: SetBool.Request, res: SetBool.Response) -> SetBool.Response:
        with self._lock:
            self.model.advance_to(self._now_s())
            self.model.estopped = bool(req.data)
        res.success, res.message = True, "e-stop latched" if req.data else "e-stop released"
        self.get_logger().warning(res.message)
        return res

    def _on_pause(self, req: SetBool.Request, res: SetBool.Response) -> SetBool.Response:
        with self._lock:
            self.model.advance_to(self._now_s())
            self.model.paused = bool(req.data)
        res.success, res.message = True, "paused" if req.data else "resumed"
        self.get_logger().info(res.message)
        return res

    # -- outputs --------------------------------------------------------------------------------------
    def _publish_robot_state(self) -> None:
        with self._lock:
            self._publish_robot_state_locked()

    def _publish_robot_state_locked(self) -> None:
        m = self.model
        m.advance_to(self._now_s())
        msg = RobotState()
        msg.stamp = self.get_clock().now().to_msg()
        msg.robot_id = self.robot_id
        if m.estopped:
            msg.mode = RobotState.MODE_ESTOP
        elif m.paused:
            msg.mode = RobotState.MODE_PAUSED
        elif abs(m.linear) > MOVING_THRESHOLD or abs(m.angular) > MOVING_THRESHOLD:
            msg.mode = RobotState.MODE_MOVING
        else:
            msg.mode = RobotState.MODE_IDLE
        msg.battery_percentage = m.battery
        msg.linear_speed = m.linear
        msg.angular_speed = m.angular
        msg.commanded_linear_speed = m.commanded_linear
        msg.pose.x, msg.pose.y, msg.pose.theta = m.pose.x, m.pose.y, m.pose.yaw
        self.state_pub.publish(msg)

    def _start_tf(self, with_camera: bool) -> None:
        """/tf and /tf_static publishers when tf2_msgs exists (absolute topic names, as tf2 expects)."""
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.get_logger().warning("tf2_msgs is not installed (pip-only ROS): no /tf from the simulator")
            return
        self._tf_msg = TFMessage
        self.tf_pub = self.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)  # fmt: skip
        self.tf_static_pub = self.create_publisher(TFMessage, "/tf_static", latched)
        stamp = self.get_clock().now().to_msg()
        static = [to_msg(t, stamp) for t in frames.static_frames(with_camera)]
        self.tf_static_pub.publish(TFMessage(transforms=static))

    def _publish_odom(self, stamp: Time) -> None:
        m = self.model
        self.odom_pub.publish(self._messages.odom(m, stamp))
        if self.tf_pub is not None:
            tf = frames.odom_to_base(m.pose.x, m.pose.y, m.pose.yaw)
            self.tf_pub.publish(self._tf_msg(transforms=[to_msg(tf, stamp)]))

    def _publish_imu(self, stamp: Time) -> None:
        self.imu_pub.publish(self._messages.imu(self.model, stamp))

    def _publish_scan(self, stamp: Time) -> None:
        ranges = self.laser.ranges(self.model.pose)
        self.scan_pub.publish(self._messages.scan(ranges, self._sensor_periods["scan"], stamp))

    def _publish_battery(self, stamp: Time) -> None:
        self.battery_pub.publish(self._messages.battery(self.model, stamp))

    def _publish_image(self, stamp: Time) -> None:
        assert self.camera is not None
        frame = self.camera.frame(self.model.time)
        msg = Image()
        msg.header.stamp = stamp
        msg.header.frame_id = "camera_optical_frame"
        msg.height, msg.width = frame.shape[0], frame.shape[1]
        msg.encoding = "rgb8"
        msg.step = frame.shape[1] * 3
        msg.data = frame.tobytes()
        self.image_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    return spin_node(RobotSimNode, args)


if __name__ == "__main__":
    sys.exit(main())
