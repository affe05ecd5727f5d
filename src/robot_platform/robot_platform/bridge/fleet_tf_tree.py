"""Frames of mirrored messages on the control server: one TF tree per robot, all under one fleet frame.

Every robot names its frames alike (``odom``, ``base_link``, ``laser``, REP-105), so the mirror's copies in
the control graph would all claim the same frames. The mirror therefore prefixes them with the robot id,
as multi-robot TF setups do (``r1/odom``, ``r1/base_link``), and the control bridge publishes, when
tf2_msgs is installed (ROS from apt, where RViz runs), each robot's tree from what it mirrors:

    fleet -> r1/odom          static; where r1's odometry origin sits in the fleet frame
                              (identity unless ``mirror.origins`` says otherwise)
    r1/odom -> r1/base_link   from r1's mirrored odometry, stamped like it
    r1/base_link -> r1/laser  static; the sensor mounts of the simulator (sim/frames.py) by default

Plain Python: the node turns the tuples into geometry_msgs/TransformStamped.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from robot_platform.common.transforms import Transform, yaw_quaternion

FLEET_FRAME = "fleet"
FRAME_FIELDS = ("frame_id", "child_frame_id")
# Sensor mounts relative to base_link (the simulator's, sim/frames.py): child -> (xyz, quaternion xyzw)
DEFAULT_MOUNTS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float, float]]] = {
    "laser": ((0.0, 0.0, 0.2), (0.0, 0.0, 0.0, 1.0)),
    "imu_link": ((0.0, 0.0, 0.05), (0.0, 0.0, 0.0, 1.0)),
}


def prefixed(robot_id: str, frame: str) -> str:
    """``odom`` -> ``r1/odom``; empty stays empty; already prefixed (or absolute ``/x``) is kept."""
    frame = frame.lstrip("/")
    if not frame or frame.startswith(f"{robot_id}/"):
        return frame
    return f"{robot_id}/{frame}"


@functools.cache
def _frame_plan(cls: type) -> tuple[tuple[str, str], ...]:
    """Where a message class can hold frame ids, worked out once per class (the mirror calls
    :func:`prefix_frames` for every message): ``(field, "frame" | "msg" | "msgs")``; primitive fields and
    primitive arrays are left out."""
    plan = []
    for name, kind in (getattr(cls, "_fields_and_field_types", None) or {}).items():
        if name in FRAME_FIELDS and kind.startswith("string"):
            plan.append((name, "frame"))
        elif "/" in kind and not kind.startswith(("sequence<", "string")) and "[" not in kind:
            plan.append((name, "msg"))
        elif ("sequence<" in kind or "[" in kind) and "/" in kind:
            plan.append((name, "msgs"))
    return tuple(plan)


def prefix_frames(msg: Any, robot_id: str, _depth: int = 0) -> Any:
    """Rewrite every ``frame_id`` / ``child_frame_id`` in a ROS message (nested messages and message
    arrays too, e.g. a MarkerArray's markers) in place; returns ``msg``. Primitive arrays are not walked."""
    if _depth > 16:  # no ROS message nests this deep; a guard, not a limit anyone reaches
        return msg
    for name, where in _frame_plan(type(msg)):
        value = getattr(msg, name)
        if where == "frame":
            if isinstance(value, str):
                setattr(msg, name, prefixed(robot_id, value))
        elif where == "msg":
            if _frame_plan(type(value)):  # e.g. Odometry.twist holds no frame: not walked
                prefix_frames(value, robot_id, _depth + 1)
        elif isinstance(value, list):
            for item in value:
                prefix_frames(item, robot_id, _depth + 1)
    return msg
    fields = getattr(type(msg), "_fields_and_field_types", None)
    if fields is None:
        return msg
    for name, kind in fields.items():
        value = getattr(msg, name)
        if name in FRAME_FIELDS and isinstance(value, str):
            setattr(msg, name, prefixed(robot_id, value))
        elif "/" in kind and not kind.startswith(("sequence<", "string")) and "[" not in kind:
            prefix_frames(value, robot_id, _depth + 1)
        elif ("sequence<" in kind or "[" in kind) and "/" in kind and isinstance(value, list):
            for item in value:
                prefix_frames(item, robot_id, _depth + 1)
    return msg


def static_frames(robot_id: str, origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
                  mounts: dict[str, Any] | None = None) -> list[Transform]:  # fmt: skip
    """``fleet -> <id>/odom`` at ``origin`` (x, y, yaw) and ``<id>/base_link -> <id>/<sensor>`` mounts."""
    x, y, yaw = origin
    out = [Transform(FLEET_FRAME, prefixed(robot_id, "odom"), (x, y, 0.0), yaw_quaternion(yaw))]
    for child, (xyz, quat) in (mounts if mounts is not None else DEFAULT_MOUNTS).items():
        out.append(Transform(prefixed(robot_id, "base_link"), prefixed(robot_id, child), tuple(xyz), tuple(quat)))
    return out


def odometry_frame(odom: Any) -> Transform | None:
    """The ``odom -> base_link`` transform an (already prefixed) nav_msgs/Odometry implies, or None when
    it names no frames."""
    parent, child = odom.header.frame_id, odom.child_frame_id
    if not parent or not child:
        return None
    p, q = odom.pose.pose.position, odom.pose.pose.orientation
    return Transform(parent, child, (p.x, p.y, p.z), (q.x, q.y, q.z, q.w))


def parse_origins(text: str) -> dict[str, tuple[float, float, float]]:
    """``"r1:0,0,0; r2:5,0,1.57"`` -> {robot: (x, y, yaw)}; raises ValueError naming the bad entry."""
    out: dict[str, tuple[float, float, float]] = {}
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        robot, _, values = entry.partition(":")
        try:
            x, y, yaw = (float(v) for v in values.split(","))
        except ValueError:
            raise ValueError(f"origin {entry!r}: expected <robot>:<x>,<y>,<yaw>") from None
        if not robot.strip() or not all(math.isfinite(v) for v in (x, y, yaw)):
            raise ValueError(f"origin {entry!r}: expected <robot>:<x>,<y>,<yaw> with finite numbers")
        out[robot.strip()] = (x, y, yaw)
    return out
