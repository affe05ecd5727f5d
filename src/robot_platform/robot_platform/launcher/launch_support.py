"""launch / launch_ros actions built from :mod:`robot_platform.launcher.plan`, for the two launch files.

Only ``launch/robot.launch.py`` and ``launch/control.launch.py`` import this module (ROS 2 from apt has
launch and launch_ros; the pip wheels do not, and nothing else in the package needs them). Everything is
declared at description time from the plan, with values left as substitutions, following nav2_bringup:
``namespace``, ``params_file``, ``log_level`` and ``use_respawn`` on every node, each parameter override
typed with ``ParameterValue(..., value_type=...)`` so ``robot_id:=7`` stays a string.

With ``agent_layout:=single`` (robot launch) the agent nodes are one Node action instead, the
``robot_agent_all`` process (robot_platform/agent/one_process.py), given the launch arguments it reads
as ``--name=value`` and no ``name`` (a ``__node`` remap would rename each of its nodes).

Without ``use_respawn``, a node or server that exits on its own ends the launch (a robot missing a node,
say because its metrics port was taken, must not look up); with it, nodes restart after
``RESPAWN_DELAY_S``. The NATS server runs under :mod:`robot_platform.launcher.server_last`, so it stops
after its clients have left instead of together with them.
"""

from __future__ import annotations

from typing import Any

from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, RegisterEventHandler
from launch.conditions import IfCondition, UnlessCondition
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackagePrefix

from robot_platform.launcher import plan, server_last

PACKAGE = "robot_platform"
VALUE_TYPES: dict[str, Any] = {
    plan.STRING: str,
    plan.BOOL: bool,
    plan.INTEGER: int,
    plan.STRING_ARRAY: list[str],
}
SERVER_SIGTERM_TIMEOUT_S = server_last.CLIENTS_GONE_WAIT_S + server_last.SERVER_STOP_WAIT_S + 1.0


def declared_arguments(arguments: tuple[plan.Argument, ...], params_file: Any) -> list[DeclareLaunchArgument]:
    """One DeclareLaunchArgument per plan argument; ``params_file`` defaults to the installed YAML."""
    return [
        DeclareLaunchArgument(
            a.name, default_value=params_file if a.name == "params_file" else a.default, description=a.description
        )
        for a in arguments
    ]


def argument_value(name: str, kind: str = plan.STRING) -> Any:
    """The substitution for an argument; an empty ``nats_url`` means the local server at ``nats_port``
    (plan.resolve does the same for the runner). A string list is re-written with every item
    quoted: launch would read ``fleet_robots:=[7]`` as a list of integers and refuse it as List[str]."""
    if kind == plan.STRING_ARRAY:
        return PythonExpression([
            "str([i.strip().strip(chr(34) + chr(39)) for i in '", LaunchConfiguration(name),
            "'.strip().strip('[]').split(',') if i.strip()])",
        ])  # fmt: skip
    if name == "nats_url":
        return PythonExpression(
            [
                "'",
                LaunchConfiguration("nats_url"),
                "' or 'nats://",
                plan.NATS_HOST,
                ":",
                LaunchConfiguration("nats_port"),
                "'",
            ]
        )
    return LaunchConfiguration(name)


def _stop_launch_when_it_exits(action: Any, what: str) -> RegisterEventHandler:
    reason = f"{what} exited: stopping (use_respawn:=true restarts nodes instead)"
    return RegisterEventHandler(
        OnProcessExit(target_action=action, on_exit=[EmitEvent(event=Shutdown(reason=reason))]),
        condition=UnlessCondition(LaunchConfiguration("use_respawn")),
    )


def _is_true(name: str) -> list[Any]:
    """Python text of a launch-style boolean argument's truth (plan.is_true)."""
    return ["('", LaunchConfiguration(name), f"'.strip().lower() in {plan.BOOLEAN_TRUE})"]


def _single_layout(yes: bool) -> list[Any]:
    test = "==" if yes else "!="
    return ["('", LaunchConfiguration("agent_layout"), f"'.strip().lower() {test} '{plan.SINGLE}')"]


def _node_condition(spec: plan.NodeSpec, layouts: bool) -> IfCondition:
    """Its ``enable_*`` argument; an agent node of a robot also needs the split layout."""
    if not (layouts and spec.agent):
        return IfCondition(LaunchConfiguration(spec.enabled_by))
    return IfCondition(PythonExpression([*_is_true(spec.enabled_by), " and ", *_single_layout(False)]))


def agent_process(specs: tuple[plan.NodeSpec, ...]) -> list[Any]:
    """``agent_layout:=single``: the agent nodes in one process (if any of them is switched on)."""
    enabled: list[Any] = []
    for spec in specs:
        if spec.agent:
            enabled += [*_is_true(spec.enabled_by), " or "]
    condition = PythonExpression([*_single_layout(True), " and (", *enabled[:-1], ")"])
    options = [[plan.agent_option(n), LaunchConfiguration(n)] for n in plan.agent_argument_names()]
    node = Node(
        package=PACKAGE,
        executable=plan.AGENT_EXECUTABLE,
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file")],
        arguments=[*options, "--ros-args", "--log-level", LaunchConfiguration("log_level")],
        respawn=LaunchConfiguration("use_respawn"),
        respawn_delay=plan.RESPAWN_DELAY_S,
        output="screen",
        emulate_tty=True,
        condition=IfCondition(condition),
    )
    return [node, _stop_launch_when_it_exits(node, plan.AGENT_EXECUTABLE)]


def platform_nodes(specs: tuple[plan.NodeSpec, ...], arguments: tuple[plan.Argument, ...]) -> list[Any]:
    """A Node per plan entry (switched on by its ``enable_*`` argument) and its exit handler; where the
    arguments have ``agent_layout`` (a robot), also the single layout's agent process."""
    kinds = plan.argument_kinds(arguments)
    layouts = "agent_layout" in kinds
    actions: list[Any] = []
    for spec in specs:
        overrides = {param: ParameterValue(argument_value(arg, kinds[arg]), value_type=VALUE_TYPES[kinds[arg]])
                     for param, arg in spec.overrides.items()}  # fmt: skip
        node = Node(
            package=PACKAGE,
            executable=spec.executable,
            name=spec.name,
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), overrides],
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
            respawn=LaunchConfiguration("use_respawn"),
            respawn_delay=plan.RESPAWN_DELAY_S,
            output="screen",
            emulate_tty=True,
            condition=_node_condition(spec, layouts),
        )
        actions += [node, _stop_launch_when_it_exits(node, spec.name)]
    if layouts:
        actions += agent_process(specs)
    return actions


def nats_server(name: str, conf: Any, env_table: dict[str, tuple[str, ...]]) -> list[Any]:
    """The NATS server (under server_last) with the environment its config reads, and its exit handler."""
    env: dict[str, Any] = {"RP_NATS_HOST": plan.NATS_HOST}
    for var, names in env_table.items():
        if len(names) > 1:
            env[var] = PathJoinSubstitution([LaunchConfiguration(n) for n in names])
        elif var in plan.QUOTED_NATS_VARS:
            env[var] = ['"', LaunchConfiguration(names[0]), '"']
        else:
            env[var] = LaunchConfiguration(names[0])
    wrapper = PathJoinSubstitution([FindPackagePrefix(PACKAGE), "lib", PACKAGE, "server_last"])
    server = ExecuteProcess(
        cmd=[wrapper, "--monitor-port", LaunchConfiguration("nats_monitor_port"), "--", "nats-server", "-c", conf],
        additional_env=env,
        name=name,
        output="screen",
        sigterm_timeout=str(SERVER_SIGTERM_TIMEOUT_S),
        condition=IfCondition(LaunchConfiguration("start_nats")),
    )
    return [server, _stop_launch_when_it_exits(server, name)]
