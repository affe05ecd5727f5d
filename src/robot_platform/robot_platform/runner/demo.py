"""``make demo``: a control server and N simulated robots on one machine, each robot with its own ROS
graph (ROS_DOMAIN_ID) and its own nats-server linked to the control server's hub as a leaf node.

Layout (defaults): hub client port 4222, monitoring 8222, leaf port 7422; robot i (1..N) gets
nats port 4230+i, monitoring 8230+i, Prometheus metrics 9100+i (health) and 9150+i (bridge), the
touch panel on 8090+i, and ROS_DOMAIN_ID 10+i. The operator console is on 8080. Logs go to <state_dir>/logs/.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from robot_platform import launch_plan
from robot_platform.runner.processes import Installation, ProcessSpec, control_processes, robot_processes

DEMO_DOMAIN_BASE = 10
EXPECTED_SIM_TOPICS = {"/odom", "/imu", "/scan", "/battery_state", "/cmd_vel"}


@dataclass(frozen=True)
class DemoLayout:
    robots: int = 3
    hub_port: int = 4222
    hub_monitor_port: int = 8222
    leaf_port: int = 7422
    robot_port_base: int = 4230
    robot_monitor_base: int = 8230
    metrics_base: int = 9100
    bridge_metrics_base: int = 9150
    console_port: int = 8080
    panel_port_base: int = 8090
    domain_base: int = DEMO_DOMAIN_BASE
    state_dir: Path = Path(".state/demo")

    def robot_id(self, i: int) -> str:
        return f"r{i}"

    def domain(self, i: int) -> int:
        return self.domain_base + i


def demo_processes(layout: DemoLayout, install: Installation, enable_camera: bool = False) -> list[ProcessSpec]:
    """Every process of the demo, in start order (hub first)."""
    control = launch_plan.defaults(launch_plan.CONTROL_ARGUMENTS) | {
        "nats_port": str(layout.hub_port),
        "nats_monitor_port": str(layout.hub_monitor_port),
        "leaf_port": str(layout.leaf_port),
        "nats_store_dir": str(layout.state_dir.resolve() / "hub"),
        "jobs_store": str(layout.state_dir.resolve() / "jobs.sqlite3"),
        "ws_port": str(layout.console_port),
        "fleet_robots": "[" + ",".join(layout.robot_id(i) for i in range(1, layout.robots + 1)) + "]",
    }
    out = [ProcessSpec(p.name, p.argv, p.env | {"ROS_DOMAIN_ID": str(layout.domain_base)}, p.server)
           for p in control_processes(control, install)]
    for i in range(1, layout.robots + 1):
        values = launch_plan.defaults(launch_plan.ROBOT_ARGUMENTS) | {
            "robot_id": layout.robot_id(i),
            "nats_port": str(layout.robot_port_base + i),
            "nats_monitor_port": str(layout.robot_monitor_base + i),
            "hub_leaf_url": f"nats-leaf://127.0.0.1:{layout.leaf_port}",
            "nats_store_dir": str(layout.state_dir.resolve() / "robots"),
            "enable_camera": "true" if enable_camera else "false",
            "metrics_port": str(layout.metrics_base + i),
            "bridge_metrics_port": str(layout.bridge_metrics_base + i),
            "ws_port": str(layout.panel_port_base + i),
        }
        out += [ProcessSpec(p.name, p.argv, p.env | {"ROS_DOMAIN_ID": str(layout.domain(i))}, p.server)
                for p in robot_processes(values, install)]
    return out


def leaf_names(monitor_port: int) -> list[str]:
    """Names of the leaf nodes (robots' nats-servers) connected to the hub, from its /leafz."""
    url = f"http://127.0.0.1:{monitor_port}/leafz"
    with urllib.request.urlopen(url, timeout=2) as response:
        data = json.load(response)
    return sorted(leaf.get("name", "?") for leaf in data.get("leafs", []))
