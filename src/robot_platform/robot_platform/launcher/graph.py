"""Look at a ROS graph (another ROS_DOMAIN_ID) from inside a process: used by the demo's self-check
and by ``robot-platform topics``."""

from __future__ import annotations

import time

import rclpy
from rclpy.context import Context


def topics_in_domain(domain_id: int, expected: set[str], timeout_s: float = 10.0) -> dict[str, list[str]]:
    """Topic names and types seen in ``domain_id``; waits until ``expected`` are all there or timeout."""
    return graph_in_domain(domain_id, expected, set(), timeout_s)[0]


def graph_in_domain(
    domain_id: int, expected_topics: set[str], expected_nodes: set[str], timeout_s: float = 10.0
) -> tuple[dict[str, list[str]], set[str]]:
    """Topics (with types) and node names seen in ``domain_id``; waits until the expected ones are all
    there, or ``timeout_s``."""
    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    try:
        node = rclpy.create_node(f"graph_probe_{domain_id}", context=context, start_parameter_services=False,
                                 enable_rosout=False)
        try:
            deadline = time.monotonic() + timeout_s
            found: dict[str, list[str]] = {}
            nodes: set[str] = set()
            while time.monotonic() < deadline:
                found = dict(node.get_topic_names_and_types())
                nodes = set(node.get_node_names())
                if expected_topics <= set(found) and expected_nodes <= nodes:
                    break
                time.sleep(0.2)
            return found, nodes
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
