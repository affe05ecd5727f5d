"""The simulated robot, without ROS: a differential-drive base, a battery, sensors and injected faults.

Time is passed in (seconds, monotonic), never read from a clock, so tests drive it directly. The ROS
node (``sim/node.py``) calls :meth:`RobotModel.advance_to` before each publication, so every message
reflects the state integrated up to that instant whatever the topic's rate.

Units and frames follow REP-103/105: metres, radians, m/s; x forward, yaw counter-clockwise; the pose is
in the ``odom`` frame, velocities in ``base_link``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SENSORS = ("odom", "imu", "scan", "battery_state", "camera")
GRAVITY_MPS2 = 9.80665


@dataclass(frozen=True)
class BaseConfig:
    """Limits of the simulated base."""

    max_linear_speed: float = 1.0  # m/s
    max_angular_speed: float = 1.5  # rad/s
    linear_accel: float = 1.0  # m/s^2, how fast the speed follows the command
    angular_accel: float = 3.0  # rad/s^2
    cmd_timeout: float = 0.5  # s without cmd_vel before the base stops (a dead-man, as real bases do)


@dataclass(frozen=True)
class BatteryConfig:
    """A simple linear battery: an idle drain plus a drain proportional to speed."""

    initial_percentage: float = 1.0  # 0..1
    idle_drain_per_hour: float = 0.05  # fraction of a full charge per hour when standing still
    motion_drain_per_km: float = 0.10  # fraction of a full charge per km driven
    full_voltage: float = 25.2  # V (6S Li-ion)
    empty_voltage: float = 19.8  # V
    capacity_ah: float = 20.0


@dataclass
class Faults:
    """Faults injected into the simulation (by service or parameters)."""

    silenced: set[str] = field(default_factory=set)  # sensor names from SENSORS that stop publishing
    speed_cap: float | None = None  # m/s: the base cannot go faster than this whatever it is told
    battery_drain_multiplier: float = 1.0

    def clear(self) -> None:
        self.silenced.clear()
        self.speed_cap = None
        self.battery_drain_multiplier = 1.0


@dataclass
class Pose2D:
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0


def _approach(current: float, target: float, max_step: float) -> float:
    """Move ``current`` towards ``target`` by at most ``max_step``."""
    if target > current:
        return min(target, current + max_step)
    return max(target, current - max_step)


def _clamp(value: float, limit: float) -> float:
    return max(-limit, min(limit, value))


class RobotModel:
    """State of one simulated robot, advanced in time by the caller."""

    def __init__(
        self,
        base: BaseConfig | None = None,
        battery: BatteryConfig | None = None,
        start_time: float = 0.0,
    ) -> None:
        self.base = base or BaseConfig()
        self.battery_cfg = battery or BatteryConfig()
        self.faults = Faults()
        self.pose = Pose2D()
        self.linear = 0.0  # m/s, achieved
        self.angular = 0.0  # rad/s, achieved
        self.linear_accel_now = 0.0  # m/s^2 over the last step (for the IMU)
        self.battery = self.battery_cfg.initial_percentage
        self.odometer_m = 0.0
        self.paused = False
        self.estopped = False
        self._cmd_linear = 0.0
        self._cmd_angular = 0.0
        self._cmd_time = -math.inf
        self._time = start_time

    # -- inputs -------------------------------------------------------------------------------------
    def command(self, linear: float, angular: float, now: float) -> None:
        """A velocity command (cmd_vel) received at ``now``; clamped to the base's limits."""
        self.advance_to(now)
        if not (math.isfinite(linear) and math.isfinite(angular)):
            raise ValueError("velocity command must be finite")
        self._cmd_linear = _clamp(linear, self.base.max_linear_speed)
        self._cmd_angular = _clamp(angular, self.base.max_angular_speed)
        self._cmd_time = now

    @property
    def commanded_linear(self) -> float:
        return self._effective_command()[0]

    def _effective_command(self) -> tuple[float, float]:
        if self.paused or self.estopped or self._time - self._cmd_time > self.base.cmd_timeout:
            return 0.0, 0.0
        return self._cmd_linear, self._cmd_angular

    # -- time ---------------------------------------------------------------------------------------
    def advance_to(self, now: float) -> None:
        """Integrate the state from the last call up to ``now`` (never backwards)."""
        dt = now - self._time
        if dt <= 0.0:
            return
        # Integrate in steps of at most 20 ms so a late call does not change the physics.
        steps = max(1, math.ceil(dt / 0.02))
        h = dt / steps
        for _ in range(steps):
            self._step(h)
        self._time = now  # exact, whatever rounding the steps accumulated

    def _step(self, h: float) -> None:
        self._time += h
        target_v, target_w = self._effective_command()
        if self.estopped:
            # An e-stop brakes at once, as a real safety controller cuts the drive.
            new_v, new_w = 0.0, 0.0
        else:
            new_v = _approach(self.linear, target_v, self.base.linear_accel * h)
            new_w = _approach(self.angular, target_w, self.base.angular_accel * h)
        cap = self.faults.speed_cap
        if cap is not None:
            new_v = _clamp(new_v, cap)
        self.linear_accel_now = (new_v - self.linear) / h
        self.linear, self.angular = new_v, new_w
        mid_yaw = self.pose.yaw + 0.5 * self.angular * h
        self.pose.x += self.linear * math.cos(mid_yaw) * h
        self.pose.y += self.linear * math.sin(mid_yaw) * h
        self.pose.yaw = math.atan2(math.sin(self.pose.yaw + self.angular * h),
                                   math.cos(self.pose.yaw + self.angular * h))
        distance = abs(self.linear) * h
        self.odometer_m += distance
        cfg = self.battery_cfg
        drain = cfg.idle_drain_per_hour * h / 3600.0 + cfg.motion_drain_per_km * distance / 1000.0
        self.battery = max(0.0, self.battery - drain * self.faults.battery_drain_multiplier)

    # -- derived readings ---------------------------------------------------------------------------
    @property
    def time(self) -> float:
        return self._time

    def battery_voltage(self) -> float:
        cfg = self.battery_cfg
        return cfg.empty_voltage + (cfg.full_voltage - cfg.empty_voltage) * self.battery

    def battery_current(self) -> float:
        """Discharge current in A, negative as sensor_msgs/BatteryState wants for discharging."""
        return -(0.8 + 6.0 * abs(self.linear))

    def publishes(self, sensor: str) -> bool:
        return sensor not in self.faults.silenced


class LaserModel:
    """A 2D lidar in a rectangular room with one round pillar, ray-cast with NumPy."""

    def __init__(
        self,
        beams: int = 360,
        range_min: float = 0.12,
        range_max: float = 12.0,
        room_half_size: float = 6.0,
        pillar: tuple[float, float, float] = (2.0, 1.0, 0.4),
    ) -> None:
        self.beams = beams
        self.range_min = range_min
        self.range_max = range_max
        self.angle_min = -math.pi
        self.angle_increment = 2.0 * math.pi / beams
        self.angle_max = self.angle_min + self.angle_increment * (beams - 1)
        self._angles = self.angle_min + self.angle_increment * np.arange(beams)
        self._half = room_half_size
        self._pillar = pillar
        self._last: tuple[tuple[float, float, float], np.ndarray] | None = None

    def ranges(self, pose: Pose2D) -> np.ndarray:
        """Ranges (float32, metres) from ``pose``; ``inf`` beyond range_max (REP-117). The same array
        (read-only) while the pose does not change: a robot standing still sees the same room, and is
        not ray-cast again at every scan."""
        key = (pose.x, pose.y, pose.yaw)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        out = self._cast(pose)
        out.flags.writeable = False
        self._last = (key, out)
        return out

    def _cast(self, pose: Pose2D) -> np.ndarray:
        theta = self._angles + pose.yaw
        dx, dy = np.cos(theta), np.sin(theta)
        with np.errstate(divide="ignore", invalid="ignore"):
            tx = np.where(dx > 0, (self._half - pose.x) / dx, (-self._half - pose.x) / dx)
            ty = np.where(dy > 0, (self._half - pose.y) / dy, (-self._half - pose.y) / dy)
        walls = np.minimum(np.where(dx != 0, tx, np.inf), np.where(dy != 0, ty, np.inf))
        # Ray / circle intersection for the pillar.
        cx, cy, r = self._pillar
        ox, oy = pose.x - cx, pose.y - cy
        b = ox * dx + oy * dy
        c = ox * ox + oy * oy - r * r
        disc = b * b - c
        with np.errstate(invalid="ignore"):
            t_pillar = np.where(disc >= 0, -b - np.sqrt(np.maximum(disc, 0.0)), np.inf)
        t_pillar = np.where(t_pillar > 0, t_pillar, np.inf)
        out = np.minimum(walls, t_pillar).astype(np.float32)
        out[out > self.range_max] = np.inf
        out[out < self.range_min] = self.range_min
        return out


class CameraModel:
    """A moving colour pattern (rgb8), cheap to produce: one precomputed image rolled each frame."""

    def __init__(self, width: int = 640, height: int = 480, pixels_per_second: float = 120.0) -> None:
        self.width, self.height = width, height
        self._speed = pixels_per_second
        xs = np.linspace(0, 4 * math.pi, width, dtype=np.float32)
        ys = np.linspace(0, 3 * math.pi, height, dtype=np.float32)
        r = (127 + 127 * np.sin(xs))[None, :].repeat(height, axis=0)
        g = (127 + 127 * np.sin(ys))[:, None].repeat(width, axis=1)
        b = ((np.arange(width)[None, :] // 40 + np.arange(height)[:, None] // 40) % 2) * 255
        self._base = np.stack([r, g, b.astype(np.float32)], axis=-1).astype(np.uint8)

    def frame(self, t: float) -> np.ndarray:
        """The frame at time ``t`` as an (height, width, 3) uint8 array, C-contiguous."""
        shift = int(t * self._speed) % self.width
        return np.ascontiguousarray(np.roll(self._base, shift, axis=1))
