"""The simulated robot's physics, battery and faults, without ROS."""

import math

import numpy as np
import pytest

from robot_platform.sim.model import BaseConfig, CameraModel, LaserModel, Pose2D, RobotModel


def drive(model: RobotModel, linear: float, angular: float, seconds: float, t0: float = 0.0) -> float:
    """Send the command every 100 ms (as a teleop does) for ``seconds``; return the end time."""
    t = t0
    while t < t0 + seconds - 1e-9:
        model.command(linear, angular, t)
        t += 0.1
        model.advance_to(t)
    return t


def test_odometry_follows_a_straight_command() -> None:
    model = RobotModel()
    drive(model, 0.5, 0.0, 5.0)
    assert model.linear == pytest.approx(0.5)
    # 0.5 s ramp at 1 m/s^2 loses 0.125 m against 2.5 m at full speed.
    assert model.pose.x == pytest.approx(2.5 - 0.125, abs=0.02)
    assert model.pose.y == pytest.approx(0.0, abs=1e-9)


def test_turning_in_place_integrates_yaw() -> None:
    model = RobotModel()
    drive(model, 0.0, 1.0, 2.0)
    assert model.angular == pytest.approx(1.0)
    assert model.pose.yaw == pytest.approx(2.0 - 1.0 / 6.0, abs=0.02)  # ramp at 3 rad/s^2
    assert math.hypot(model.pose.x, model.pose.y) < 1e-9


def test_commands_are_clamped_to_base_limits() -> None:
    model = RobotModel(BaseConfig(max_linear_speed=0.8))
    drive(model, 5.0, 0.0, 3.0)
    assert model.linear == pytest.approx(0.8)


def test_base_stops_when_commands_stop() -> None:
    model = RobotModel()
    t = drive(model, 1.0, 0.0, 3.0)
    model.advance_to(t + 2.0)  # no command for 2 s > cmd_timeout
    assert model.linear == 0.0


def test_speed_cap_fault_makes_the_robot_underperform() -> None:
    model = RobotModel()
    model.faults.speed_cap = 0.2
    drive(model, 1.0, 0.0, 3.0)
    assert model.commanded_linear == pytest.approx(1.0)
    assert model.linear == pytest.approx(0.2)


def test_battery_drains_faster_with_motion_and_with_injected_drain() -> None:
    idle, moving, faulty = RobotModel(), RobotModel(), RobotModel()
    faulty.faults.battery_drain_multiplier = 50.0
    idle.advance_to(60.0)
    drive(moving, 1.0, 0.0, 60.0)
    drive(faulty, 1.0, 0.0, 60.0)
    assert 1.0 > idle.battery > moving.battery > faulty.battery >= 0.0
    assert moving.battery_voltage() < idle.battery_voltage()


def test_estop_brakes_at_once_and_ignores_commands() -> None:
    model = RobotModel()
    t = drive(model, 1.0, 0.0, 2.0)
    model.estopped = True
    drive(model, 1.0, 0.0, 1.0, t0=t)
    assert model.linear == 0.0


def test_non_finite_command_is_rejected() -> None:
    model = RobotModel()
    with pytest.raises(ValueError, match="finite"):
        model.command(math.nan, 0.0, 0.0)


def test_laser_sees_walls_and_the_pillar() -> None:
    laser = LaserModel(beams=360, room_half_size=6.0, pillar=(2.0, 0.0, 0.5))
    ranges = laser.ranges(Pose2D())
    assert ranges.dtype == np.float32 and ranges.shape == (360,)
    forward = ranges[180]  # angle 0: towards the pillar at x=2 (radius 0.5)
    backward = ranges[0]  # angle -pi: the wall at x=-6
    assert forward == pytest.approx(1.5, abs=0.01)
    assert backward == pytest.approx(6.0, abs=0.01)


def test_camera_pattern_moves() -> None:
    cam = CameraModel(64, 48, pixels_per_second=10.0)
    a, b = cam.frame(0.0), cam.frame(1.0)
    assert a.shape == (48, 64, 3) and a.dtype == np.uint8 and a.flags.c_contiguous
    assert not np.array_equal(a, b)


def test_laser_is_cast_again_only_when_the_pose_changes() -> None:
    laser = LaserModel(beams=360, room_half_size=6.0, pillar=(2.0, 0.0, 0.5))
    still = laser.ranges(Pose2D())
    assert laser.ranges(Pose2D()) is still  # standing still: the same (read-only) array
    assert not still.flags.writeable
    moved = laser.ranges(Pose2D(x=1.0))
    assert moved is not still
    assert moved[180] == pytest.approx(0.5, abs=0.01)  # one metre closer to the pillar
    assert still[180] == pytest.approx(1.5, abs=0.01)  # the earlier scan is left as it was
