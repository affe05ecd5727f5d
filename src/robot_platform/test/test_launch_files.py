"""launch/robot.launch.py and control.launch.py declare what the runner offers, from the same plan.

launch and launch_ros have no wheels here, so the two launch files are loaded against recording
stand-ins of the launch API (pure logic: which actions they declare, with which arguments); the
processes those declarations describe are tested through the shared plan (test_launch_arguments.py,
test_runner.py) and the runner's system tests.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from robot_platform.cli.main import build_parser
from robot_platform.launcher import plan

REPO = Path(__file__).resolve().parents[3]
RUNNER_ONLY = {"command", "verbose", "func"}


class Recorded:
    """Stand-in for any launch class: keeps its positional and keyword arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs


def _launch_api() -> dict[str, types.ModuleType]:
    names = {
        "launch": ["LaunchDescription"],
        "launch.actions": [
            "DeclareLaunchArgument",
            "EmitEvent",
            "ExecuteProcess",
            "RegisterEventHandler",
            "SetEnvironmentVariable",
        ],
        "launch.conditions": ["IfCondition", "UnlessCondition"],
        "launch.event_handlers": ["OnProcessExit"],
        "launch.events": ["Shutdown"],
        "launch.substitutions": [
            "EnvironmentVariable",
            "LaunchConfiguration",
            "PathJoinSubstitution",
            "PythonExpression",
        ],
        "launch_ros": [],
        "launch_ros.actions": ["Node"],
        "launch_ros.parameter_descriptions": ["ParameterValue"],
        "launch_ros.substitutions": ["FindPackagePrefix", "FindPackageShare"],
    }
    modules = {}
    for module, classes in names.items():
        mod = types.ModuleType(module)
        for cls in classes:
            setattr(mod, cls, type(cls, (Recorded,), {}))
        modules[module] = mod
    return modules


def _describe(monkeypatch: pytest.MonkeyPatch, launch_file: str) -> list[Recorded]:
    for name, module in _launch_api().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "robot_platform.launcher.launch_support", raising=False)
    spec = importlib.util.spec_from_file_location("launch_under_test", REPO / "launch" / launch_file)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    monkeypatch.delitem(sys.modules, "robot_platform.launcher.launch_support", raising=False)
    return list(description.args[0])


def _of(actions: list[Recorded], kind: str) -> list[Recorded]:
    return [a for a in actions if type(a).__name__ == kind]


def _config_name(value: Recorded) -> str:
    assert type(value).__name__ == "LaunchConfiguration", value
    return str(value.args[0])


def _render(parts: object, values: dict[str, str]) -> str:
    """A substitution (or list of them) as launch would render it, for the stand-ins used here."""
    if isinstance(parts, str):
        return parts
    if isinstance(parts, list | tuple):
        return "".join(_render(p, values) for p in parts)
    kind = type(parts).__name__
    if kind == "LaunchConfiguration":
        return values[_config_name(parts)]  # type: ignore[arg-type]
    if kind == "PythonExpression":
        return str(eval(_render(parts.args[0], values)))  # type: ignore[attr-defined]  # launch evaluates it the same way
    raise AssertionError(f"cannot render {kind}")


def _condition(node: Recorded, values: dict[str, str]) -> bool:
    return _render(node.kwargs["condition"].args[0], values).strip().lower() in plan.BOOLEAN_TRUE


@pytest.mark.parametrize(
    ("launch_file", "command", "arguments", "nodes"),
    [
        ("robot.launch.py", "robot", plan.ROBOT_ARGUMENTS, plan.ROBOT_NODES),
        ("control.launch.py", "control", plan.CONTROL_ARGUMENTS, plan.CONTROL_NODES),
    ],
)
def test_launch_arguments_equal_the_runner_flags(
    monkeypatch: pytest.MonkeyPatch,
    launch_file: str,
    command: str,
    arguments: tuple[plan.Argument, ...],
    nodes: tuple[plan.NodeSpec, ...],
) -> None:
    actions = _describe(monkeypatch, launch_file)
    declared = {a.args[0]: a.kwargs["default_value"] for a in _of(actions, "DeclareLaunchArgument")}
    required = {a.name for a in arguments if a.default is None}  # robot_id: no default on either side
    given = [arg for name in sorted(required) for arg in (f"--{name.replace('_', '-')}", "x")]
    runner = {k: v for k, v in vars(build_parser().parse_args([command, *given])).items() if k not in RUNNER_ONLY}
    assert set(declared) == set(runner)
    assert all(declared[name] is None for name in required)
    assert all(declared[name] == runner[name] for name in runner if name not in required | {"params_file"})
    # nav2_bringup's per-node arguments are there
    assert {"namespace", "params_file", "log_level", "use_respawn"} <= set(declared)
    # every port a node or server opens is an argument
    assert {a.name for a in arguments if a.name.endswith("port")} <= set(declared)

    # One Node per plan entry, each switched by its enable_* argument (and, for a robot's agent nodes,
    # the split layout), with typed overrides.
    launched = {n.kwargs["name"]: n for n in _of(actions, "Node") if "name" in n.kwargs}
    assert set(launched) == {spec.name for spec in nodes}
    kinds = plan.argument_kinds(arguments)
    layouts = "agent_layout" in kinds
    for spec in nodes:
        node = launched[spec.name]
        if layouts and spec.agent:
            values = plan.defaults(arguments)
            assert _condition(node, values | {spec.enabled_by: "true", "agent_layout": "split"})
            assert not _condition(node, values | {spec.enabled_by: "false", "agent_layout": "split"})
            assert not _condition(node, values | {spec.enabled_by: "true", "agent_layout": "single"})
        else:
            assert _config_name(node.kwargs["condition"].args[0]) == spec.enabled_by
        assert _config_name(node.kwargs["namespace"]) == "namespace"
        assert _config_name(node.kwargs["respawn"]) == "use_respawn"
        params_file, overrides = node.kwargs["parameters"]
        assert _config_name(params_file) == "params_file"
        assert set(overrides) == set(spec.overrides)
        for param, arg in spec.overrides.items():
            value = overrides[param]
            expected_type = {"string": str, "bool": bool, "integer": int, "string_array": list[str]}[kinds[arg]]
            assert value.kwargs["value_type"] == expected_type, (spec.name, param)
    # every node and the server stop the launch when they exit (unless respawning)
    handlers = _of(actions, "RegisterEventHandler")
    assert len(handlers) == len(nodes) + 1 + (1 if layouts else 0)
    assert all(_config_name(h.kwargs["condition"].args[0]) == "use_respawn" for h in handlers)


def test_robot_id_is_a_string_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    actions = _describe(monkeypatch, "robot.launch.py")
    for node in _of(actions, "Node"):
        if "name" not in node.kwargs:
            continue  # the single layout's agent: its overrides are arguments (test below)
        overrides = node.kwargs["parameters"][1]
        if "robot_id" in overrides:
            assert overrides["robot_id"].kwargs["value_type"] is str


def test_the_server_stops_after_its_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """The NATS server runs under server_last with its monitoring port (to see its clients leave)."""
    for launch_file in ("robot.launch.py", "control.launch.py"):
        (server,) = _of(_describe(monkeypatch, launch_file), "ExecuteProcess")
        cmd = server.kwargs["cmd"]
        assert cmd[0].args[0][-1] == "server_last"
        assert _config_name(cmd[cmd.index("--monitor-port") + 1]) == "nats_monitor_port"
        assert cmd[cmd.index("--") + 1] == "nats-server"


def test_the_single_layout_is_one_agent_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """agent_layout:=single: one robot_agent_all Node (no name: a __node remap would rename every node of
    it), given the launch arguments it reads; robot_sim stays its own Node."""
    actions = _describe(monkeypatch, "robot.launch.py")
    (agent,) = [n for n in _of(actions, "Node") if "name" not in n.kwargs]
    assert agent.kwargs["executable"] == plan.AGENT_EXECUTABLE
    assert [_config_name(p) for p in agent.kwargs["parameters"]] == ["params_file"]
    assert _config_name(agent.kwargs["namespace"]) == "namespace"
    values = plan.defaults(plan.ROBOT_ARGUMENTS) | {"robot_id": "7", "users_file": ""}
    words = [_render(a, values) for a in agent.kwargs["arguments"]]
    own = words[: words.index("--ros-args")]
    assert own == plan.agent_argv(values)
    assert plan.agent_values(own)["robot_id"] == "7"
    assert _condition(agent, values | {"agent_layout": "single"})
    assert not _condition(agent, values | {"agent_layout": "split"})
    off = {spec.enabled_by: "false" for spec in plan.ROBOT_NODES if spec.agent}
    assert not _condition(agent, values | off | {"agent_layout": "single"})  # nothing to run: no process
    sim = next(n for n in _of(actions, "Node") if n.kwargs.get("name") == "robot_sim")
    assert _config_name(sim.kwargs["condition"].args[0]) == "use_sim"
