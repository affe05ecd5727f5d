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


@dataclass(frozen=True)
class Argument:
    """A launch argument (``name:=value``) / runner option (``--name value``)."""

    name: str
    default: str
    description: str


@dataclass(frozen=True)
class NodeSpec:
    """One ROS node of the platform, started in a process of its own (nodes that carry traffic each
    need a core's worth of GIL)."""

    executable: str  # ament_python entry point in lib/robot_platform
    name: str  # node name (matches the params file key)
    enabled_by: str  # boolean argument that switches it on
    description: str
    # parameter name -> argument name whose value overrides it
    overrides: dict[str, str] = field(default_factory=dict)


ROBOT_ARGUMENTS: tuple[Argument, ...] = (
    Argument("robot_id", "r1", "Robot id: NATS subjects robots.<id>..., fleet namespace /fleet/<id>"),
    Argument("use_sim", "true", "Start the robot simulator (robot_sim) instead of real drivers"),
    Argument("start_nats", "true", "Start this robot's local nats-server (leaf of the control hub)"),
    Argument("nats_port", "4222", "Client port of the robot's local nats-server"),
    Argument("nats_monitor_port", "8222", "HTTP monitoring port of the robot's local nats-server"),
    Argument("hub_leaf_url", "nats-leaf://127.0.0.1:7422", "Leaf node URL of the control server's hub"),
    Argument("nats_store_dir", "/tmp/robot_platform/nats", "JetStream storage of the robot's nats-server"),  # noqa: S108 - demo default; robots set their own
    Argument("enable_camera", "false",
             "Camera on: the simulator publishes 640x480 rgb8, frame_publisher streams JPEG on demand"),
    Argument("enable_bridge", "true", "Start nats_bridge (ROS topics <-> NATS subjects)"),
    Argument("bridge_metrics_port", "9102", "Prometheus endpoint of nats_bridge on 127.0.0.1 (0: off)"),
    Argument("enable_ws", "true", "Start ws_agent: the touch panel and rosbridge v2 WebSocket for this robot"),
    Argument("ws_port", "9090", "HTTP/WebSocket port of the robot's ws_agent (touch panel)"),
    Argument("users_file", "", "ws_agent users/roles YAML (config/users.example.yaml); empty: view-only"),
    Argument("enable_health", "true", "Start health_monitor_tree (fault detection, alerts, metrics)"),
    Argument("enable_ops", "true",
             "Start robot_agent: registry presence, logs to NATS, safe remote actions, SSH tunnel"),
    Argument("enable_deploy", "true", "Start deploy_service (signed packages from S3, run, roll back)"),
    Argument("nats_url", "", "URL the nodes use for NATS; empty: the robot's own server at nats_port"),
    Argument("metrics_port", "9101", "Prometheus endpoint of health_monitor_tree on 127.0.0.1 (0: off)"),
)

ROBOT_NODES: tuple[NodeSpec, ...] = (
    NodeSpec("robot_sim", "robot_sim", "use_sim", "Simulated base, battery, lidar, IMU and camera",
             overrides={"robot_id": "robot_id", "enable_camera": "enable_camera"}),
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
             overrides={"robot_id": "robot_id", "nats_url": "nats_url"}),
    NodeSpec("deploy_service", "deploy_service", "enable_deploy",
             "Deployments: ROS services deploy/rollback/list_packages, status on ROS and NATS",
             overrides={"robot_id": "robot_id", "nats_url": "nats_url"}),
)

CONTROL_ARGUMENTS: tuple[Argument, ...] = (
    Argument("start_nats", "true", "Start the NATS hub (JetStream) of the control server"),
    Argument("nats_port", "4222", "Client port of the hub"),
    Argument("nats_monitor_port", "8222", "HTTP monitoring port of the hub"),
    Argument("leaf_port", "7422", "Port robots' nats-servers connect to as leaf nodes"),
    Argument("nats_store_dir", "/tmp/robot_platform/hub", "JetStream storage of the hub"),  # noqa: S108 - demo default
    Argument("nats_url", "", "URL the control nodes use for NATS; empty: the hub at nats_port"),
    Argument("enable_bridge", "true", "Start the control nats_bridge (fleet mirror /fleet/<id>/..., commands)"),
    Argument("fleet_robots", "[r1]", "Robots of the fleet, e.g. [r1,r2,r3] (event streams, commands)"),
    Argument("enable_ws", "true", "Start ws_agent in fleet mode: the operator console"),
    Argument("ws_port", "8080", "HTTP/WebSocket port of the operator console"),
    Argument("users_file", "", "ws_agent users/roles YAML (config/users.example.yaml); empty: view-only"),
    Argument("enable_registry", "true", "Start fleet_registry: KV registry, offline sweep, FLEET_LOGS"),
    Argument("enable_jobs", "true", "Start jobs_service (AWS IoT Jobs over MQTT, staged rollouts)"),
    Argument("jobs_store", "~/.robot_platform/jobs/jobs.sqlite3", "SQLite file of jobs and executions"),
)

CONTROL_NODES: tuple[NodeSpec, ...] = (
    NodeSpec("nats_bridge", "nats_bridge", "enable_bridge",
             "Fleet mirror /fleet/<id>/..., fleet commands, FLEET_EVENTS stream on the hub",
             overrides={"nats_url": "nats_url", "fleet_robots": "fleet_robots"}),
    NodeSpec("ws_agent", "ws_agent", "enable_ws",
             "WebSocket gateway (rosbridge v2) in fleet mode and the operator console",
             overrides={"nats_url": "nats_url", "port": "ws_port", "users_file": "users_file"}),
    NodeSpec("fleet_registry", "fleet_registry", "enable_registry",
             "Fleet registry (KV FLEET_REGISTRY, offline after timeout) and FLEET_LOGS sourcing each robot's logs",
             overrides={"nats_url": "nats_url", "fleet_robots": "fleet_robots"}),
    NodeSpec("jobs_service", "jobs_service", "enable_jobs",
             "Fleet deployments: AWS IoT Jobs server over Mosquitto, staged rollouts, API on NATS jobs.*",
             overrides={"nats_url": "nats_url", "store_path": "jobs_store"}),
)

BOOLEAN_TRUE = ("true", "1", "yes", "on")


def is_true(value: str) -> bool:
    """Launch-style boolean (``true``/``false``) parsing, shared by the launch files and the runner."""
    return value.strip().lower() in BOOLEAN_TRUE


def coerce(value: str) -> bool | int | float | str | list[str]:
    """Turn an argument string into the parameter's type (as ``-p name:=value`` would)."""
    lowered = value.strip().lower()
    if lowered.startswith("[") and lowered.endswith("]"):
        return [item.strip().strip("'\"") for item in value.strip()[1:-1].split(",") if item.strip()]
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def resolve(args: dict[str, str]) -> dict[str, str]:
    """Fill in arguments whose default depends on others (an empty ``nats_url`` means the local server)."""
    out = dict(args)
    if not out.get("nats_url") and "nats_port" in out:
        out["nats_url"] = f"nats://127.0.0.1:{out['nats_port']}"
    return out


def node_overrides(spec: NodeSpec, args: dict[str, str]) -> dict[str, bool | int | float | str | list[str]]:
    """The per-instance parameter overrides of ``spec`` given the argument values."""
    values = resolve(args)
    return {param: coerce(values[arg]) for param, arg in spec.overrides.items()}


def robot_nats_env(args: dict[str, str]) -> dict[str, str]:
    """Environment variables config/nats/robot.conf reads."""
    return {
        "RP_ROBOT_ID": args["robot_id"],
        "RP_NATS_HOST": "127.0.0.1",
        "RP_NATS_PORT": args["nats_port"],
        "RP_NATS_MONITOR_PORT": args["nats_monitor_port"],
        "RP_NATS_HUB_LEAF_URL": args["hub_leaf_url"],
        "RP_NATS_STORE_DIR": str(Path(args["nats_store_dir"]) / args["robot_id"]),
    }


LARGE_DATA_PROFILE = ("config", "fastdds", "large_data.xml")


def robot_ros_env(args: dict[str, str], share: Path) -> dict[str, str]:
    """Environment for every ROS process of a robot: with the camera on, the Fast DDS profile whose
    shared-memory segment holds a raw 640x480 image (the default one loses frames)."""
    if is_true(args["enable_camera"]):
        return {"FASTRTPS_DEFAULT_PROFILES_FILE": str(share.joinpath(*LARGE_DATA_PROFILE))}
    return {}


def control_nats_env(args: dict[str, str]) -> dict[str, str]:
    """Environment variables config/nats/hub.conf reads."""
    return {
        "RP_NATS_HOST": "127.0.0.1",
        "RP_NATS_PORT": args["nats_port"],
        "RP_NATS_MONITOR_PORT": args["nats_monitor_port"],
        "RP_NATS_LEAF_PORT": args["leaf_port"],
        "RP_NATS_STORE_DIR": args["nats_store_dir"],
    }


def defaults(arguments: tuple[Argument, ...]) -> dict[str, str]:
    return {a.name: a.default for a in arguments}
