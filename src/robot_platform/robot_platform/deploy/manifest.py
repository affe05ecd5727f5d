"""Package manifest (``manifest.yaml`` at the archive root): parsing and validation.

Why strict: the manifest decides what runs on the robot. Every command is an argv list (never a shell
string, so no shell injection), names and versions are restricted to characters that are safe as
directory names, and unknown keys are refused so that a typo does not silently drop a limit.

Format (``format: 1``)::

    format: 1
    name: hello_fn                 # [a-z0-9][a-z0-9_.-]{0,63}
    version: 1.0.0                 # [0-9A-Za-z][0-9A-Za-z._+-]{0,63}
    kind: function                 # function | app
    runtime: python3               # python3 (functions and apps) | native (apps only)
    handler: handler.main          # functions: module.function, module relative to the package root
    environment: {GREETING: hi}    # extra environment of every process of the package
    timeout_s: 10                  # function invocation / app health-check deadline
    limits: {memory_mb: 256, cpu_s: 30, open_files: 256, file_size_mb: 64}
    install:                       # optional, run once in the version directory, in order
      - [python3, -c, "print('setup')"]
    run: [python3, app.py]         # apps: the long-running process
    health_check:                  # apps: exit status 0 = healthy; retried until timeout_s
      command: [python3, check.py]
      interval_s: 0.5
    restart: on-failure            # apps: never | on-failure | always
    triggers:                      # functions: events besides on-request invocation
      - {nats: robots.r1.events.door}

In argv lists the program name ``python3`` (or ``python``) means the interpreter that runs
deploy_service, so packages work the same in a venv and on a system install.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robot_platform.deploy.errors import ManifestError

MANIFEST_NAME = "manifest.yaml"
FORMAT_VERSION = 1
MANIFEST_MAX_BYTES = 64 * 1024

KIND_FUNCTION = "function"
KIND_APP = "app"
KINDS = (KIND_FUNCTION, KIND_APP)
RUNTIME_PYTHON = "python3"
RUNTIME_NATIVE = "native"
RESTART_POLICIES = ("never", "on-failure", "always")

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$")
HANDLER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 3600.0
DEFAULT_HEALTH_INTERVAL_S = 0.5
MAX_ARGV_ITEMS = 256

_TOP_KEYS = {
    "format",
    "name",
    "version",
    "kind",
    "runtime",
    "handler",
    "environment",
    "timeout_s",
    "limits",
    "install",
    "run",
    "health_check",
    "restart",
    "triggers",
    "description",
}
_LIMIT_KEYS = {"memory_mb", "cpu_s", "open_files", "file_size_mb", "processes"}
_TRIGGER_KEYS = {"nats", "ros_topic", "schedule_s"}


@dataclass(frozen=True)
class ResourceLimits:
    """Per-process limits applied with setrlimit before the package's code runs (None = inherited)."""

    memory_mb: int | None = 512
    cpu_s: int | None = None
    open_files: int | None = 256
    file_size_mb: int | None = 256
    processes: int | None = None


@dataclass(frozen=True)
class HealthProbe:
    """An argv run repeatedly in the version directory until it exits 0 or the deadline passes."""

    command: tuple[str, ...]
    interval_s: float = DEFAULT_HEALTH_INTERVAL_S


@dataclass(frozen=True)
class Trigger:
    """One event source of a function: a NATS subject, a ROS topic (std_msgs/String), or a period."""

    nats: str = ""
    ros_topic: str = ""
    schedule_s: float = 0.0


@dataclass(frozen=True)
class Manifest:
    """A validated manifest. Build it with :func:`parse_manifest` / :func:`load_manifest` only."""

    name: str
    version: str
    kind: str
    runtime: str
    handler: str = ""
    environment: dict[str, str] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    install: tuple[tuple[str, ...], ...] = ()
    run: tuple[str, ...] = ()
    health_check: HealthProbe | None = None
    restart: str = "on-failure"
    triggers: tuple[Trigger, ...] = ()
    description: str = ""

    @property
    def handler_module(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @property
    def handler_function(self) -> str:
        return self.handler.rsplit(".", 1)[1]


def _require(data: dict[str, Any], key: str) -> Any:
    if key not in data or data[key] in (None, ""):
        raise ManifestError(key, "is required")
    return data[key]


def _string(value: Any, key: str, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str):
        raise ManifestError(key, f"must be a string, got {type(value).__name__}")
    if pattern is not None and not pattern.match(value):
        raise ManifestError(key, f"{value!r} does not match {pattern.pattern}")
    return value


def _number(value: Any, key: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ManifestError(key, f"must be a number, got {type(value).__name__}")
    if not low < value <= high:
        raise ManifestError(key, f"{value} is outside ({low:g}, {high:g}]")
    return float(value)


def _argv(value: Any, key: str) -> tuple[str, ...]:
    """An argv list of non-empty strings. A plain string is refused: commands never go through a shell."""
    if isinstance(value, str):
        raise ManifestError(key, "must be an argv list such as [python3, app.py], not a shell string")
    if not isinstance(value, list) or not value:
        raise ManifestError(key, "must be a non-empty list of strings")
    if len(value) > MAX_ARGV_ITEMS:
        raise ManifestError(key, f"has more than {MAX_ARGV_ITEMS} items")
    for i, item in enumerate(value):
        if not isinstance(item, str) or (i == 0 and not item) or "\x00" in item:
            raise ManifestError(f"{key}[{i}]", "must be a string without NUL (and non-empty for argv[0])")
    return tuple(value)


def _limits(value: Any) -> ResourceLimits:
    if value is None:
        return ResourceLimits()
    if not isinstance(value, dict):
        raise ManifestError("limits", "must be a mapping")
    unknown = set(value) - _LIMIT_KEYS
    if unknown:
        raise ManifestError("limits", f"unknown keys {sorted(unknown)}; allowed: {sorted(_LIMIT_KEYS)}")
    merged: dict[str, int | None] = {}
    for key in _LIMIT_KEYS:
        if key in value:
            item = value[key]
            if item is None:
                merged[key] = None
                continue
            if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
                raise ManifestError(f"limits.{key}", f"must be a positive integer, got {item!r}")
            merged[key] = item
    return ResourceLimits(**{**ResourceLimits().__dict__, **merged})


def _environment(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ManifestError("environment", "must be a mapping of NAME: value")
    env: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not ENV_KEY_RE.match(key):
            raise ManifestError("environment", f"invalid variable name {key!r}")
        if isinstance(item, bool | dict | list) or item is None:
            raise ManifestError(f"environment.{key}", "must be a string or a number")
        text = str(item)
        if "\x00" in text:
            raise ManifestError(f"environment.{key}", "must not contain NUL")
        env[key] = text
    return env


def _triggers(value: Any) -> tuple[Trigger, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ManifestError("triggers", "must be a list")
    out = []
    for i, item in enumerate(value):
        key = f"triggers[{i}]"
        if not isinstance(item, dict) or len(item) != 1 or set(item) - _TRIGGER_KEYS:
            raise ManifestError(key, "must be one of {nats: subject}, {ros_topic: /t}, {schedule_s: n}")
        if "nats" in item:
            out.append(Trigger(nats=_string(item["nats"], key + ".nats", re.compile(r"^[A-Za-z0-9_.>*-]+$"))))
        elif "ros_topic" in item:
            out.append(
                Trigger(
                    ros_topic=_string(item["ros_topic"], key + ".ros_topic", re.compile(r"^/?[A-Za-z][A-Za-z0-9_/]*$"))
                )
            )
        else:
            out.append(Trigger(schedule_s=_number(item["schedule_s"], key + ".schedule_s", 0.0, 86400.0)))
    return tuple(out)


def parse_manifest(data: Any) -> Manifest:
    """Validate a decoded manifest mapping; raise :class:`ManifestError` naming the first bad field."""
    if not isinstance(data, dict):
        raise ManifestError("", "must be a YAML mapping")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ManifestError("", f"unknown keys {sorted(unknown)}")
    fmt = data.get("format", FORMAT_VERSION)
    if fmt != FORMAT_VERSION:
        raise ManifestError("format", f"unsupported format {fmt!r}; this robot reads format {FORMAT_VERSION}")
    name = _string(_require(data, "name"), "name", NAME_RE)
    version = _string(_require(data, "version"), "version", VERSION_RE)
    if ".." in version:
        raise ManifestError("version", "must not contain '..'")
    kind = _string(_require(data, "kind"), "kind")
    if kind not in KINDS:
        raise ManifestError("kind", f"must be one of {list(KINDS)}, got {kind!r}")
    runtime = _string(_require(data, "runtime"), "runtime")
    allowed_runtimes = (RUNTIME_PYTHON,) if kind == KIND_FUNCTION else (RUNTIME_PYTHON, RUNTIME_NATIVE)
    if runtime not in allowed_runtimes:
        raise ManifestError("runtime", f"{kind} packages support {list(allowed_runtimes)}, got {runtime!r}")
    timeout_s = _number(data.get("timeout_s", DEFAULT_TIMEOUT_S), "timeout_s", 0.0, MAX_TIMEOUT_S)
    install = data.get("install") or []
    if not isinstance(install, list):
        raise ManifestError("install", "must be a list of argv lists")
    install_steps = tuple(_argv(step, f"install[{i}]") for i, step in enumerate(install))
    restart = data.get("restart", "on-failure")
    if restart not in RESTART_POLICIES:
        raise ManifestError("restart", f"must be one of {list(RESTART_POLICIES)}, got {restart!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ManifestError("description", "must be a string")

    handler = ""
    run: tuple[str, ...] = ()
    health: HealthProbe | None = None
    triggers: tuple[Trigger, ...] = ()
    if kind == KIND_FUNCTION:
        handler = _string(_require(data, "handler"), "handler", HANDLER_RE)
        triggers = _triggers(data.get("triggers"))
        for key in ("run", "health_check"):
            if key in data:
                raise ManifestError(key, "is for apps; a function has a handler")
    else:
        run = _argv(_require(data, "run"), "run")
        if "handler" in data or "triggers" in data:
            raise ManifestError("handler" if "handler" in data else "triggers", "is for functions only")
        raw_health = data.get("health_check")
        if raw_health is not None:
            if not isinstance(raw_health, dict) or set(raw_health) - {"command", "interval_s"}:
                raise ManifestError("health_check", "must be a mapping with command (argv) and interval_s")
            health = HealthProbe(
                command=_argv(raw_health.get("command"), "health_check.command"),
                interval_s=_number(
                    raw_health.get("interval_s", DEFAULT_HEALTH_INTERVAL_S),
                    "health_check.interval_s",
                    0.0,
                    60.0,
                ),
            )
    return Manifest(
        name=name,
        version=version,
        kind=kind,
        runtime=runtime,
        handler=handler,
        environment=_environment(data.get("environment")),
        timeout_s=timeout_s,
        limits=_limits(data.get("limits")),
        install=install_steps,
        run=run,
        health_check=health,
        restart=restart,
        triggers=triggers,
        description=description,
    )


def parse_manifest_text(text: str | bytes) -> Manifest:
    """Parse manifest.yaml content (safe YAML loader only: no Python object tags)."""
    if len(text) > MANIFEST_MAX_BYTES:
        raise ManifestError("", f"larger than {MANIFEST_MAX_BYTES} bytes")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError("", f"is not valid YAML: {exc}") from exc
    return parse_manifest(data)


def load_manifest(directory: Path) -> Manifest:
    """Read and validate ``<directory>/manifest.yaml``."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file() or path.is_symlink():
        raise ManifestError("", f"{MANIFEST_NAME} is missing at the package root")
    return parse_manifest_text(path.read_bytes())
