"""The demo's self-check and banner: is every robot's graph up, is every robot's NATS linked?"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from robot_platform.demo.fleet import EXPECTED_SIM_TOPICS, DemoLayout, leaf_names
from robot_platform.launcher.graph import graph_in_domain
from robot_platform.launcher.processes import node_names
from robot_platform.launcher.supervisor import ProcessGroup

log = logging.getLogger("robot-platform.demo")
LINK_TIMEOUT_S = 30.0
GRAPH_TIMEOUT_S = 60.0  # every robot's nodes in its graph by then (all robots: one deadline)
GRAPH_MIN_WAIT_S = 5.0  # each robot's graph is looked at for at least this long


def check_demo(layout: DemoLayout, group: ProcessGroup, stop: threading.Event) -> bool:
    """Wait (bounded) for every robot's leaf link and simulator topics; log what is missing."""
    expected = sorted(layout.robot_id(i) for i in range(1, layout.robots + 1))
    deadline = time.monotonic() + LINK_TIMEOUT_S
    leafs: list[str] = []
    while time.monotonic() < deadline and not stop.is_set():
        try:
            leafs = [name for port in layout.hub_monitor_ports() for name in leaf_names(port)]
        except OSError:
            leafs = []
        if set(expected) <= set(leafs):
            break
        time.sleep(0.5)
    ok = set(expected) <= set(leafs)
    if not ok:
        log.error("robots not linked to the hub: %s", sorted(set(expected) - set(leafs)))
    # One deadline for every robot's graph (checked in turn): a robot's agent process builds its nodes one
    # after the other, ~30 s on a loaded 2-core host with six robots starting at once.
    graph_deadline = time.monotonic() + GRAPH_TIMEOUT_S
    for i in range(1, layout.robots + 1):
        if stop.is_set():
            return False
        # Every node the demo started for this robot must join the robot's graph.
        rid = layout.robot_id(i)
        expected_nodes = {node for c in group.children if c.name.startswith(f"{rid}/") and not c.stop_last
                          for node in node_names(c.name, c.argv)}  # servers are no ROS nodes  # fmt: skip
        wait_s = max(graph_deadline - time.monotonic(), GRAPH_MIN_WAIT_S)
        topics, nodes = graph_in_domain(layout.domain(i), EXPECTED_SIM_TOPICS, expected_nodes, timeout_s=wait_s)
        missing = sorted(EXPECTED_SIM_TOPICS - set(topics)) + sorted(expected_nodes - nodes)
        if missing:
            ok = False
            log.error("%s (ROS_DOMAIN_ID %d): missing %s", layout.robot_id(i), layout.domain(i), missing)
        else:
            log.info("%s (ROS_DOMAIN_ID %d): nodes %s; %d topics", layout.robot_id(i), layout.domain(i),
                     ", ".join(sorted(expected_nodes)), len(topics))
    control_nodes = {c.name.split("/", 1)[1].removesuffix("-standby") for c in group.children
                     if c.name.startswith("control/") and not c.stop_last}  # --ha: a standby has the same name
    _, nodes = graph_in_domain(layout.domain_base, set(), control_nodes, timeout_s=30.0)
    if control_nodes - nodes:
        ok = False
        log.error("control server (ROS_DOMAIN_ID %d): missing nodes %s", layout.domain_base,
                  sorted(control_nodes - nodes))
    else:
        log.info("control server (ROS_DOMAIN_ID %d): nodes %s", layout.domain_base, ", ".join(sorted(nodes)))
    dead = [c.name for c in group.exited()]
    if dead:
        ok = False
        log.error("exited early: %s (logs in %s)", dead, layout.state_dir / "logs")
    return ok


COMMAND_MARK = "$ "  # every command the banner prints follows this mark (test_readme_commands.py runs them)


def banner(layout: DemoLayout, ok: bool, tokens: dict[str, str] | None = None, documents: list[Path] | None = None,
           control_password_file: Path | None = None, prometheus_url: str = "") -> str:
    """What runs where, and commands to try (each after ``COMMAND_MARK``). ``tokens`` are this run's demo
    logins (user -> user:secret), shown in the URLs; ``documents`` the job documents of the sample
    packages pushed to the demo's S3; ``prometheus_url`` the demo's Prometheus, if it runs one."""
    tokens = tokens or {}
    console_q = f"?token={tokens['admin']}" if "admin" in tokens else ""
    panel_q = f"?token={tokens['operator']}" if "operator" in tokens else ""
    run = COMMAND_MARK
    robots = [layout.robot_id(i) for i in range(1, layout.robots + 1)]
    lines = [
        "",
        f"robot_platform demo: control server + {layout.robots} simulated robot(s) "
        + ("- all up" if ok else "- SOME PARTS FAILED, see above"),
        f"  NATS hub            {layout.hub_url()}   (robots link in on :{layout.leaf_port}"
        + (f"..{layout.leaf_port + layout.hub_nodes - 1}; 3-node cluster, jobs/registry active+standby)"
           if layout.ha else ")"),
        f"  hub monitoring      http://127.0.0.1:{layout.hub_monitor_port}/leafz",
        f"  operator console    http://127.0.0.1:{layout.console_port}/{console_q}",
    ]
    if prometheus_url:
        lines.append(f"  Prometheus          {prometheus_url}/targets   (scrapes every robot, bridge and jobs_service)")
    for i in range(1, layout.robots + 1):
        lines += [
            f"  robot {layout.robot_id(i):<4}          ROS_DOMAIN_ID={layout.domain(i)}  "
            f"nats://127.0.0.1:{layout.robot_port_base + i}  "
            f"metrics http://127.0.0.1:{layout.metrics_base + i}/metrics",
            f"    touch panel       http://127.0.0.1:{layout.panel_port_base + i}/{panel_q}",
        ]
    if documents:
        ports = layout.site_ports
        lines += [
            f"  deployments         Mosquitto mqtts://127.0.0.1:{ports.mqtt}, S3 http://127.0.0.1:{ports.s3}, "
            f"job documents in {documents[0].parent}",
        ]
    lines += [
        f"  logs                {layout.state_dir / 'logs'}",
        "  logins              admin (console) and operator (panels), new secrets each run: "
        f"{layout.state_dir / 'demo-users.yaml'} holds only hashes",
        "  try (after `. scripts/env.sh`, which puts robot-platform on PATH):",
    ]
    if control_password_file:
        lines.append(f"    operator CLI      {run}export RP_NATS_URL={layout.hub_url()} "
                     f"RP_NATS_USER=control RP_NATS_PASSWORD_FILE={control_password_file}")  # fmt: skip
    lines += [
        f"    fleet registry    {run}robot-platform robots",
        f"    robot r1's graph  {run}ROS_DOMAIN_ID={layout.domain(1)} robot-platform topics",
        f"    telemetry         {run}robot-platform echo robots.{robots[0]}.ros.odom -n 1 --no-arr",
        f"    remote action     {run}robot-platform ops call {robots[0]} list_graph --role operator",
    ]
    if documents:
        lines += [
            f"    deploy            {run}robot-platform deploy create --document {documents[0]} "
            f"--targets {','.join(robots)}",
            f"    follow it         {run}robot-platform deploy status latest --wait 120",
        ]
    lines += ["  stop                Ctrl-C", ""]
    return "\n".join(lines)


def print_banner(layout: DemoLayout, ok: bool, tokens: dict[str, str] | None = None,
                 documents: list[Path] | None = None, control_password_file: Path | None = None,
                 prometheus_url: str = "") -> None:
    print(banner(layout, ok, tokens, documents, control_password_file, prometheus_url), flush=True)
