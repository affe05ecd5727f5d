"""Package tests: every test that starts rclpy gets its own ROS graph, kept on this machine."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import rclpy
from rclpy.context import Context

from robot_platform.launcher.domains import DomainReservation

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


@pytest.fixture
def ros_domain() -> Iterator[int]:
    """Reserve a ROS_DOMAIN_ID for the test and export it before rclpy.init reads it."""
    reservation = DomainReservation()
    previous = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(reservation.domain_id)
    try:
        yield reservation.domain_id
    finally:
        if previous is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = previous
        reservation.release()


@pytest.fixture
def make_node(ros_domain: int) -> Iterator:
    """``make_node(name="n", **parameter_overrides)`` -> a real rclpy Node on a private context (parameter
    tables are declared on real nodes: descriptors and ranges are rcl's, not a mock's)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    ctx = Context()
    rclpy.init(context=ctx)
    nodes: list[Node] = []

    def make(name: str = "params_test", **overrides: object) -> Node:
        params = [Parameter(k, value=v) for k, v in overrides.items()]
        node = Node(name, context=ctx, parameter_overrides=params)
        nodes.append(node)
        return node

    try:
        yield make
    finally:
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=ctx)


@pytest.fixture
def context(ros_domain: int) -> Iterator[Context]:
    """An rclpy context of the test's own (tests that start readers or nodes on it, then shut it down)."""
    ctx = Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        ctx.try_shutdown()
