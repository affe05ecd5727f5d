"""Build the health behaviour tree from YAML (or an equivalent dict).

Why config, not code: a site adds "alert when /lidar_front is silent for 0.5 s" by adding four YAML
lines. Every check of an existing kind is data; only a new *kind* needs code (a class in
:mod:`topic_checks`, :mod:`value_checks` or :mod:`system_checks` plus an entry in :data:`KIND_PARAMS`).

Config shape::

    defaults: {debounce_s: 1.0, clear_s: 2.0}         # optional, apply to every check
    topics:                                           # every topic a check reads, with its ROS type
      scan: sensor_msgs/msg/LaserScan                 #   short form
      odom: {type: nav_msgs/msg/Odometry, qos: reliable}
    checks:
      - {name: scan_silent, kind: topic_silence, group: sensors, topic: scan, timeout_s: 1.0,
         severity: error}

Tree: root Parallel ``health`` -> one Parallel per ``group`` -> checks (all ticked every tick).
Errors are :class:`HealthConfigError` naming the source and line (YAML) and the key at fault.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import py_trees
import yaml

from robot_platform.health.check_kinds import (
    CHECK_CLASSES,
    CODE_RE,
    COMMON_PARAMS,
    DEFAULT_SEVERITY,
    FALLBACK_TIMING,
    KIND_PARAMS,
    NAME_RE,
    QOS_CHOICES,
    REQUIRED,
    TOPIC_RE,
    TYPE_RE,
    P,
    default_code,
)
from robot_platform.health.checks import Clock, EventSink, HealthCheck
from robot_platform.health.errors import HealthConfigError, HealthConfigSyntaxError, UnknownCheckKindError
from robot_platform.health.fault_state import SEVERITY_NAMES, FaultSpec
from robot_platform.health.flapping import FlapDetector
from robot_platform.health.sources import EXTRACTORS, DataHub
from robot_platform.health.starvation import read_cpu_pressure
from robot_platform.health.topic_checks import TopicRateCheck, TopicSilenceCheck

# ---- YAML with line numbers ------------------------------------------------------------------------


class _LineDict(dict):
    """A mapping that remembers the line of itself and of each key (1-based)."""

    line: int | None = None
    key_lines: dict[str, int]


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    result = _LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) or key is None:
            raise HealthConfigSyntaxError("", key_node.start_mark.line + 1, "", "mapping keys must be scalars")
        if key in result:
            raise HealthConfigSyntaxError("", key_node.start_mark.line + 1, str(key), "duplicate key")
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[str(key)] = key_node.start_mark.line + 1
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config_text(text: str, source: str) -> Mapping[str, Any]:
    """Parse YAML text keeping line numbers; syntax errors name the line."""
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass, only a dict hook
    except HealthConfigSyntaxError as exc:
        raise HealthConfigSyntaxError(source, exc.line, exc.key, exc.reason) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise HealthConfigSyntaxError(source, line, "", f"YAML syntax error: {problem}") from None
    if not isinstance(data, dict):
        raise HealthConfigError(source, 1, "", "the config must be a mapping with a 'checks' list")
    return data


def load_config_file(path: str | Path) -> Mapping[str, Any]:
    """Read and parse a YAML config file (errors name the file and line)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise HealthConfigError(str(p), None, "", f"cannot read the file: {exc.strerror}") from None
    return load_config_text(text, str(p))


# ---- validation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicSpec:
    """A topic the monitor subscribes to."""

    topic: str
    msg_type: str
    qos: str = "sensor_data"


@dataclass
class HealthTree:
    """What the builder produces: the tree, its checks in tick order, the caches and the subscriptions."""

    tree: py_trees.trees.BehaviourTree
    checks: list[HealthCheck]
    hub: DataHub
    topics: dict[str, TopicSpec] = field(default_factory=dict)

    def check(self, name: str) -> HealthCheck | None:
        return next((c for c in self.checks if c.name == name), None)


class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: Mapping[str, Any] | None, key: str, reason: str, item: str | None = None) -> None:
        line = None
        if isinstance(where, _LineDict):
            line = where.key_lines.get(item, where.line) if item is not None else where.line
        raise HealthConfigError(self.source, line, key, reason)


def _convert(ctx: _Ctx, spec: P, value: Any, where: Mapping[str, Any], key: str, item: str) -> Any:
    def bad(reason: str) -> None:
        ctx.fail(where, key, reason, item)

    if spec.kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            bad(f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            bad("must be finite")
        if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
            bad(f"{value:g} is outside {spec.min:g}..{spec.max:g}")
        return value
    if spec.kind == "bool":
        if not isinstance(value, bool):
            bad(f"expected true or false, got {value!r}")
        return value
    if spec.kind == "str_list":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            bad("expected a non-empty list of names")
        return list(value)
    if not isinstance(value, str):
        bad(f"expected a string, got {value!r}")
    if spec.kind == "name" and not NAME_RE.match(value):
        bad(f"{value!r} is not a valid name (letters, digits, _; starting with a letter)")
    if spec.kind == "topic" and not TOPIC_RE.match(value):
        bad(f"{value!r} is not a valid ROS topic name")
    if spec.kind == "code" and not CODE_RE.match(value):
        bad(f"{value!r} is not a valid fault code (UPPER_CASE, optional .suffix parts)")
    if spec.kind == "choice" and value not in spec.choices:
        bad(f"{value!r} is not one of {', '.join(spec.choices)}")
    if spec.kind == "severity":
        if value.lower() not in SEVERITY_NAMES:
            bad(f"severity {value!r} is not one of {', '.join(SEVERITY_NAMES)}")
        return SEVERITY_NAMES[value.lower()]
    return value


def _topics(ctx: _Ctx, cfg: Mapping[str, Any]) -> dict[str, TopicSpec]:
    raw = cfg.get("topics", {}) or {}
    if not isinstance(raw, dict):
        ctx.fail(cfg, "topics", "expected a mapping topic -> type", "topics")
    out: dict[str, TopicSpec] = {}
    for topic, entry in raw.items():
        key = f"topics.{topic}"
        if not isinstance(topic, str) or not TOPIC_RE.match(topic):
            ctx.fail(raw, key, f"{topic!r} is not a valid ROS topic name", str(topic))
        spec = {"type": entry} if isinstance(entry, str) else entry
        if not isinstance(spec, dict) or set(spec) - {"type", "qos"}:
            ctx.fail(raw, key, "expected a type string or {type: ..., qos: sensor_data|reliable}", topic)
        msg_type, qos = spec.get("type"), spec.get("qos", "sensor_data")
        if not isinstance(msg_type, str) or not TYPE_RE.match(msg_type):
            ctx.fail(raw, key, f"type {msg_type!r} is not of the form package/msg/Type", topic)
        if qos not in QOS_CHOICES:
            ctx.fail(raw, key, f"qos {qos!r} is not one of {', '.join(QOS_CHOICES)}", topic)
        out[topic] = TopicSpec(topic, msg_type, qos)
    return out


def _link_rate_to_silence(checks: list[HealthCheck]) -> None:
    """A rate check defers to a silence check on the same topic: a silent topic is one alert, not two."""
    for rate in checks:
        if isinstance(rate, TopicRateCheck):
            timeouts = [c.timeout_s for c in checks if isinstance(c, TopicSilenceCheck) and c.feed is rate.feed]
            rate.silence_timeout_s = min(timeouts) if timeouts else None


def build_tree(
    config: Mapping[str, Any],
    *,
    clock: Clock,
    sink: EventSink | None = None,
    source: str = "<config>",
    sampler: Callable[[str, str], float | None] | None = None,
    pressure: Callable[[], float | None] | None = None,
) -> HealthTree:
    """Validate ``config`` and build the tree. Raises :class:`HealthConfigError` (or a subclass).

    ``sampler`` (host resources) and ``pressure`` (CPU pressure, host_overload) are injectable for tests.
    """
    ctx = _Ctx(source)
    unknown_top = set(config) - {"defaults", "topics", "checks"}
    if unknown_top:
        key = sorted(map(str, unknown_top))[0]
        ctx.fail(config, key, "unknown top-level key (expected defaults, topics, checks)", key)
    defaults = config.get("defaults", {}) or {}
    if not isinstance(defaults, dict) or set(defaults) - set(FALLBACK_TIMING):
        ctx.fail(config, "defaults", f"defaults may only set {', '.join(FALLBACK_TIMING)}", "defaults")
    base = dict(FALLBACK_TIMING)
    base |= {k: _convert(ctx, COMMON_PARAMS[k], v, defaults, f"defaults.{k}", k) for k, v in defaults.items()}
    topics = _topics(ctx, config)
    raw_checks = config.get("checks")
    if not isinstance(raw_checks, list) or not raw_checks:
        ctx.fail(config, "checks", "'checks' must be a non-empty list", "checks")

    hub = DataHub()
    checks: list[HealthCheck] = []
    groups: dict[str, list[HealthCheck]] = {}
    host_sampler = sampler
    for i, raw in enumerate(raw_checks):
        where = f"checks[{i}]"
        if not isinstance(raw, dict):
            ctx.fail(
                raw_checks if isinstance(raw_checks, _LineDict) else config,
                where,
                "each check must be a mapping",
                "checks",
            )
        kind = raw.get("kind")
        if kind not in KIND_PARAMS:
            line = raw.key_lines.get("kind", raw.line) if isinstance(raw, _LineDict) else None
            raise UnknownCheckKindError(source, line, f"{where}.kind", str(kind), sorted(KIND_PARAMS))
        schema = {**COMMON_PARAMS, **KIND_PARAMS[kind]}
        for key in raw:
            if key not in schema:
                ctx.fail(
                    raw,
                    f"{where}.{key}",
                    f"unknown parameter for kind {kind} (known: {', '.join(sorted(schema))})",
                    str(key),
                )
        params: dict[str, Any] = {}
        for key, spec in schema.items():
            if key in raw:
                params[key] = _convert(ctx, spec, raw[key], raw, f"{where}.{key}", key)
            elif spec.default is REQUIRED:
                ctx.fail(raw, f"{where}.{key}", f"required for kind {kind}")
            else:
                params[key] = spec.default
        name = params["name"]
        if any(c.name == name for c in checks):
            ctx.fail(raw, f"{where}.name", f"duplicate check name {name!r}", "name")
        if not params["enabled"]:
            continue
        kwargs: dict[str, Any] = {}
        for key, spec in KIND_PARAMS[kind].items():
            value = params[key]
            if spec.kind == "topic":
                declared = topics.get(value)
                if declared is None:
                    if len(spec.topic_types) >= 1:
                        declared = topics[value] = TopicSpec(value, spec.topic_types[0])
                    else:
                        ctx.fail(
                            raw,
                            f"{where}.{key}",
                            f"topic {value!r} is not declared under 'topics:' (add it with its message type)",
                            key,
                        )
                elif spec.topic_types and declared.msg_type not in spec.topic_types:
                    ctx.fail(
                        raw,
                        f"{where}.{key}",
                        f"topic {value!r} has type {declared.msg_type}; kind {kind} "
                        f"needs {' or '.join(spec.topic_types)}",
                        key,
                    )
                assert declared is not None
                value = hub.feed(value, declared.msg_type, EXTRACTORS.get(declared.msg_type))
                key = {"topic": "feed", "odom_topic": "odom", "cmd_topic": "cmd"}[key]
            elif value is None:
                continue
            kwargs[key] = value
        if kind == "battery" and kwargs["critical"] > kwargs["low"]:
            ctx.fail(raw, f"{where}.critical", "critical must not exceed low", "critical")
        if kind == "nodes_missing":
            kwargs["graph"] = hub.graph
        if kind == "nats_link":
            kwargs["link"] = hub.link(kwargs["link"])
        if kind in ("topic_silence", "topic_rate", "host_overload"):
            kwargs["guard"] = hub.load
        if kind == "topic_silence":
            kwargs["hub"] = hub  # the witnesses of a silence on a saturated host
        if kind == "host_overload":
            kwargs["pressure"] = pressure or read_cpu_pressure
        if kind == "host_resources":
            if host_sampler is None:
                from robot_platform.health.system_checks import HostSampler

                host_sampler = HostSampler().read
            kwargs["sampler"] = host_sampler
        severity = params["severity"]
        timing = {k: params[k] if params[k] is not None else base[k] for k in FALLBACK_TIMING}
        fault = FaultSpec(
            code=params["code"] or default_code(kind, params),
            severity=SEVERITY_NAMES[DEFAULT_SEVERITY[kind]] if severity is None else severity,
            debounce_s=timing["debounce_s"],
            clear_s=timing["clear_s"],
        )
        flap_changes = int(timing["flap_changes"])
        if flap_changes == 1:
            ctx.fail(raw, f"{where}.flap_changes", "must be 0 (off) or at least 2", "flap_changes")
        flap = FlapDetector(flap_changes, timing["flap_window_s"]) if flap_changes else None
        check = CHECK_CLASSES[kind](
            name,
            fault,
            clock,
            group=params["group"],
            sink=sink,
            startup_grace_s=timing["startup_grace_s"],
            flap=flap,
            **kwargs,
        )
        checks.append(check)
        groups.setdefault(params["group"], []).append(check)
    if not checks:
        ctx.fail(config, "checks", "every check is disabled; enable at least one", "checks")
    _link_rate_to_silence(checks)
    policy = py_trees.common.ParallelPolicy.SuccessOnAll(synchronise=False)
    branches = [py_trees.composites.Parallel(name=g, policy=policy, children=list(cs)) for g, cs in groups.items()]
    root = py_trees.composites.Parallel(
        name="health",
        policy=py_trees.common.ParallelPolicy.SuccessOnAll(synchronise=False),
        children=branches,
    )
    return HealthTree(py_trees.trees.BehaviourTree(root), checks, hub, topics)
