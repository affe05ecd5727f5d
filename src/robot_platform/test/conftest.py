"""Package tests: every test that starts rclpy gets its own ROS graph, kept on this machine."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

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
