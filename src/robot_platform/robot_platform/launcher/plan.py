"""Which nodes and servers make up a robot and the control server: the one source of truth.

Both the launch files (``launch/robot.launch.py``, ``launch/control.launch.py``, for machines with
ROS 2 from apt) and the pip-only runner (``robot-platform robot`` / ``control``) read this module, so the
two ways of starting the platform cannot drift apart. Each node gets the same parameters file
(``config/robot.yaml`` or ``config/control.yaml``) plus the few per-instance overrides computed here.

Plain Python: no launch, no rclpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from robot_platform.exceptions import ConfigError

STRING, BOOL, INTEGER, STRING_ARRAY = "string", "bool", "integer", "string_array"
ARGUMENT_KINDS = (STRING, BOOL, INTEGER, STRING_ARRAY)


@dataclass(frozen=True)
class Argument:
    """A launch argument (``name:=value``) / runner option (``--name value``).

    ``kind`` is the type of the ROS parameter it sets: an argument keeps its declared type whatever its
    value looks like (``robot_id:=7`` stays the string "7", as ``ParameterValue(..., value_type=str)``
    does in launch_ros), and a value that does not fit the kind is refused with the argument's name.
    """

    name: str
    default: str | None  # None: required (robot_id: a robot must not be "r1" by accident)
    description: str
    kind: str = STRING


@dataclass(frozen=True)
class NodeSpec:
    """One ROS node of the platform.

    With ``agent_layout:=split`` every node runs in a process of its own; with ``agent_layout:=single``
    the robot's ``agent`` nodes share one process (:mod:`robot_platform.agent.one_process`), while the
    others (the simulator, standing in for the robot's own drivers) keep a process of their own.
    """

    executable: str  # ament_python entry point in lib/robot_platform
    name: str  # node name (matches the params file key)
    enabled_by: str  # boolean argument that switches it on
    description: str
    # parameter name -> argument name whose value overrides it
    overrides: dict[str, str] = field(default_factory=dict)
    agent: bool = True  # part of the robot agent (one process in the single layout)


# Arguments every robot and control launch has, as nav2_bringup declares them.
COMMON_ARGUMENTS: tuple[Argument, ...] = (
    Argument("namespace", "", "ROS namespace of every node (several robots' nodes on one graph); empty: none"),
    Argument("params_file", "",
             "Parameters YAML for every node; empty: the installed config/robot.yaml or config/control.yaml"),
    Argument("log_level", "info", "Log level of every node (debug, info, warn, error, fatal)"),
    Argument("use_respawn", "false",
             "Restart a node that exits (after 2 s); false: a node that exits stops the whole launch", BOOL),
)

ROBOT_ARGUMENTS: tuple[Argument, ...] = (
    *COMMON_ARGUMENTS,
    Argument("robot_id", None, "Robot id (required): NATS subjects robots.<id>..., fleet namespace /fleet/<id>"),
    Argument("use_sim", "true", "Start the robot simulator (robot_sim) instead of real drivers", BOOL),
    Argument("start_nats", "true", "Start this robot's local nats-server (leaf of the control hub)", BOOL),
    Argument("nats_port", "4222", "Client port of the robot's local nats-server", INTEGER),
    Argument("nats_monitor_port", "8222", "HTTP monitoring port of the robot's local nats-server", INTEGER),
    Argument("hub_leaf_url", "nats-leaf://127.0.0.1:7422", "Leaf node URL of the control server's hub"),
    Argument("nats_store_dir", "/tmp/robot_platform/nats", "JetStream storage of the robot's nats-server"),  # noqa: S108 - demo default; robots set their own
    Argument("enable_camera", "false",
             "Camera on: the simulator publishes 640x480 rgb8, frame_publisher streams JPEG on demand", BOOL),
    Argument("enable_bridge", "true", "Start nats_bridge (ROS topics <-> NATS subjects)", BOOL),
    Argument("bridge_metrics_port", "9102", "Prometheus endpoint of nats_bridge on 127.0.0.1 (0: off)", INTEGER),
    Argument("enable_ws", "true", "Start ws_agent: the touch panel and rosbridge v2 WebSocket for this robot",
             BOOL),
    Argument("ws_port", "9090", "HTTP/WebSocket port of the robot's ws_agent (touch panel)", INTEGER),
    Argument("users_file", "", "ws_agent users/roles YAML (config/users.example.yaml); empty: view-only"),
    Argument("enable_health", "true", "Start health_monitor_tree (fault detection, alerts, metrics)", BOOL),
    Argument("enable_ops", "true",
             "Start robot_agent: registry presence, logs to NATS, safe remote actions, SSH tunnel", BOOL),
    Argument("roles_file", "",
             "robot_agent operator roles YAML (config/ops/roles.example.yaml); empty: every remote action refused"),
    Argument("enable_deploy", "true", "Start deploy_service (signed packages from S3, run, roll back)", BOOL),
    Argument("nats_url", "", "URL the nodes use for NATS; empty: the robot's own server at nats_port"),
    Argument("metrics_port", "9101", "Prometheus endpoint of health_monitor_tree on 127.0.0.1 (0: off)", INTEGER),
    Argument("agent_layout", "single",
             "single: the robot agent's nodes (all but robot_sim) in one process; split: one process per node"),
)

ROBOT_NODES: tuple[NodeSpec, ...] = (
    NodeSpec("robot_sim", "robot_sim", "use_sim", "Simulated base, battery, lidar, IMU and camera",
             overrides={"robot_id": "robot_id", "enable_camera": "enable_camera"}, agent=False),
    NodeSpec("nats_bridge", "nats_bridge", "enable_bridge",
             "ROS <-> NATS: telemetry out (robots.<id>.ros.*), allowlisted commands in (robots.<id>.cmd.*)",
             overrides={"robot_id": "robot_id", "nats_url": "nats_url", "metrics_port": "bridge_metrics_port"}),
    NodeSpec("health_monitor_tree", "health_monitor_tree", "enable_health",
             "Behaviour-tree fault detection: alerts (ROS, NATS, MQTT), /diagnostics, Prometheus metrics",
             overrides={"robot_id": "robot_id", "nats_url": "nats_url", "metrics_port": "metrics_port"}),
    NodeSpec("frame_publisher", "frame_publisher", "enable_camera",
             "Camera frames as JPEG over NATS, on demand (leases), within a bandwidth budget",
             overrides={"robot_id": "robot_id", "nats_url": "nats_url"}),
    NodeSpec("ws_agent", "ws_agent", "enable_ws",
             "WebSocket gateway (rosbridge v2) and touch panel for this robot",
             overrides={"robot_id": "robot_id", "nats_url": "nats_url", "port": "ws_port",
                        "users_file": "users_file"}),
    NodeSpec("robot_agent", "robot_agent", "enable_ops",
             "Presence (registry), /rosout -> robots.<id>.logs (LOGS_<id>), safe remote actions, reverse SSH tunnel",
             overrides={"robot_id": "robot_id", "nats_url": "nats_url", "roles_file": "roles_file"}),
    NodeSpec("deploy_service", "deploy_service", "enable_deploy",
             "Deployments: ROS services deploy/rollback/list_packages, status on ROS and NATS",
             overrides={"robot_id": "robot_id", "nats_url": "nats_url"}),
)

CONTROL_ARGUMENTS: tuple[Argument, ...] = (
    *COMMON_ARGUMENTS,
    Argument("start_nats", "true", "Start the NATS hub (JetStream) of the control server", BOOL),
    Argument("nats_port", "4222", "Client port of the hub", INTEGER),
    Argument("nats_monitor_port", "8222", "HTTP monitoring port of the hub", INTEGER),
    Argument("leaf_port", "7422", "Port robots' nats-servers connect to as leaf nodes", INTEGER),
    Argument("nats_store_dir", "/tmp/robot_platform/hub", "JetStream storage of the hub"),  # noqa: S108 - demo default
    Argument("nats_url", "", "URL the control nodes use for NATS; empty: the hub at nats_port"),
    Argument("enable_bridge", "true", "Start the control nats_bridge (fleet mirror /fleet/<id>/..., commands)",
             BOOL),
    Argument("bridge_metrics_port", "9202", "Prometheus endpoint of the control nats_bridge (0: off)", INTEGER),
    Argument("fleet_robots", "[r1]", "Robots of the fleet, e.g. [r1,r2,r3] (event streams, commands)",
             STRING_ARRAY),
    Argument("enable_ws", "true", "Start ws_agent in fleet mode: the operator console", BOOL),
    Argument("ws_port", "8080", "HTTP/WebSocket port of the operator console", INTEGER),
    Argument("users_file", "", "ws_agent users/roles YAML (config/users.example.yaml); empty: view-only"),
    Argument("enable_registry", "true", "Start fleet_registry: KV registry, offline sweep, FLEET_LOGS", BOOL),
    Argument("enable_jobs", "true", "Start jobs_service (AWS IoT Jobs over MQTT, staged rollouts)", BOOL),
    Argument("jobs_metrics_port", "9203", "Prometheus endpoint of jobs_service (0: off)", INTEGER),
    Argument("jobs_store", "~/.robot_platform/jobs/jobs.sqlite3", "SQLite file of jobs and executions"),
)

CONTROL_NODES: tuple[NodeSpec, ...] = (
    NodeSpec("nats_bridge", "nats_bridge", "enable_bridge",
             "Fleet mirror /fleet/<id>/..., fleet commands, FLEET_EVENTS stream on the hub",
             overrides={"nats_url": "nats_url", "fleet_robots": "fleet_robots",
                        "metrics_port": "bridge_metrics_port"}),
    NodeSpec("ws_agent", "ws_agent", "enable_ws",
             "WebSocket gateway (rosbridge v2) in fleet mode and the operator console",
             overrides={"nats_url": "nats_url", "port": "ws_port", "users_file": "users_file"}),
    NodeSpec("fleet_registry", "fleet_registry", "enable_registry",
             "Fleet registry (KV FLEET_REGISTRY, offline after timeout) and FLEET_LOGS sourcing each robot's logs",
             overrides={"nats_url": "nats_url", "fleet_robots": "fleet_robots"}),
    NodeSpec("jobs_service", "jobs_service", "enable_jobs",
             "Fleet deployments: AWS IoT Jobs server over Mosquitto, staged rollouts, API on NATS jobs.*",
             overrides={"nats_url": "nats_url", "store_path": "jobs_store", "metrics_port": "jobs_metrics_port"}),
)

BOOLEAN_TRUE = ("true", "1", "yes", "on")
BOOLEAN_FALSE = ("false", "0", "no", "off")


def is_true(value: str) -> bool:
    """Launch-style boolean (``true``/``false``) parsing, shared by the launch files and the runner."""
    return value.strip().lower() in BOOLEAN_TRUE


def coerce(value: str, kind: str = STRING, name: str = "argument") -> bool | int | str | list[str]:
    """Turn an argument string into a parameter of the argument's declared ``kind``.

    Never guesses from the value: "7" stays a string for a string argument (a robot id), and "abc" for an
    integer argument is a :class:`ConfigError` naming the argument instead of a node dying at start.
    """
    text = value.strip()
    if kind == STRING:
        return value
    if kind == BOOL:
        if text.lower() in BOOLEAN_TRUE:
            return True
        if text.lower() in BOOLEAN_FALSE:
            return False
        raise ConfigError(name, value, "expected true or false")
    if kind == INTEGER:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(name, value, "expected an integer") from None
    if kind == STRING_ARRAY:
        if not (text.startswith("[") and text.endswith("]")):
            raise ConfigError(name, value, "expected a list such as [r1,r2]")
        return [item.strip().strip("'\"") for item in text[1:-1].split(",") if item.strip()]
    raise ConfigError(name, kind, f"unknown argument kind; use one of {ARGUMENT_KINDS}")


def resolve(args: dict[str, str]) -> dict[str, str]:
    """Fill in arguments whose default depends on others (an empty ``nats_url`` means the local server)."""
    out = dict(args)
    if not out.get("nats_url") and "nats_port" in out:
        out["nats_url"] = f"nats://127.0.0.1:{out['nats_port']}"
    return out


def argument_kinds(arguments: tuple[Argument, ...]) -> dict[str, str]:
    return {a.name: a.kind for a in arguments}


def node_overrides(spec: NodeSpec, args: dict[str, str],
                   arguments: tuple[Argument, ...] | None = None) -> dict[str, bool | int | str | list[str]]:
    """The per-instance parameter overrides of ``spec`` given the argument values, each of the type its
    argument declares (``arguments``: the robot's and the control server's declarations by default)."""
    kinds = argument_kinds(arguments) if arguments else argument_kinds(ROBOT_ARGUMENTS) | argument_kinds(
        CONTROL_ARGUMENTS)
    values = resolve(args)
    return {param: coerce(values[arg], kinds.get(arg, STRING), arg) for param, arg in spec.overrides.items()}


NATS_HOST = "127.0.0.1"
# Environment variable config/nats/robot.conf (hub.conf) reads -> the argument(s) it comes from; two
# names mean a path joined from both. The launch files build the same mapping from substitutions.
ROBOT_NATS_ENV: dict[str, tuple[str, ...]] = {
    "RP_ROBOT_ID": ("robot_id",),
    "RP_NATS_PORT": ("nats_port",),
    "RP_NATS_MONITOR_PORT": ("nats_monitor_port",),
    "RP_NATS_HUB_LEAF_URL": ("hub_leaf_url",),
    "RP_NATS_STORE_DIR": ("nats_store_dir", "robot_id"),
}
# Variables the NATS config must read as strings: nats-server parses a variable's value like config, so
# a robot id "7" became an integer and the server refused robot.conf (server_name, jetstream domain).
QUOTED_NATS_VARS = frozenset({"RP_ROBOT_ID"})
CONTROL_NATS_ENV: dict[str, tuple[str, ...]] = {
    "RP_NATS_PORT": ("nats_port",),
    "RP_NATS_MONITOR_PORT": ("nats_monitor_port",),
    "RP_NATS_LEAF_PORT": ("leaf_port",),
    "RP_NATS_STORE_DIR": ("nats_store_dir",),
}


def _nats_env(table: dict[str, tuple[str, ...]], args: dict[str, str]) -> dict[str, str]:
    env = {"RP_NATS_HOST": NATS_HOST}
    for var, names in table.items():
        value = str(Path(*(args[n] for n in names))) if len(names) > 1 else args[names[0]]
        env[var] = f'"{value}"' if var in QUOTED_NATS_VARS else value
    return env


def robot_nats_env(args: dict[str, str]) -> dict[str, str]:
    """Environment variables config/nats/robot.conf reads."""
    return _nats_env(ROBOT_NATS_ENV, args)


LARGE_DATA_PROFILE = ("config", "fastdds", "large_data.xml")


def robot_ros_env(args: dict[str, str], share: Path) -> dict[str, str]:
    """Environment for every ROS process of a robot: with the camera on, the Fast DDS profile whose
    shared-memory segment holds a raw 640x480 image (the default one loses frames)."""
    if is_true(args["enable_camera"]):
        return {"FASTRTPS_DEFAULT_PROFILES_FILE": str(share.joinpath(*LARGE_DATA_PROFILE))}
    return {}


def control_nats_env(args: dict[str, str]) -> dict[str, str]:
    """Environment variables config/nats/hub.conf reads."""
    return _nats_env(CONTROL_NATS_ENV, args)


def defaults(arguments: tuple[Argument, ...]) -> dict[str, str]:
    """Every argument's default; required arguments (no default) are left out for the caller to add."""
    return {a.name: a.default for a in arguments if a.default is not None}


RESPAWN_DELAY_S = 2.0  # launch files and runner alike wait this long before restarting a node


def ros_namespace(value: str) -> str:
    """``namespace`` argument as a ROS namespace ("" stays none; "site_a" becomes "/site_a")."""
    text = value.strip().strip("/")
    return f"/{text}" if text else ""


LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
SPLIT, SINGLE = "split", "single"
AGENT_LAYOUTS = (SPLIT, SINGLE)
AGENT_EXECUTABLE = "robot_agent_all"  # the single layout's process (robot_platform.agent.one_process)


def check_values(arguments: tuple[Argument, ...], values: dict[str, str]) -> None:
    """Refuse unknown arguments and values that do not fit their declared kind, naming the argument."""
    known = {a.name for a in arguments}
    unknown = set(values) - known
    if unknown:
        raise ConfigError("argument", sorted(unknown), f"unknown argument(s); known: {sorted(known)}")
    for a in arguments:
        if a.name in values:
            coerce(values[a.name], a.kind, a.name)
    level = values.get("log_level", "info").strip().lower()
    if level not in LOG_LEVELS:
        raise ConfigError("log_level", values.get("log_level"), f"use one of {', '.join(LOG_LEVELS)}")
    agent_layout(values)


def agent_layout(values: dict[str, str]) -> str:
    """The ``agent_layout`` argument (``single`` when absent), refused unless split or single."""
    layout = values.get("agent_layout", SINGLE).strip().lower()
    if layout not in AGENT_LAYOUTS:
        raise ConfigError("agent_layout", values.get("agent_layout"), f"use one of {', '.join(AGENT_LAYOUTS)}")
    return layout


def agent_argument_names(specs: tuple[NodeSpec, ...] = ROBOT_NODES) -> tuple[str, ...]:
    """The arguments the single-layout agent process reads (``--name=value`` on its command line, as
    the runner's options are spelled): each agent node's switch and overrides, and ``nats_port`` (an
    empty ``nats_url`` means the local server)."""
    names: list[str] = []
    for spec in specs:
        if spec.agent:
            names += [spec.enabled_by, *spec.overrides.values()]
    names.append("nats_port")
    return tuple(dict.fromkeys(names))


def agent_option(name: str) -> str:
    """``robot_id`` -> ``--robot-id=`` (followed by the value, in one word: an empty value stays one)."""
    return f"--{name.replace('_', '-')}="


def agent_argv(values: dict[str, str]) -> list[str]:
    """The ``--name=value`` words the agent process is started with (the runner's side). Not rcl's
    ``name:=value``: before ``--ros-args`` rcl takes that for a (deprecated) remapping rule."""
    return [agent_option(name) + values[name] for name in agent_argument_names() if name in values]


def agent_values(words: list[str] | tuple[str, ...]) -> dict[str, str]:
    """The agent process's side of :func:`agent_argv`: the argument values (defaults for those not
    given), checked like the runner's; anything else is a :class:`ConfigError` naming the word."""
    known = set(agent_argument_names())
    options = {agent_option(name): name for name in known}
    values = {a.name: a.default for a in ROBOT_ARGUMENTS if a.name in known}
    for word in words:
        option, sep, value = word.partition("=")
        if not sep or option + "=" not in options:
            raise ConfigError("argument", word, f"expected --name=value, name one of {sorted(options)}")
        values[options[option + "="]] = value
    check_values(ROBOT_ARGUMENTS, values)
    return values


def enabled_agent_nodes(values: dict[str, str], specs: tuple[NodeSpec, ...] = ROBOT_NODES) -> list[NodeSpec]:
    """The agent nodes switched on by ``values``, in plan order (the order they are built in)."""
    return [s for s in specs if s.agent and is_true(values.get(s.enabled_by, "false"))]


def agent_parameters(values: dict[str, str],
                     specs: tuple[NodeSpec, ...] = ROBOT_NODES) -> dict[str, dict[str, dict[str, object]]]:
    """The per-node overrides of the enabled agent nodes as a ROS parameters document, each keyed by
    ``/**/<node>`` like config/robot.yaml, so it works in any namespace (rcl's ``-p node:name:=value``
    does not: it only matches a node outside any namespace)."""
    return {f"/**/{spec.name}": {"ros__parameters": dict(node_overrides(spec, values, ROBOT_ARGUMENTS))}
            for spec in enabled_agent_nodes(values, specs)}  # fmt: skip
