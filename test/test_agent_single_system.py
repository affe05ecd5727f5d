"""The robot agent in one process (agent_layout:=single) does what the split layout does, and stops cleanly.

Real processes from the runner's plan: robot_sim and ``robot_agent_all`` (nats_bridge,
health_monitor_tree, ws_agent, robot_agent, deploy_service in one rclpy process) against a real
nats-server (JetStream), in the test's own ROS domain with discovery on this host. Observed as a user
would: telemetry, health snapshots and presence on NATS (every node's, on one NATS connection), the touch
panel's /healthz, both metrics endpoints (each node got its own port: per-node parameters work in one
process); then one SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import nats

from helpers import free_port, ros_env, wait_for
from robot_platform.launcher import plan
from robot_platform.launcher.processes import Installation, robot_processes
from robot_platform.launcher.supervisor import ProcessGroup

WAIT_S = 60.0
STOP_WITHIN_S = 10.0
AGENT_NODES = ("nats_bridge", "health_monitor_tree", "ws_agent", "robot_agent", "deploy_service")


def _connections(monitor_url: str) -> list[str]:
    with urllib.request.urlopen(f"{monitor_url}/connz", timeout=2) as response:
        return [c.get("name", "") for c in json.load(response)["connections"]]


def _http(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.read().decode()


async def _first_messages(url: str, subjects: list[str], timeout: float) -> dict[str, Any]:
    """The first message on each subject (headers and size), within ``timeout`` s."""
    nc = await nats.connect(url)
    got: dict[str, Any] = {}
    done = asyncio.Event()

    async def on_message(msg: Any) -> None:
        for subject in subjects:
            if subject not in got and msg.subject == subject:
                got[subject] = (dict(msg.headers or {}), len(msg.data))
        if len(got) == len(subjects):
            done.set()

    try:
        for subject in subjects:
            await nc.subscribe(subject, cb=on_message)
        await asyncio.wait_for(done.wait(), timeout)
    except TimeoutError:
        pass
    finally:
        await nc.close()
    return got


def test_single_layout_runs_every_agent_node_in_one_process(procs: ProcessGroup, ros_domain: int, nats_server: Any,
                                                             tmp_path: Path) -> None:  # fmt: skip
    ports = {name: free_port() for name in ("ws", "metrics", "bridge")}
    values = plan.defaults(plan.ROBOT_ARGUMENTS) | {
        "robot_id": "r1", "agent_layout": "single", "start_nats": "false", "nats_url": nats_server.url,
        "ws_port": str(ports["ws"]), "metrics_port": str(ports["metrics"]),
        "bridge_metrics_port": str(ports["bridge"]),
    }  # fmt: skip
    specs = robot_processes(values, Installation.find())
    assert [s.name for s in specs] == ["r1/robot_sim", "r1/agent"]
    for spec in specs:
        procs.start(spec.name, spec.argv, env=ros_env(ros_domain, spec.env | {"HOME": str(tmp_path)}))
    agent = next(c for c in procs.children if c.name == "r1/agent")

    # the agent's nodes share one NATS connection (messaging/connection.py)
    wait_for(lambda: _connections(nats_server.monitor_url), WAIT_S, "the agent connected to NATS")
    assert not procs.exited(), [(c.name, c.output()[-2000:]) for c in procs.exited()]

    # what a user relies on: telemetry via the bridge, health snapshots, presence, deployments' summary
    wanted = ["robots.r1.ros.odom", "robots.r1.health", "robots.r1.presence", "robots.r1.deploy.installed"]
    got = asyncio.run(_first_messages(nats_server.url, wanted, WAIT_S))
    assert set(got) == set(wanted), f"missing {set(wanted) - set(got)}\n{agent.output()[-3000:]}"
    assert got["robots.r1.ros.odom"][0].get("Ros-Type") == "nav_msgs/msg/Odometry"
    # every node publishes (above), all of them on the one connection the process holds
    wait_for(lambda: _connections(nats_server.monitor_url) == ["robot_agent_all.r1"], 10,
             f"one connection for the agent's nodes: {_connections(nats_server.monitor_url)}")  # fmt: skip
    # the touch panel's agent answers, and each node got its own port (per-node parameters in one process)
    health = json.loads(_http(f"http://127.0.0.1:{ports['ws']}/healthz"))
    assert health["mode"] == "robot" and health["nats_connected"] is True
    assert "robot_health_check_state" in _http(f"http://127.0.0.1:{ports['metrics']}/metrics")
    assert "out_messages" in _http(f"http://127.0.0.1:{ports['bridge']}/metrics")
    assert f"{len(AGENT_NODES)} nodes in one process" in agent.output()

    started = time.monotonic()
    for child in procs.children:  # one SIGINT to all, as the terminal does
        if child.popen.poll() is None:
            child.popen.send_signal(signal.SIGINT)
    for child in procs.children:
        child.popen.wait(timeout=STOP_WITHIN_S + 5)
    took = time.monotonic() - started
    report = {c.name: (c.popen.returncode, c.output()[-3000:]) for c in procs.children
              if c.name.startswith("r1/") and (c.popen.returncode != 0 or "Traceback" in c.output())}  # fmt: skip
    assert not report, "\n".join(f"== {name} exit {code}\n{out}" for name, (code, out) in report.items())
    assert took < STOP_WITHIN_S, f"stopping took {took:.1f} s"
