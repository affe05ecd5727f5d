"""A normal stop prints no traceback, even when NATS goes away together with the nodes.

Ctrl-C on a terminal (and a non-interactive ``ros2 launch``) signals every process at once, so the
nodes must stop quietly whether their NATS server is still there or already gone. The robot's and the
control server's full node sets run from the shared plan (the runner's processes), all on one host
with the documented port overrides; then every process, servers included, gets SIGINT at the same
time. The robot's id is "7": it must stay a string for every node and for nats-server's config.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import free_port, ros_env, wait_for
from robot_platform.launcher import plan
from robot_platform.launcher.processes import Installation, control_processes, robot_processes
from robot_platform.launcher.supervisor import ProcessGroup

STOP_WITHIN_S = 8.0


def _missing_clients(monitor_port: int, nodes: set[str]) -> set[str]:
    """Nodes with no connection on the server yet (each names its connection after itself)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/connz", timeout=1) as response:
        names = [c.get("name", "") for c in json.load(response)["connections"]]
    return {n for n in nodes if not any(name.startswith(n.split("_")[0]) for name in names)}


@pytest.mark.parametrize("layout", [plan.SPLIT, plan.SINGLE])
def test_everything_stops_without_tracebacks_on_one_sigint(procs: ProcessGroup, ros_domain: int,
                                                            tmp_path: Path, layout: str) -> None:  # fmt: skip
    install = Installation.find()
    hub, hub_monitor, leaf, robot_nats, robot_monitor = (free_port() for _ in range(5))
    control = plan.defaults(plan.CONTROL_ARGUMENTS) | {
        "nats_port": str(hub), "nats_monitor_port": str(hub_monitor), "leaf_port": str(leaf),
        "nats_store_dir": str(tmp_path / "hub"), "jobs_store": str(tmp_path / "jobs.sqlite3"),
        "ws_port": str(free_port()), "bridge_metrics_port": str(free_port()), "jobs_metrics_port": str(free_port()),
    }  # fmt: skip
    robot = plan.defaults(plan.ROBOT_ARGUMENTS) | {
        "robot_id": "7",  # a numeric id stays a string for every node and for nats-server's config
        "nats_port": str(robot_nats), "nats_monitor_port": str(robot_monitor),
        "hub_leaf_url": f"nats-leaf://127.0.0.1:{leaf}", "nats_store_dir": str(tmp_path / "robots"),
        "ws_port": str(free_port()), "metrics_port": str(free_port()), "bridge_metrics_port": str(free_port()),
        "agent_layout": layout,
    }  # fmt: skip
    specs = control_processes(control, install) + robot_processes(robot, install)
    for spec in specs:
        procs.start(spec.name, spec.argv, env=ros_env(ros_domain, spec.env | {"HOME": str(tmp_path)}))
    nodes = {s.name for s in specs if not s.server}
    control_nodes = {n.split("/")[1] for n in nodes if n.startswith("control/")}
    robot_nodes = {n.split("/")[1] for n in nodes if n.startswith("7/")} - {"robot_sim"}  # no NATS client
    agent = next((c for c in procs.children if c.name == "7/agent"), None)
    if agent is not None:  # the single layout: every agent node in one process, on one shared NATS client
        robot_nodes = {plan.AGENT_EXECUTABLE}  # the connection's name: robot_agent_all.7
        wait_for(lambda: "nodes in one process" in agent.output(), 60, "every node of the agent built")
    # every node is up: connected to its NATS server (a SIGINT during start-up is another matter)
    wait_for(lambda: not _missing_clients(hub_monitor, control_nodes), 60, "the control nodes on the hub")
    wait_for(lambda: not _missing_clients(robot_monitor, robot_nodes), 60, "the robot's nodes on its server")
    assert not procs.exited(), [(c.name, c.output()[-2000:]) for c in procs.exited()]

    started = time.monotonic()
    for child in procs.children:  # one SIGINT to all, as the terminal does
        child.popen.send_signal(signal.SIGINT)
    for child in procs.children:
        child.popen.wait(timeout=STOP_WITHIN_S + 5)
    took = time.monotonic() - started
    report = {c.name: (c.popen.returncode, c.output()[-3000:]) for c in procs.children
              if c.popen.returncode != 0 or "Traceback" in c.output()}  # fmt: skip
    assert not report, "\n".join(f"== {name} exit {code}\n{out}" for name, (code, out) in report.items())
    assert took < STOP_WITHIN_S, f"stopping took {took:.1f} s"
