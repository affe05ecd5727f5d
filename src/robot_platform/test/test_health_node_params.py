"""health_monitor_tree's parameters on a real rclpy node (own context and domain): defaults, overrides,
descriptors (read-only, ranges) and where the durable outbox goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_platform.exceptions import MissingParameterError, ParameterError, RobotPlatformError
from robot_platform.health.node_params import OUTBOX_FILE, read_health_params


def test_defaults_and_outbox_location(make_node) -> None:
    p = read_health_params(make_node(robot_id="r7"))
    assert (p.robot_id, p.nats_alert_stream, p.outbox_durable, p.outbox_max) == ("r7", "", True, 1000)
    assert (p.mqtt.client_id, p.mqtt.topic, p.mqtt.host) == ("health-r7", "robots/r7/alerts", "")
    assert p.outbox_path() == Path("~/.robot_platform/health/r7").expanduser() / OUTBOX_FILE


def test_overrides_state_dir_and_memory_only(make_node, tmp_path: Path) -> None:
    p = read_health_params(make_node(robot_id="r7", state_dir=str(tmp_path), outbox_max=5))
    assert p.outbox_path() == tmp_path / OUTBOX_FILE and p.outbox_max == 5
    assert read_health_params(make_node(robot_id="r7", outbox_durable=False)).outbox_path() is None


def test_descriptors_are_read_only_with_ranges(make_node) -> None:
    node = make_node(robot_id="r7")
    read_health_params(node)
    desc = node.describe_parameter("outbox_max")
    assert desc.read_only and (desc.integer_range[0].from_value, desc.integer_range[0].to_value) == (1, 100_000)
    assert all(node.describe_parameter(n).read_only for n in ("state_dir", "outbox_durable", "mqtt_key_file"))
    with pytest.raises(ParameterError):
        read_health_params(make_node(robot_id="r7", outbox_max=0))


def test_bad_robot_id_is_refused(make_node) -> None:
    with pytest.raises(RobotPlatformError):
        read_health_params(make_node(robot_id="r1.*"))


def test_active_alert_state_goes_to_the_same_state_dir(make_node, tmp_path: Path) -> None:
    p = read_health_params(make_node(robot_id="r7"))
    assert (p.persist_alerts, p.restart_grace_s) == (True, 10.0)
    assert p.alert_state_dir() == Path("~/.robot_platform/health/r7").expanduser() == p.state_path()
    p = read_health_params(make_node(robot_id="r7", state_dir=str(tmp_path), outbox_durable=False, restart_grace_s=2.5))
    assert p.alert_state_dir() == tmp_path and p.outbox_path() is None and p.restart_grace_s == 2.5
    assert read_health_params(make_node(robot_id="r7", persist_alerts=False)).alert_state_dir() is None
    with pytest.raises(ParameterError):
        read_health_params(make_node(robot_id="r7", restart_grace_s=-1.0))


def test_robot_id_is_required(make_node) -> None:
    with pytest.raises(MissingParameterError, match=r"robot_id is required: set -p robot_id:=<id>"):
        read_health_params(make_node())
