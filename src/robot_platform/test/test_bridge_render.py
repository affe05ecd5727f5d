"""YAML rendering like ros2 topic echo."""

from __future__ import annotations

import yaml
from nav_msgs.msg import Odometry

from robot_platform.cli.render import to_yaml
from robot_platform.messaging.codec import Codec


def test_odometry_renders_like_topic_echo() -> None:
    odom = Odometry()
    odom.header.frame_id = "odom"
    odom.pose.pose.position.x = 1.5
    text = to_yaml(Codec().to_dict(odom))
    assert text.startswith("header:\n  stamp:\n    sec: 0\n    nanosec: 0\n  frame_id: odom\n")
    assert text.endswith("\n---\n")
    assert "      x: 1.5\n" in text
    assert yaml.safe_load(text.removesuffix("---\n"))["pose"]["covariance"] == [0.0] * 36


def test_truncation_bytes_and_no_arr() -> None:
    data = {"data": bytes(range(5)), "name": "abcdef", "values": [1, 2, 3, 4]}
    text = to_yaml(data, truncate_length=3)
    loaded = yaml.safe_load(text.removesuffix("---\n"))
    assert loaded == {"data": [0, 1, 2, "..."], "name": "abc...", "values": [1, 2, 3, "..."]}
    text = to_yaml(data, no_arr=True)
    assert "data: '<sequence type: uint8, length: 5>'" in text
    assert to_yaml(data, truncate_length=None).count("- ") == 9
