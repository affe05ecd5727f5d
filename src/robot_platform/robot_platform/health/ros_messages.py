"""ROS message helpers of health_monitor_tree: Alert from an AlertRecord, message classes, installed config.

Split from node.py (which keeps the wiring) so the node file stays one concern and under the size rule.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import KeyValue

from robot_platform.exceptions import ConfigError
from robot_platform.health.records import AlertRecord
from robot_platform_interfaces.msg import Alert


def _ros_time(seconds: float) -> Time:
    sec = int(seconds)
    return Time(sec=sec, nanosec=round((seconds - sec) * 1e9) % 1_000_000_000)


def alert_msg(record: AlertRecord) -> Alert:
    """robot_platform_interfaces/Alert from an :class:`AlertRecord`."""
    return Alert(
        stamp=_ros_time(record.stamp),
        robot_id=record.robot_id,
        alert_id=record.alert_id,
        code=record.code,
        severity=record.severity,
        message=record.message,
        source=record.source,
        active=record.active,
        acknowledged=record.acknowledged,
        acknowledged_by=record.acknowledged_by,
        values=[KeyValue(key=k, value=v) for k, v in record.values.items()],
    )


def default_checks_file() -> str:
    """The installed default tree, share/robot_platform/config/health/checks.yaml."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        return str(Path(get_package_share_directory("robot_platform")) / "config" / "health" / "checks.yaml")
    except PackageNotFoundError:
        raise ConfigError("checks_file", "", "set checks_file or checks_yaml (robot_platform not installed)") from None


def load_message_class(type_name: str) -> type:
    """Class of ``pkg/msg/Type`` (validated by the tree builder's TYPE_RE before we get here)."""
    pkg, _, name = type_name.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        raise ConfigError("topics", type_name, "message type not installed; source its package") from None
