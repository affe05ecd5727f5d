"""agent_layout:=single: the plan's one agent process, its parameters per node, and its failure rules.

The command lines are checked as data; the parameters go through rcl's own parser (a namespace included,
where rcl's ``-p node:name:=value`` would match nothing); the stop and failure rules run real rclpy
nodes in a child process, as common/node_main.py's tests do.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from robot_platform.exceptions import ConfigError
from robot_platform.launcher import plan
from robot_platform.launcher.domains import DomainReservation
from robot_platform.launcher.processes import Installation, node_names, robot_processes, with_node_params

PKG = Path(__file__).resolve().parents[1]
INSTALL = Installation(share=Path("/opt/rp/share/robot_platform"), lib=Path("/opt/rp/lib/robot_platform"))
SINGLE = plan.defaults(plan.ROBOT_ARGUMENTS) | {"agent_layout": "single", "robot_id": "r1"}


def _specs(values: dict[str, str]) -> dict[str, list[str]]:
    return {s.name: s.argv for s in robot_processes(values, INSTALL)}


def test_single_layout_is_the_simulator_and_one_agent_process() -> None:
    specs = _specs(SINGLE | {"namespace": "site_a", "use_respawn": "true"})
    assert set(specs) == {"r1/nats-server", "r1/robot_sim", "r1/agent"}
    argv = specs["r1/agent"]
    assert argv[0] == "/opt/rp/lib/robot_platform/robot_agent_all"
    own, ros = argv[1 : argv.index("--ros-args")], argv[argv.index("--ros-args") :]
    assert plan.agent_values(own) == plan.agent_values(plan.agent_argv(SINGLE))
    assert not any(word.startswith("__node:=") for word in ros)  # it would rename every node
    assert "__ns:=/site_a" in ros and "--params-file" in ros
    assert not any(":=" in word for word in own)  # rcl would take name:=value for a remapping rule
    assert next(s for s in robot_processes(SINGLE | {"use_respawn": "true"}, INSTALL) if s.name == "r1/agent").respawn
    # split is unchanged: a process per node; single is the default
    assert {"r1/nats_bridge", "r1/health_monitor_tree", "r1/robot_agent"} <= set(_specs(SINGLE | {"agent_layout":
                                                                                                    "split"}))
    assert "r1/agent" in _specs(plan.defaults(plan.ROBOT_ARGUMENTS) | {"robot_id": "r1"})


def test_per_node_values_reach_only_their_node_in_either_layout() -> None:
    """The demo's per-robot values (deploy_service's MQTT and S3, health's state_dir) must not leak into
    another node of the agent process (health_monitor_tree also has ``mqtt_host``)."""
    values = {"mqtt_host": "127.0.0.1"}
    for spec in robot_processes(SINGLE, INSTALL):
        out = with_node_params(spec, "deploy_service", values)
        if spec.name == "r1/agent":
            assert out.argv[-2:] == ["-p", "deploy_service:mqtt_host:=127.0.0.1"]
            assert node_names(out.name, out.argv) == {s.name for s in plan.enabled_agent_nodes(SINGLE)}
        else:
            assert out == spec and node_names(out.name, out.argv) == {spec.name.split("/")[1]}
    split = {s.name: s for s in robot_processes(SINGLE | {"agent_layout": "split"}, INSTALL)}
    assert with_node_params(split["r1/deploy_service"], "deploy_service", values).argv[-2:] == [
        "-p", "mqtt_host:=127.0.0.1"]  # fmt: skip
    health = split["r1/health_monitor_tree"]
    assert with_node_params(health, "deploy_service", values) == health
    namespaced = next(s for s in robot_processes(SINGLE | {"namespace": "a"}, INSTALL) if s.name == "r1/agent")
    with pytest.raises(ConfigError, match="namespace"):
        with_node_params(namespaced, "deploy_service", values)


def test_switched_off_nodes_are_not_in_the_agent() -> None:
    values = SINGLE | {"enable_ws": "false", "enable_deploy": "false", "enable_camera": "true"}
    names = [s.name for s in plan.enabled_agent_nodes(values)]
    assert names == ["nats_bridge", "health_monitor_tree", "frame_publisher", "robot_agent"]
    off = {s.enabled_by: "false" for s in plan.ROBOT_NODES if s.agent}
    assert "r1/agent" not in _specs(SINGLE | off)  # nothing to run: no process


@pytest.mark.parametrize("bad", [{"agent_layout": "both"}, {"agent_layout": ""}])
def test_unknown_layouts_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="agent_layout"):
        robot_processes(SINGLE | bad, INSTALL)


@pytest.mark.parametrize("word", ["robot_id:=r1", "--robot-id", "--hub-leaf-url=x", "--nope=1"])
def test_the_agent_refuses_words_it_does_not_know(word: str) -> None:
    with pytest.raises(ConfigError):
        plan.agent_values([word])


def test_each_node_gets_its_own_overrides() -> None:
    document = plan.agent_parameters(SINGLE | {"robot_id": "7", "metrics_port": "19101",
                                                      "bridge_metrics_port": "19102", "ws_port": "19090"})  # fmt: skip
    assert set(document) == {"/**/nats_bridge", "/**/health_monitor_tree", "/**/ws_agent", "/**/robot_agent",
                             "/**/deploy_service"}  # fmt: skip
    params = {key.split("/")[-1]: value["ros__parameters"] for key, value in document.items()}
    assert params["nats_bridge"]["metrics_port"] == 19102
    assert params["health_monitor_tree"]["metrics_port"] == 19101
    assert params["ws_agent"]["port"] == 19090 and params["ws_agent"]["users_file"] == ""
    assert all(p["robot_id"] == "7" and p["nats_url"] == "nats://127.0.0.1:4222" for p in params.values())


def test_rcl_gives_each_node_its_overrides_in_a_namespace(ros_domain: int, tmp_path: Path) -> None:
    """The generated file after the shared one: per node, typed, in a namespace, whatever the YAML says."""
    import rclpy
    from rclpy.context import Context

    from robot_platform.agent.one_process import overrides_file

    shared = tmp_path / "robot.yaml"
    shared.write_text("/**/nats_bridge:\n  ros__parameters:\n    metrics_port: 1\n    mode: robot\n")
    document = plan.agent_parameters(SINGLE | {"robot_id": "7", "bridge_metrics_port": "19102"})
    context = Context()
    with overrides_file(document) as path:
        rclpy.init(context=context, args=["robot_agent_all", "--ros-args", "-r", "__ns:=/site_a",
                                          "--params-file", str(shared), "--params-file", str(path)])  # fmt: skip
    assert not path.exists()  # rcl has read it; nothing left behind
    try:
        got = {}
        for name in ("nats_bridge", "health_monitor_tree"):
            node = rclpy.create_node(name, context=context, start_parameter_services=False, enable_rosout=False,
                                     automatically_declare_parameters_from_overrides=True)  # fmt: skip
            got[name] = {k: p.value for k, p in node.get_parameters_by_prefix("").items()}
            assert node.get_fully_qualified_name() == f"/site_a/{name}"
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    assert got["nats_bridge"]["metrics_port"] == 19102 and got["nats_bridge"]["mode"] == "robot"
    assert got["health_monitor_tree"]["metrics_port"] == 9101 and got["health_monitor_tree"]["robot_id"] == "7"


def test_the_agent_builds_every_agent_node_of_the_plan_from_its_class() -> None:
    """NODE_CLASSES names the same classes as the split layout's entry points (setup.py)."""
    from robot_platform.agent.one_process import NODE_CLASSES

    assert set(NODE_CLASSES) == {s.name for s in plan.ROBOT_NODES if s.agent}
    setup = ast.parse((PKG / "setup.py").read_text())
    scripts = next(ast.literal_eval(k.value)["console_scripts"] for node in ast.walk(setup)
                   if isinstance(node, ast.Call) for k in node.keywords if k.arg == "entry_points")  # fmt: skip
    modules = dict(line.replace(" ", "").split("=") for line in scripts)
    assert modules[plan.AGENT_EXECUTABLE] == "robot_platform.agent.one_process:main"
    for spec in plan.ROBOT_NODES:
        if spec.agent:
            assert modules[spec.executable].split(":")[0] == NODE_CLASSES[spec.name].split(":")[0]


AGENT = textwrap.dedent("""
    import os, signal, sys
    import rclpy
    from rclpy.node import Node
    from robot_platform.agent.one_process import spin_nodes
    from robot_platform.exceptions import ConfigError

    MODE = sys.argv[1]

    class Probe(Node):
        def __init__(self, name, fails=False):
            super().__init__(name)
            self.ticks = 0
            if MODE == "config" and fails:
                raise ConfigError("rate_hz", -1, "must be > 0")
            if MODE == "early" and name == "probe_c":  # Ctrl-C while the agent is still starting
                os.kill(os.getpid(), signal.SIGINT)
            self.fails = fails
            self.create_timer(0.05, self.tick)

        def tick(self):
            self.ticks += 1
            if self.ticks == 5 and self.fails and MODE == "crash":
                raise ZeroDivisionError("boom")
            if self.ticks == 5 and self.fails and MODE in ("SIGTERM", "SIGINT"):
                os.kill(os.getpid(), getattr(signal, MODE))

        def close(self):
            print(f"closed {self.get_name()} after {self.ticks} ticks", flush=True)

    rclpy.init()
    if MODE == "unstarted":  # a SIGINT between building the executors and starting their threads
        import threading
        from robot_platform.agent.one_process import NodeThread, make_executor
        node = Probe("probe_a")
        NodeThread("probe_a", node, make_executor(node), threading.Event()).stop(node.get_logger())
        print("stopped before it started", flush=True)
        sys.exit(0)
    sys.exit(spin_nodes([("probe_a", lambda: Probe("probe_a")), ("probe_b", lambda: Probe("probe_b", True)),
                         ("probe_c", lambda: Probe("probe_c"))]))
""")


def run(mode: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    block = DomainReservation(count=1)
    try:
        env = os.environ | {"PYTHONPATH": str(PKG) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": str(block.domain_id)}
        return subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=30,
                              env=env)  # fmt: skip
    finally:
        block.release()


def test_an_exception_in_one_node_stops_every_node_and_names_it(tmp_path: Path) -> None:
    """Not silently: exit 1 (the launcher stops the robot, or restarts the agent with use_respawn), one
    error naming the node and its traceback, and every other node still closed."""
    result = run("crash", tmp_path)
    assert result.returncode == 1, result.stderr
    assert "probe_b failed: ZeroDivisionError: boom; stopped every node" in result.stderr
    assert "Traceback" in result.stderr and "in tick" in result.stderr
    assert {line.split(" after")[0] for line in result.stdout.splitlines()} == {
        "closed probe_a", "closed probe_b", "closed probe_c"}  # fmt: skip
    assert result.stdout.index("closed probe_c") < result.stdout.index("closed probe_a")  # reverse order


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_every_node_cleanly(tmp_path: Path, signal_name: str) -> None:
    result = run(signal_name, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.count("closed probe_") == 3, result.stdout


def test_a_node_that_cannot_start_is_named_and_the_others_closed(tmp_path: Path) -> None:
    result = run("config", tmp_path)
    assert result.returncode == 2, result.stderr
    assert "probe_b cannot start: " in result.stderr and "Traceback" not in result.stderr
    assert "closed probe_a" in result.stdout


def test_each_node_keeps_the_executor_its_own_main_gives_it() -> None:
    """deploy_service waits in callbacks (invoke): its threads; every other node one thread."""
    import importlib

    from robot_platform.agent.one_process import NODE_CLASSES

    threads = {name: getattr(importlib.import_module(path.split(":")[0]), "EXECUTOR_THREADS", 0)
               for name, path in NODE_CLASSES.items()}  # fmt: skip
    assert threads == {name: (4 if name == "deploy_service" else 0) for name in NODE_CLASSES}


def test_a_sigint_while_starting_stops_what_was_built(tmp_path: Path) -> None:
    result = run("early", tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "closed probe_a" in result.stdout and "closed probe_b" in result.stdout, result.stdout


def test_a_node_thread_stops_before_it_started(tmp_path: Path) -> None:
    result = run("unstarted", tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "stopped before it started" in result.stdout
