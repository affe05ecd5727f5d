"""Tree builder: YAML -> behaviour tree; config errors are typed and name the line."""

from __future__ import annotations

from pathlib import Path

import py_trees
import pytest

from robot_platform.exceptions import RobotPlatformError
from robot_platform.health.errors import HealthConfigError, HealthConfigSyntaxError, UnknownCheckKindError
from robot_platform.health.fault_state import SEVERITY_CRITICAL, SEVERITY_ERROR
from robot_platform.health.topic_checks import TopicSilenceCheck
from robot_platform.health.tree_builder import build_tree, load_config_file, load_config_text
from robot_platform.health.value_checks import BatteryCheck, SpeedDropCheck

REPO = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG = REPO / "config" / "health" / "checks.yaml"

BASE = """\
defaults: {debounce_s: 0.5, clear_s: 1.5}
topics:
  scan: sensor_msgs/msg/LaserScan
  odom: {type: nav_msgs/msg/Odometry, qos: reliable}
checks:
  - name: scan_silent
    kind: topic_silence
    group: sensors
    topic: scan
    timeout_s: 1.0
  - {name: speed, kind: speed_drop, group: motion, severity: critical, debounce_s: 2.0}
"""


def build(text: str, source: str = "test.yaml"):
    return build_tree(load_config_text(text, source), clock=lambda: 0.0, sampler=lambda r, p: 1.0, source=source)


def test_builds_groups_checks_and_subscriptions() -> None:
    tree = build(BASE)
    root = tree.tree.root
    assert isinstance(root, py_trees.composites.Parallel) and root.name == "health"
    assert [g.name for g in root.children] == ["sensors", "motion"]
    scan, speed = tree.checks
    assert isinstance(scan, TopicSilenceCheck) and scan.timeout_s == 1.0
    assert scan.spec.code == "TOPIC_SILENT.scan" and scan.spec.severity == SEVERITY_ERROR
    assert (scan.spec.debounce_s, scan.spec.clear_s) == (0.5, 1.5)  # from defaults
    assert isinstance(speed, SpeedDropCheck) and speed.spec.severity == SEVERITY_CRITICAL
    assert speed.spec.debounce_s == 2.0 and speed.spec.code == "SPEED_DROP"
    # cmd_vel was not declared: speed_drop implies its type
    assert {t: (s.msg_type, s.qos) for t, s in tree.topics.items()} == {
        "scan": ("sensor_msgs/msg/LaserScan", "sensor_data"),
        "odom": ("nav_msgs/msg/Odometry", "reliable"),
        "cmd_vel": ("geometry_msgs/msg/Twist", "sensor_data"),
    }
    assert speed.odom is tree.hub.topics["odom"]


def test_adding_a_check_of_an_existing_kind_is_config_only() -> None:
    text = BASE.replace("  odom:", "  lidar_rear: sensor_msgs/msg/LaserScan\n  odom:") + (
        "  - {name: rear_silent, kind: topic_silence, topic: lidar_rear, timeout_s: 0.3, code: REAR_LIDAR_SILENT}\n"
    )
    tree = build(text)
    rear = tree.check("rear_silent")
    assert rear is not None and rear.spec.code == "REAR_LIDAR_SILENT" and rear.group == "general"
    assert "lidar_rear" in tree.topics


def test_unknown_kind_names_the_line() -> None:
    text = BASE + "  - name: gps\n    kind: gps_fix\n    topic: fix\n"
    with pytest.raises(UnknownCheckKindError) as err:
        build(text)
    assert err.value.line == 13 and err.value.kind == "gps_fix"
    assert "test.yaml:13" in str(err.value) and "topic_silence" in str(err.value)
    assert isinstance(err.value, RobotPlatformError)


def test_yaml_syntax_error_names_the_line() -> None:
    text = BASE + "  - {name: broken, kind: topic_silence\n"
    with pytest.raises(HealthConfigSyntaxError) as err:
        load_config_text(text, "robot.yaml")
    assert err.value.line is not None and err.value.line >= 12
    assert str(err.value).startswith(f"robot.yaml:{err.value.line}: ")


@pytest.mark.parametrize(
    ("extra", "line", "fragment"),
    [
        ("  - {name: x, kind: topic_silence, topic: scan}\n", 12, "timeout_s: required"),
        ("  - {name: x, kind: topic_silence, topic: scan, timeout_s: fast}\n", 12, "expected a number"),
        ("  - {name: x, kind: topic_silence, topic: scan, timeout_s: -1}\n", 12, "outside"),
        ("  - {name: x, kind: topic_silence, topic: scan, timeout_s: 1, timout: 2}\n", 12, "unknown parameter"),
        ("  - {name: x, kind: topic_silence, topic: lidar, timeout_s: 1}\n", 12, "not declared"),
        ("  - {name: x, kind: battery, topic: scan}\n", 12, "needs sensor_msgs/msg/BatteryState"),
        ("  - {name: scan_silent, kind: topic_silence, topic: scan, timeout_s: 1}\n", 12, "duplicate check name"),
        ("  - {name: x, kind: topic_silence, topic: scan, timeout_s: 1, severity: fatal}\n", 12, "severity"),
        ("  - {name: x, kind: battery, low: 0.1, critical: 0.2}\n", 12, "critical must not exceed low"),
        ("  - {name: x, kind: host_resources, resource: gpu, max: 1}\n", 12, "not one of"),
        ("  - {name: x, kind: nodes_missing, expected: []}\n", 12, "non-empty list"),
        ("  - {name: x, kind: nats_link, code: lower}\n", 12, "fault code"),
    ],
)
def test_invalid_checks_are_rejected_with_line_and_key(extra: str, line: int, fragment: str) -> None:
    with pytest.raises(HealthConfigError) as err:
        build(BASE + extra)
    assert err.value.line == line, str(err.value)
    assert err.value.key.startswith("checks[2]")
    assert fragment in str(err.value)


def test_duplicate_yaml_key_and_bad_topics_section() -> None:
    with pytest.raises(HealthConfigSyntaxError, match="duplicate key"):
        load_config_text("checks: []\nchecks: []\n", "x.yaml")
    with pytest.raises(HealthConfigError, match="package/msg/Type") as err:
        build(BASE.replace("sensor_msgs/msg/LaserScan", "LaserScan"))
    assert err.value.line == 3
    with pytest.raises(HealthConfigError, match="non-empty list"):
        build("checks: {}\n")
    with pytest.raises(HealthConfigError, match="unknown top-level key"):
        build(BASE + "check: []\n")


def test_dict_config_without_lines_and_disabled_checks() -> None:
    config = {
        "checks": [{"name": "b", "kind": "battery", "low": 0.3}, {"name": "n", "kind": "nats_link", "enabled": False}]
    }
    tree = build_tree(config, clock=lambda: 0.0)
    assert [c.name for c in tree.checks] == ["b"] and isinstance(tree.checks[0], BatteryCheck)
    with pytest.raises(HealthConfigError) as err:
        build_tree({"checks": [{"name": "b", "kind": "battery", "low": "x"}]}, clock=lambda: 0.0)
    assert err.value.line is None and err.value.key == "checks[0].low"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(HealthConfigError, match="cannot read"):
        load_config_file(tmp_path / "nope.yaml")


def test_shipped_default_config_builds() -> None:
    tree = build_tree(load_config_file(DEFAULT_CONFIG), clock=lambda: 0.0, sampler=lambda r, p: 1.0)
    kinds = {c.kind for c in tree.checks}
    assert kinds == {
        "topic_silence",
        "topic_rate",
        "speed_drop",
        "battery",
        "imu_anomaly",
        "localization_anomaly",
        "nodes_missing",
        "nats_link",
        "host_resources",
        "host_overload",
    }
    codes = [c.spec.code for c in tree.checks]
    assert len(codes) == len(set(codes)), "fault codes must be unique"
