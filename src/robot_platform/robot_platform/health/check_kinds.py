"""The catalogue of check kinds: class, parameter schema, default severity and default fault code.

Adding a *kind* means a behaviour class (:mod:`topic_checks` / :mod:`value_checks` / :mod:`system_checks`)
plus one entry in :data:`CHECK_CLASSES` and :data:`KIND_PARAMS` here; adding a *check* of an existing kind
is config only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from robot_platform.health.checks import HealthCheck
from robot_platform.health.starvation import (
    MAX_TICK_GAP_S,
    PRESSURE_CLEAR_PCT,
    PRESSURE_MAX_PCT,
    PRESSURE_PERIOD_S,
    SETTLE_S,
    WITNESS_GAP_S,
)
from robot_platform.health.system_checks import (
    HOST_RESOURCES,
    HostOverloadCheck,
    HostResourceCheck,
    LinkCheck,
    NodesMissingCheck,
)
from robot_platform.health.topic_checks import TopicRateCheck, TopicSilenceCheck
from robot_platform.health.value_checks import BatteryCheck, ImuAnomalyCheck, LocalizationAnomalyCheck, SpeedDropCheck

TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*/msg/[A-Z][A-Za-z0-9]*$")
TOPIC_RE = re.compile(r"^[~/]?[A-Za-z_][A-Za-z0-9_/]*$")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
CODE_RE = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Za-z0-9_]+)*$")
QOS_CHOICES = ("sensor_data", "reliable")
REQUIRED = object()
ODOM_TYPES = ("nav_msgs/msg/Odometry",)
TWIST_TYPES = ("geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped")
POSE_TYPES = (
    "nav_msgs/msg/Odometry",
    "geometry_msgs/msg/PoseWithCovarianceStamped",
    "geometry_msgs/msg/PoseStamped",
)


@dataclass(frozen=True)
class P:
    """One check parameter: type, default (``REQUIRED`` if none), bounds, and for topics the types allowed."""

    kind: str  # "float", "str", "topic", "str_list", "choice"
    default: Any = REQUIRED
    min: float | None = None
    max: float | None = None
    topic_types: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()


COMMON_PARAMS: dict[str, P] = {
    "name": P("name"),
    "kind": P("str"),
    "group": P("name", "general"),
    "severity": P("severity", None),
    "code": P("code", None),
    "debounce_s": P("float", None, 0.0, 3600.0),
    "clear_s": P("float", None, 0.0, 3600.0),
    "enabled": P("bool", True),
    "description": P("str", ""),
    "startup_grace_s": P("float", None, 0.0, 3600.0),
    "flap_changes": P("float", None, 0.0, 1000.0),
    "flap_window_s": P("float", None, 1.0, 86400.0),
}
# Timing a check gets when neither the check nor the config's ``defaults:`` says (config/health/checks.yaml
# documents the measured values it ships). The one place for these fallbacks.
FALLBACK_TIMING: dict[str, float] = {
    "debounce_s": 0.0,
    "clear_s": 0.0,
    # 0 here keeps a tree that does not ask for a grace as it was; the shipped checks.yaml asks for 30 s.
    "startup_grace_s": 0.0,
    "flap_changes": 6.0,  # 3 raise/clear cycles ...
    "flap_window_s": 300.0,  # ... within 5 minutes: one FLAPPING alert instead (0 changes disables)
}
KIND_PARAMS: dict[str, dict[str, P]] = {
    "topic_silence": {"topic": P("topic"), "timeout_s": P("float", REQUIRED, 0.01, 3600.0)},
    "topic_rate": {
        "topic": P("topic"),
        "min_rate_hz": P("float", REQUIRED, 0.001, 10000.0),
        "window_s": P("float", 2.0, 0.1, 600.0),
        "clear_rate_hz": P("float", None, 0.001, 10000.0),
    },
    "speed_drop": {
        "odom_topic": P("topic", "odom", topic_types=ODOM_TYPES),
        "cmd_topic": P("topic", "cmd_vel", topic_types=TWIST_TYPES),
        "ratio": P("float", 0.5, 0.01, 1.0),
        "clear_ratio": P("float", None, 0.01, 1.0),
        "min_command": P("float", 0.05, 0.0, 100.0),
        "command_timeout_s": P("float", 1.0, 0.01, 60.0),
        "odom_timeout_s": P("float", 1.0, 0.01, 60.0),
    },
    "battery": {
        "topic": P("topic", "battery_state", topic_types=("sensor_msgs/msg/BatteryState",)),
        "low": P("float", 0.2, 0.0, 1.0),
        "critical": P("float", 0.1, 0.0, 1.0),
        "hysteresis": P("float", 0.03, 0.0, 0.5),
    },
    "imu_anomaly": {
        "topic": P("topic", "imu", topic_types=("sensor_msgs/msg/Imu",)),
        "max_angular_velocity": P("float", 10.0, 0.0, 1000.0),
        "max_linear_acceleration": P("float", 50.0, 0.0, 10000.0),
        "frozen_s": P("float", 0.0, 0.0, 3600.0),
        "stale_s": P("float", 1.0, 0.01, 3600.0),
    },
    "localization_anomaly": {
        "topic": P("topic", "odom", topic_types=POSE_TYPES),
        "max_jump_m": P("float", 1.0, 0.0, 1e6),
        "max_abs_m": P("float", 1000.0, 0.0, 1e7),
        "frozen_s": P("float", 0.0, 0.0, 3600.0),
        "stale_s": P("float", 1.0, 0.01, 3600.0),
    },
    "nodes_missing": {"expected": P("str_list")},
    "nats_link": {"link": P("name", "nats")},
    "host_resources": {
        "resource": P("choice", choices=HOST_RESOURCES),
        "max": P("float", REQUIRED, 0.0, 1000.0),
        "clear_below": P("float", None, 0.0, 1000.0),
        "path": P("str", "/"),
        "sample_period_s": P("float", 2.0, 0.1, 3600.0),
        "window_s": P("float", 0.0, 0.0, 86400.0),
    },
    "host_overload": {
        "max_tick_gap_s": P("float", MAX_TICK_GAP_S, 0.05, 60.0),
        "pressure_max_pct": P("float", PRESSURE_MAX_PCT, 1.0, 100.0),
        "pressure_clear_pct": P("float", PRESSURE_CLEAR_PCT, 0.0, 100.0),
        "pressure_period_s": P("float", PRESSURE_PERIOD_S, 0.1, 60.0),
        "settle_s": P("float", SETTLE_S, 0.0, 60.0),
        "hold_s": P("float", 5.0, 0.0, 600.0),
        "witness_gap_s": P("float", WITNESS_GAP_S, 0.0, 10.0),
    },
}
DEFAULT_SEVERITY = {
    "topic_silence": "error",
    "topic_rate": "warn",
    "speed_drop": "error",
    "battery": "warn",
    "imu_anomaly": "error",
    "localization_anomaly": "error",
    "nodes_missing": "error",
    "nats_link": "warn",
    "host_resources": "warn",
    "host_overload": "warn",
}


def _code_suffix(topic: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", ".", topic.strip("/~")).strip(".") or "root"


def default_code(kind: str, params: Mapping[str, Any]) -> str:
    """Stable fault code of a check when the config gives none (derived from kind and target)."""
    if kind == "topic_silence":
        return f"TOPIC_SILENT.{_code_suffix(params['topic'])}"
    if kind == "topic_rate":
        return f"TOPIC_RATE_LOW.{_code_suffix(params['topic'])}"
    if kind == "host_resources":
        return f"HOST_{params['resource'].upper()}_HIGH"
    if kind == "nats_link":
        return f"{params['link'].upper()}_LINK_DOWN"
    if kind == "host_overload":
        return "HOST_OVERLOADED"
    return kind.upper() if kind != "battery" else "BATTERY_LOW"


CHECK_CLASSES: dict[str, type[HealthCheck]] = {
    cls.kind: cls
    for cls in (
        TopicSilenceCheck,
        TopicRateCheck,
        SpeedDropCheck,
        BatteryCheck,
        ImuAnomalyCheck,
        LocalizationAnomalyCheck,
        NodesMissingCheck,
        LinkCheck,
        HostResourceCheck,
        HostOverloadCheck,
    )
}
assert set(KIND_PARAMS) == set(CHECK_CLASSES), "every check kind needs a parameter schema"
