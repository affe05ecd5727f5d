"""System test: the output of an app started by deploy_service reaches the control server's log search.

Real parts: SeaweedFS (the package store), a hub nats-server and robot r1's nats-server linked as a leaf
(generated secured configs), fleet_registry on the hub (creates ``FLEET_LOGS``, sourcing ``LOGS_r1``),
robot_agent on r1 (forwards ``/rosout`` into ``LOGS_r1``), deploy_service on r1 (real process, the
package built, signed and pushed with the real CLI, deployed through the ROS ``deploy`` service). The
app prints an info line on stdout and a Python-logging warning on stderr; the query the operator CLI
runs (``ops.client.query_logs`` on ``FLEET_LOGS``) finds the warning by robot, node (``apps.<package>``)
and level, with the text, and not at a level above it; the app's log file on the robot keeps both lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import rclpy
import yaml

import fixtures_s3
from fixtures_s3 import SeaweedFS
from helpers import REPO, free_port, ros_env, wait_for, wait_port
from robot_platform.ops import logs
from robot_platform.ops.client import connect, query_logs
from robot_platform.site_setup.nats_config import Endpoint, Fleet, render_hub, render_robot, write_private
from robot_platform_interfaces.msg import DeploymentStatus
from test_deploy_system import BUCKET, Client, Publisher

seaweedfs = fixtures_s3.seaweedfs
SRC = str(REPO / "src" / "robot_platform")
WAIT_S = 60.0
PACKAGE = "log_app"


def log_app_source(root: Path, token: str) -> Path:
    """An app that logs one info line (stdout) and one warning (stderr, Python logging) at start."""
    src = root / "log_app"
    src.mkdir(parents=True)
    manifest = {
        "name": PACKAGE,
        "version": "1.0.0",
        "kind": "app",
        "runtime": "python3",
        "timeout_s": 10,
        "run": ["python3", "app.py"],
        "environment": {"TOKEN": token},
    }
    (src / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    (src / "app.py").write_text(
        textwrap.dedent("""
        import logging, os, signal, sys, time
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        print(f"gripper ready {os.environ['TOKEN']}", flush=True)
        logging.warning(f"gripper pressure low {os.environ['TOKEN']}")
        while True:
            time.sleep(0.5)
        """)
    )
    return src


def py_env(domain: int) -> dict[str, str]:
    env = ros_env(domain, {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")})
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(key, None)
    return env


def find(hub_url: str, password: str, min_level: str, flt: logs.LogFilter) -> list[logs.LogEntry]:
    async def run() -> list[logs.LogEntry]:
        nc = await connect(hub_url, "control", password)
        found: list[logs.LogEntry] = []
        try:
            await query_logs(nc, "r1", min_level, flt, found.append)
        finally:
            await nc.close()
        return found

    return asyncio.run(run())


@pytest.fixture
def ros_context(ros_domain: int) -> Any:
    rclpy.init()
    try:
        yield ros_domain
    finally:
        rclpy.try_shutdown()


def test_app_output_reaches_the_fleet_log_search(
    seaweedfs: SeaweedFS, ros_context: int, procs: Any, tmp_path: Path
) -> None:
    exe = shutil.which("nats-server")
    assert exe, "nats-server missing (make setup installs it)"
    token = uuid.uuid4().hex[:10]
    seaweedfs.create_bucket(BUCKET)
    pub = Publisher(seaweedfs, tmp_path)
    doc = pub.publish(log_app_source(tmp_path, token))

    # ---- NATS: hub + r1 as its leaf
    fleet = Fleet.generate(["r1"])
    hub_port, leaf_port, r1_port = free_port(), free_port(), free_port()
    hub_conf = render_hub(fleet, Endpoint(port=hub_port), leaf_port, str(tmp_path / "js-hub"))
    write_private(tmp_path / "hub.conf", hub_conf)
    procs.start("hub", [exe, "-c", str(tmp_path / "hub.conf")])
    wait_port(hub_port)
    r1_conf = render_robot("r1", fleet.robots["r1"], Endpoint(port=r1_port), f"127.0.0.1:{leaf_port}",
                           str(tmp_path / "js-r1"))  # fmt: skip
    write_private(tmp_path / "r1.conf", r1_conf)
    procs.start("nats-r1", [exe, "-c", str(tmp_path / "r1.conf")])
    wait_port(r1_port)
    hub_url = f"nats://127.0.0.1:{hub_port}"
    control_pw = tmp_path / "control.password"
    write_private(control_pw, fleet.control_password)

    # ---- control side: fleet_registry (FLEET_LOGS); robot side: robot_agent + deploy_service
    env = py_env(ros_context)
    (tmp_path / "registry.yaml").write_text(
        "/**/fleet_registry:\n  ros__parameters:\n"
        f"    nats_url: {hub_url}\n    nats_user: control\n    nats_password_file: {control_pw}\n"
        "    sweep_period_s: 0.5\n"
    )
    m = [sys.executable, "-m"]
    procs.start("fleet_registry", [*m, "robot_platform.ops.registry_node", "--ros-args", "--params-file",
                                   str(tmp_path / "registry.yaml")], env=env)  # fmt: skip
    (tmp_path / "agent.yaml").write_text(
        "/**/robot_agent:\n  ros__parameters:\n"
        f"    robot_id: r1\n    nats_url: nats://127.0.0.1:{r1_port}\n    announce_period_s: 0.5\n"
    )
    procs.start("robot_agent", [*m, "robot_platform.ops.node", "--ros-args", "--params-file",
                                str(tmp_path / "agent.yaml")], env=env)  # fmt: skip
    (tmp_path / "deploy.yaml").write_text(
        "/**/deploy_service:\n  ros__parameters:\n"
        f"    robot_id: r1\n    install_root: {tmp_path / 'robot'}\n"
        f"    s3_endpoint_url: {seaweedfs.endpoint_url}\n    s3_bucket: {BUCKET}\n"
        f"    s3_credentials_file: {seaweedfs.credentials_file}\n    trusted_keys: [{json.dumps(pub.trusted)}]\n"
    )
    procs.start("deploy_service", [*m, "robot_platform.deploy.node", "--ros-args", "--params-file",
                                   str(tmp_path / "deploy.yaml")], env=env)  # fmt: skip

    client = Client()
    try:
        # FLEET_LOGS sources LOGS_r1 once r1 announced itself (and robot_agent subscribes to /rosout).
        wait_for(lambda: find(hub_url, fleet.control_password, "fatal", logs.LogFilter()) == [], WAIT_S,
                 "FLEET_LOGS on the hub", period=0.5)  # fmt: skip
        started = time.time()
        answer = client.deploy(doc, "logs-1")
        assert answer.accepted, answer.message
        final = client.final("logs-1", WAIT_S)
        assert final.state == DeploymentStatus.STATE_SUCCEEDED, final.reason

        node = f"apps.{PACKAGE}"
        by_node = logs.LogFilter(node=node, since=started - 5)

        def warning() -> logs.LogEntry | None:
            hits = [e for e in find(hub_url, fleet.control_password, "warn", by_node) if token in e.msg]
            return hits[0] if hits else None

        entry = wait_for(warning, WAIT_S, "the app's warning in FLEET_LOGS", period=0.5)
        assert (entry.robot_id, entry.node, entry.level) == ("r1", node, "warn")
        assert entry.msg == f"WARNING:root:gripper pressure low {token}"
        assert started - 5 <= entry.time <= time.time()  # stamped when deploy_service read it
        assert entry.file == "stderr"
        # Level filtering happens on the server: not found at error and above ...
        assert not [e for e in find(hub_url, fleet.control_password, "error", by_node) if token in e.msg]
        # ... the info line on stdout is there at info, and a text search finds it.
        grep = logs.LogFilter(node=node, grep=re.compile(f"ready {token}"))
        infos = find(hub_url, fleet.control_password, "info", grep)
        assert [(e.level, e.file) for e in infos] == [("info", "stdout")], infos
        # The per-app log file on the robot keeps the output too.
        text = (tmp_path / "robot" / PACKAGE / "logs" / "1.0.0.log").read_text()
        assert f"gripper ready {token}" in text and f"gripper pressure low {token}" in text
        print(f"\napp warning searchable on the hub {entry.time - started:.2f} s after the deploy request")
    finally:
        client.close()
        procs.stop_all()
