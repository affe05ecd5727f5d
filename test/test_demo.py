"""`robot-platform demo`: robots' graphs are up and isolated, every robot's NATS reaches the hub and
back, a fleet deployment of a sample package succeeds, and SIGTERM stops every process it started."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import psutil
import pytest

from helpers import REPO, free_demo_base, free_port, ros_env, wait_for
from robot_platform.launcher.domains import DomainReservation
from robot_platform.launcher.graph import topics_in_domain
from robot_platform.launcher.supervisor import ProcessGroup

ROBOTS = 2


# How many messages a topic of the control graph gets in N seconds (its own process: its own ROS domain).
MIRROR_RATE = """
import sys, time, rclpy
from nav_msgs.msg import Odometry
rclpy.init()
node, got = rclpy.create_node("mirror_rate_probe"), []
node.create_subscription(Odometry, sys.argv[1], got.append, 10)
end = time.monotonic() + 30
while not got and time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.1)
got.clear()
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.1)
print(len(got))
"""


@pytest.fixture
def domains() -> Iterator[int]:
    block = DomainReservation(count=ROBOTS + 1)
    try:
        yield block.domain_id
    finally:
        block.release()


def _round_trip(hub_url: str, robot_urls: dict[str, str], password: str) -> dict[str, tuple[bytes, bytes]]:
    """Publish on each robot's server and receive on the hub (as the control user), and the other way round."""

    async def run() -> dict[str, tuple[bytes, bytes]]:
        hub = await nats.connect(hub_url, user="control", password=password)
        results: dict[str, tuple[bytes, bytes]] = {}
        try:
            for rid, url in robot_urls.items():
                robot = await nats.connect(url)
                try:
                    up = await hub.subscribe(f"robots.{rid}.presence")
                    down = await robot.subscribe(f"robots.{rid}.cmd.ping")
                    await hub.flush()
                    await robot.flush()
                    # Interest crosses the leaf link asynchronously: retry until it arrives.
                    for _ in range(50):
                        await robot.publish(f"robots.{rid}.presence", f"hello from {rid}".encode())
                        await hub.publish(f"robots.{rid}.cmd.ping", b"ping")
                        try:
                            got_up = await up.next_msg(timeout=0.2)
                            got_down = await down.next_msg(timeout=0.2)
                            results[rid] = (got_up.data, got_down.data)
                            break
                        except nats.errors.TimeoutError:
                            continue
                finally:
                    await robot.close()
        finally:
            await hub.close()
        return results

    return asyncio.run(run())


async def _refusals(hub_url: str, hub_conf: Path) -> dict[str, bool]:
    """Whether the hub refuses an anonymous client, and r1's user publishing under robots.r2."""
    out = {"anonymous": False, "r1_as_r2": False}
    try:
        nc = await nats.connect(hub_url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
        await nc.close()
    except (nats.errors.Error, OSError, TimeoutError):
        out["anonymous"] = True
    r1_password = re.search(r'user: r1, password: "([^"]+)"', hub_conf.read_text())
    assert r1_password, "r1's user in the generated hub config"
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    r1 = await nats.connect(hub_url, user="r1", password=r1_password.group(1), error_cb=on_error,
                            allow_reconnect=False)  # fmt: skip
    try:
        await r1.publish("robots.r2.alerts", b"spoofed")
        await r1.flush()
        await asyncio.sleep(0.3)
    finally:
        await r1.close()
    out["r1_as_r2"] = any("permissions violation for publish" in e.lower() for e in errors)
    return out


def test_demo_runs_robots_linked_to_the_control_server(procs: ProcessGroup, domains: int, tmp_path: Path) -> None:
    hub_port, monitor, leaf, prometheus_port = free_port(), free_port(), free_port(), free_port()
    robot_base = free_demo_base(ROBOTS)
    monitor_base = robot_base + 100
    demo = procs.start("demo", [
        str(REPO / "bin" / "robot-platform"), "demo", "--robots", str(ROBOTS), "--state-dir", str(tmp_path / "demo"),
        "--hub-port", str(hub_port), "--hub-monitor-port", str(monitor), "--leaf-port", str(leaf),
        "--robot-port-base", str(robot_base), "--robot-monitor-base", str(monitor_base),
        "--domain-base", str(domains), "--metrics-base", str(robot_base + 200),
        "--bridge-metrics-base", str(robot_base + 300), "--console-port", str(free_port()),
        "--panel-port-base", str(robot_base + 400), "--mqtt-port", str(free_port()), "--s3-port", str(free_port()),
        "--weed-port-base", str(robot_base + 500), "--control-bridge-metrics-port", str(free_port()),
        "--jobs-metrics-port", str(free_port()), "--prometheus-port", str(prometheus_port),
    ])
    wait_for(lambda: "all up" in procs.child("demo").output() or demo.poll() is not None, 90, "the demo banner")
    assert "all up" in procs.child("demo").output(), procs.child("demo").output()

    # Each robot's simulator is in its own graph, not in the others'.
    for i in range(1, ROBOTS + 1):
        topics = topics_in_domain(domains + i, {"/odom", "/scan"}, timeout_s=10)
        assert {"/odom", "/imu", "/scan", "/battery_state"} <= set(topics)
    assert "/odom" not in topics_in_domain(domains, set(), timeout_s=1.0)
    # The control graph mirrors each robot's odometry from its 2 Hz overview copy (control.yaml's
    # mirror.overview_topics), not the 20 Hz odometry: a few messages in 6 s, far fewer than 120.
    count = subprocess.run([sys.executable, "-c", MIRROR_RATE, "/fleet/r1/odom", "6"], env=ros_env(domains),
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert count.returncode == 0, count.stderr
    assert 3 <= int(count.stdout) <= 30, f"/fleet/r1/odom: {count.stdout} messages in 6 s"

    # Every robot's nats-server reaches the hub, and the hub reaches it.
    robot_urls = {f"r{i}": f"nats://127.0.0.1:{robot_base + i}" for i in range(1, ROBOTS + 1)}
    control_password_file = tmp_path / "demo" / "nats" / "control.password"
    password = control_password_file.read_text().strip()
    results = _round_trip(f"nats://127.0.0.1:{hub_port}", robot_urls, password)
    assert results == {rid: (f"hello from {rid}".encode(), b"ping") for rid in robot_urls}

    # The demo's hub runs the secured fleet config: no anonymous clients, and a robot user may not publish
    # as another robot (the hub refuses it).
    refused = asyncio.run(_refusals(f"nats://127.0.0.1:{hub_port}", tmp_path / "demo" / "nats" / "hub.conf"))
    assert refused["anonymous"] and refused["r1_as_r2"], refused

    # fleet_registry runs as its least-privileged hub user and keeps the registry the operator CLI reads.
    def registry() -> dict[str, str]:
        out = subprocess.run([str(REPO / "bin" / "robot-platform"), "robots", "--json", "--url",
                              f"nats://127.0.0.1:{hub_port}", "--user", "control", "--password-file",
                              str(control_password_file)], capture_output=True, text=True, timeout=30)  # fmt: skip
        return {r["robot_id"]: r["status"] for r in json.loads(out.stdout)} if out.returncode == 0 else {}

    wait_for(lambda: registry() == {"r1": "online", "r2": "online"}, 30, "both robots online in the registry")

    # The demo's Prometheus scrapes every robot's health and bridge endpoints and the control services.
    def targets_up() -> set[str]:
        url = f"http://127.0.0.1:{prometheus_port}/api/v1/targets"
        with urllib.request.urlopen(url, timeout=2) as response:
            active = json.load(response)["data"]["activeTargets"]
        return {f"{t['labels']['job']}/{t['labels'].get('robot') or t['labels'].get('service')}"
                for t in active if t["health"] == "up"}  # fmt: skip

    expected = {f"{job}/r{i}" for job in ("robot_health", "robot_bridge") for i in range(1, ROBOTS + 1)}
    expected |= {"control/nats_bridge", "control/jobs_service"}
    wait_for(lambda: expected <= targets_up(), 60, f"Prometheus targets up: {sorted(expected)}")

    # Push-button deployment: the demo pushed signed sample packages to its S3 and wired jobs_service and
    # every deploy_service to its Mosquitto; a job for both robots (canary first) succeeds on both.
    document = tmp_path / "demo" / "site" / "packages" / "hello_app-1.0.0.json"
    assert document.is_file(), procs.child("demo").output()
    cli = [str(REPO / "bin" / "robot-platform"), "deploy", "--nats-url", f"nats://127.0.0.1:{hub_port}",
           "--user", "control", "--password-file", str(control_password_file)]
    created = subprocess.run([*cli, "create", "--document", str(document), "--targets", "r1,r2", "--canary", "1",
                              "--json"],
                             capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    job_id = json.loads(created.stdout)["job_id"]
    status = subprocess.run([*cli, "status", job_id, "--wait", "60", "--json"], capture_output=True, text=True,
                            timeout=90)  # fmt: skip
    assert status.returncode == 0, status.stdout + status.stderr
    executions = json.loads(status.stdout)["executions"]
    assert {e["thing"]: e["status"] for e in executions} == {"r1": "SUCCEEDED", "r2": "SUCCEEDED"}, executions

    # SIGTERM (not only Ctrl-C) stops everything the demo started.
    children = psutil.Process(demo.pid).children(recursive=True)
    assert len(children) >= 3 + 2 * ROBOTS  # hub, Mosquitto, SeaweedFS + (nats-server + robot_sim) per robot
    demo.send_signal(signal.SIGTERM)
    assert demo.wait(timeout=30) == 0
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left running after SIGTERM: {[p.pid for p in alive]}"
    sys.stdout.write(procs.child("demo").output())
