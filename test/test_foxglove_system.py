"""System test of the Foxglove WebSocket protocol (foxglove.websocket.v1) served by ws_agent.

Real parts: nats-server, robot_sim and nats_bridge (rclpy nodes), a robot-mode and a fleet-mode ws_agent
on the same NATS, and the real npm client ``@foxglove/ws-protocol`` in Node (test/browser/
foxglove_client.mjs) decoding CDR with ``@foxglove/rosmsg2-serialization``. Checks: serverInfo and
advertise, every schema parses, Odometry and LaserScan decode, cmd_vel refused for a viewer (status and
audit) and moving the simulated robot for an operator, the e-stop service answered by robot_sim; the
fleet agent names the same topics /robots/r1/...; a foreign Origin and a missing login are refused.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgpack
import nats
import pytest

from helpers import free_port, wait_for, wait_port
from test_ws_agent_system import BROWSER_DIR, SECRETS, health, python_env, require_browser_tools, write_users

WAIT_S = 30.0
PARAMS = """
/**/nats_bridge:
  ros__parameters:
    robot_id: r1
    nats_url: {url}
    health_period_s: 0.5
    out:
      names: [odom, scan]
      odom: {{topic: /odom, type: nav_msgs/msg/Odometry}}
      scan: {{topic: /scan, type: sensor_msgs/msg/LaserScan, reliability: best_effort, depth: 2}}
    in:
      names: [cmd_vel]
      cmd_vel: {{topic: /cmd_vel, type: geometry_msgs/msg/Twist}}
    services:
      names: [estop]
      estop: {{service: /robot_sim/estop, type: std_srvs/srv/SetBool, timeout_s: 3.0}}
/**/robot_sim:
  ros__parameters:
    robot_id: r1
    odom_rate_hz: 20.0
    imu_rate_hz: 5.0
    scan_rate_hz: 2.0
/**/ws_agent:
  ros__parameters:
    nats_url: {url}
    users_file: {users}
    foxglove_bridge_config: {params}
    diagnostics_period_s: 0.5
"""


class AuditLog:
    """nats-py in a thread recording audit.> events."""

    def __init__(self, url: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.nc = self._run(nats.connect(url))
        self._run(self.nc.subscribe("audit.>", cb=self._record))
        self._run(self.nc.flush())

    async def _record(self, msg: Any) -> None:
        self.events.append(msgpack.unpackb(msg.data))

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def close(self) -> None:
        self._run(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)


def start_agent(procs: Any, params: Path, mode: str, domain: int) -> int:
    port = free_port()
    argv = [sys.executable, "-m", "robot_platform.ws.node", "--ros-args", "--params-file", str(params),
            "-p", f"mode:={mode}", "-p", f"robot_id:={'r1' if mode == 'robot' else 'control'}",
            "-p", f"port:={port}"]  # fmt: skip
    procs.start(f"ws_agent_{mode}", argv, env=python_env(domain))
    wait_port(port, timeout=WAIT_S)
    wait_for(lambda: health(port)["nats_connected"], WAIT_S, f"{mode} ws_agent connected to NATS")
    return port


def run_client(node: str, port: int, prefix: str) -> dict[str, Any]:
    urls = [f"ws://127.0.0.1:{port}/ws?token={u}:{SECRETS[u][1]}" for u in ("vera", "otto")]
    run = subprocess.run([node, str(BROWSER_DIR / "foxglove_client.mjs"), *urls, prefix],
                         capture_output=True, text=True, timeout=90, cwd=BROWSER_DIR)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def check(result: dict[str, Any], prefix: str) -> None:
    assert result["serverInfo"]["capabilities"] == ["clientPublish", "services"]
    assert "cdr" in result["serverInfo"]["supportedEncodings"]
    channels = {c["topic"]: c for c in result["channels"]}
    assert channels[f"{prefix}/odom"]["schemaName"] == "nav_msgs/msg/Odometry"
    assert channels[f"{prefix}/scan"]["schemaName"] == "sensor_msgs/msg/LaserScan"
    assert all(c["encoding"] == "cdr" and c["schemaEncoding"] == "ros2msg" for c in channels.values())
    assert result["parseErrors"] == []
    assert result["odom"]["frame_id"] == "odom" and result["odom"]["child_frame_id"] == "base_link"
    assert abs(result["odom"]["qw"]) > 0  # a unit quaternion, decoded from CDR
    assert result["scan"]["ranges"] > 10 and result["scan"]["angle_max"] > result["scan"]["angle_min"]
    assert result["viewerServices"] == []  # a viewer may not call the e-stop: not offered
    refusals = [s for s in result["viewerStatuses"] if s["level"] == 2]
    assert len(refusals) == 2 and "may not publish" in refusals[0]["message"], result["viewerStatuses"]
    assert result["moved"] and result["operatorErrors"] == []
    assert result["estop"]["success"] and result["release"]["success"], result


def test_foxglove_client_robot_and_fleet(nats_server: Any, procs: Any, ros_domain: int, tmp_path: Path) -> None:
    node = require_browser_tools()
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.format(url=nats_server.url, users=write_users(tmp_path), params=params))
    for name, module in (("robot_sim", "robot_platform.sim.node"), ("nats_bridge", "robot_platform.bridge.node")):
        procs.start(name, [sys.executable, "-m", module, "--ros-args", "--params-file", str(params)],
                    env=python_env(ros_domain))  # fmt: skip
    robot_port = start_agent(procs, params, "robot", ros_domain)
    fleet_port = start_agent(procs, params, "fleet", ros_domain)
    audit = AuditLog(nats_server.url)
    try:
        check(run_client(node, robot_port, ""), "")
        wait_for(lambda: (health(fleet_port)["foxglove"] or {}).get("robots") == 1, WAIT_S, "fleet agent saw r1")
        check(run_client(node, fleet_port, "/robots/r1"), "/robots/r1")
        ops = {(e["user"], e["op"], e["allowed"]) for e in audit.events}
        assert ("vera", "advertise", False) in ops  # refused at advertise: its messages have no channel
        assert ("otto", "publish", True) in ops and ("otto", "call_service", True) in ops
        stats = health(robot_port)["foxglove"]
        assert stats["channels"] == 2 and stats["services"] == 1
        assert stats["cdr_errors"] == 0 and stats["cdr_fallbacks"] == 0  # every message packed by cdr.py
    finally:
        audit.close()
    # the same upgrade rules as rosbridge: a foreign Origin is refused, a Foxglove client must log in
    req = urllib.request.Request(f"http://127.0.0.1:{robot_port}/ws?token=vera:{SECRETS['vera'][1]}", headers={
        "Origin": "http://evil.example", "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Protocol": "foxglove.websocket.v1"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=5)
    assert refused.value.code == 403
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    anon = connect(f"ws://127.0.0.1:{robot_port}/ws", subprotocols=["foxglove.websocket.v1"])
    with anon, pytest.raises(ConnectionClosed) as closed:
        anon.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
