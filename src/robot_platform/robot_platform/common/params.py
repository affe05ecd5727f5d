"""Small helpers to declare ROS parameters with descriptors in one line each."""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node


def declare(
    node: Node,
    name: str,
    default: object,
    description: str,
    *,
    read_only: bool = False,
    min_value: float | None = None,
    max_value: float | None = None,
) -> object:
    """Declare ``name`` with a descriptor (type from ``default``, optional range) and return its value."""
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if min_value is not None and max_value is not None:
        if isinstance(default, bool):
            pass
        elif isinstance(default, int):
            descriptor.integer_range = [IntegerRange(from_value=int(min_value), to_value=int(max_value), step=0)]
        elif isinstance(default, float):
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(min_value), to_value=float(max_value), step=0.0)
            ]
    return node.declare_parameter(name, default, descriptor).value
