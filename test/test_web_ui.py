"""Browser tests of the touch panel and the operator console (web/) against a real running stack.

Stack (all real processes, loopback only): one nats-server (JetStream); two simulated robots r1, r2,
each in its own ROS domain with robot_sim + nats_bridge (telemetry, cmd_vel, services estop/pause/ack)
+ health_monitor_tree (the shipped config/health/checks.yaml) + a ws_agent in robot mode serving its
touch panel; one ws_agent in fleet mode serving the operator console. Every agent serves the repo's
web/ directly (``--web-dir``), so no rebuild is needed. Debian's headless Chromium is driven by
test/browser/ui_driver.mjs (playwright-core) over a line protocol; the test checks the robots' ROS
graphs itself with rclpy (one context per robot domain).

What a user relies on, checked here:
- the console lists every robot with live values that change (a jog on r1's panel shows as speed);
- e-stop on r1's panel latches the stop in r1's ROS graph: /odom stays at 0 while cmd_vel keeps
  arriving; releasing it (two taps) lets the robot move again;
- a fault injected in r2's simulator (silence the scan) shows in the console's alert feed within 2 s
  and can be acknowledged there (the robot's own health snapshot then names the operator);
- a viewer gets no controls, and the agent refuses the call anyway;
- after the console's agent restarts, the same page (no reload) reconnects and shows fresh data;
- a console page opened later through ``/?token=...#/alerts`` opens the alert view and counts an alert's
  "Since" from the robot's raise stamp; no page load meets a 404 (page icon included);
- no request leaves 127.0.0.1; screenshots of every view go to test-results/web_ui/.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rclpy
from geometry_msgs.msg import Twist, Vector3
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy

from helpers import REPO, free_port, ros_env, wait_for, wait_port
from robot_platform.launcher.domains import DomainReservation
from robot_platform.launcher.supervisor import ProcessGroup
from robot_platform.ws.hashing import hash_secret
from robot_platform_interfaces.srv import InjectFault

BROWSER_DIR = REPO / "test" / "browser"
WEB_DIR = REPO / "web"
ARTIFACTS = REPO / "test-results" / "web_ui"
SRC = str(REPO / "src" / "robot_platform")
CHECKS = REPO / "config" / "health" / "checks.yaml"
ROBOTS = ("r1", "r2")
USERS = {"otto": ("operator", "otto-pw"), "vera": ("viewer", "vera-pw"), "ada": ("admin", "ada-pw")}
START_S = 60.0
STEP_S = 20.0
ALERT_BUDGET_S = 2.0
# What a browser fetches as the page's icon (the declared one, else /favicon.ico): its HTTP status.
ICON_STATUS_JS = """fetch(document.querySelector("link[rel~=icon]")?.href ?? "/favicon.ico").then(r => r.status)"""
PAGE_STATE_JS = """(() => { const c = window.__console || window.__panel; if (!c) return 'no app object';
  const robots = c.robots ? [...c.robots.values()] : [c.model];
  return {connected: c.client.connected, received: c.client.received, robots: robots.map(r => ({id: r.id,
    battery: !!r.battery, odom: !!r.odom, health: !!r.health, alerts: r.alerts.size}))}; })()"""

BRIDGE = """
/**/nats_bridge:
  ros__parameters:
    robot_id: {rid}
    nats_url: {url}
    metrics_port: 0
    discovery_period_s: 0.0
    out:
      names: [odom, scan, battery, cmd_vel]
      odom: {{topic: /odom, type: nav_msgs/msg/Odometry, max_rate_hz: 20.0}}
      cmd_vel: {{topic: /cmd_vel, type: geometry_msgs/msg/Twist, max_rate_hz: 10.0}}
      scan: {{topic: /scan, type: sensor_msgs/msg/LaserScan, max_rate_hz: 5.0, reliability: best_effort, depth: 2}}
      battery: {{topic: /battery_state, type: sensor_msgs/msg/BatteryState}}
    in:
      names: [cmd_vel]
      cmd_vel: {{topic: /cmd_vel, type: geometry_msgs/msg/Twist}}
    services:
      names: [estop, pause, ack]
      estop: {{service: /robot_sim/estop, type: std_srvs/srv/SetBool, timeout_s: 2.0}}
      pause: {{service: /robot_sim/pause, type: std_srvs/srv/SetBool, timeout_s: 2.0}}
      ack:
        service: /health_monitor_tree/acknowledge_alert
        type: robot_platform_interfaces/srv/AcknowledgeAlert
        timeout_s: 5.0
/**/robot_sim:
  ros__parameters:
    robot_id: {rid}
    odom_rate_hz: 20.0
    imu_rate_hz: 20.0
    scan_rate_hz: 10.0
/**/health_monitor_tree:
  ros__parameters:
    robot_id: {rid}
    nats_url: {url}
    checks_file: {checks}
    metrics_port: 0
    nats_alert_stream: ""
    state_dir: {state}
"""
CAMERA = """
/**/robot_sim:
  ros__parameters:
    enable_camera: true
    camera_rate_hz: 5.0
    camera_width: 320
    camera_height: 240
/**/frame_publisher:
  ros__parameters:
    robot_id: {rid}
    nats_url: {url}
    cameras.names: [front]
    cameras.front.topic: camera/image_raw
    cameras.front.type: image
"""
CAMERA_ROBOT = "r1"


# ---------------------------------------------------------------------------------------- helpers
class Browser:
    """test/browser/ui_driver.mjs: one JSON command a line in, one answer a line out."""

    def __init__(self, log_path: Path) -> None:
        node = shutil.which("node")
        if node is None or not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
            pytest.fail("node or test/browser/node_modules missing: run `make setup` (npm ci in test/browser)")
        if not Path(os.environ.get("CHROMIUM", "/usr/bin/chromium")).exists():
            pytest.fail("Debian's chromium is not installed: run `make setup`")
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen([node, "ui_driver.mjs"], cwd=BROWSER_DIR, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, start_new_session=True)  # fmt: skip
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def do(self, cmd: str, timeout: float = STEP_S + 10, **args: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        self.proc.stdin.flush()
        try:
            answer = json.loads(self._lines.get(timeout=timeout))
        except queue.Empty:
            raise TimeoutError(f"browser driver did not answer {cmd} within {timeout}s") from None
        if not answer["ok"]:
            raise AssertionError(f"browser {cmd} {args}: {answer['error']}")
        return answer["value"]

    def wait(self, page: str, js: str, timeout: float = STEP_S) -> Any:
        try:
            return self.do("wait", timeout=timeout + 10, page=page, js=js, ms=int(timeout * 1000))
        except AssertionError as exc:  # say what the page saw: its errors and its state
            errors = self.do("report")["errors"][-10:]
            state = self.do("eval", page=page, js=PAGE_STATE_JS)
            raise AssertionError(f"{exc}\npage errors: {errors}\npage state: {state}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(TimeoutError, BrokenPipeError, OSError):
                self.do("quit", timeout=5)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()


class RosProbe:
    """An rclpy node in one robot's domain (own context): watches /odom, publishes /cmd_vel, injects faults."""

    def __init__(self, domain: int) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("web_ui_probe", context=self.context)
        self.speed = 0.0
        self.odom_count = 0
        self.node.create_subscription(Odometry, "/odom", self._on_odom,
                                      QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))  # fmt: skip
        self.cmd = self.node.create_publisher(Twist, "/cmd_vel", 10)
        self.fault = self.node.create_client(InjectFault, "/robot_sim/inject_fault")
        self.driving: float | None = None
        self.node.create_timer(0.1, self._drive)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            self.executor.spin_once(timeout_sec=0.1)

    def _on_odom(self, msg: Odometry) -> None:
        self.speed = msg.twist.twist.linear.x
        self.odom_count += 1

    def _drive(self) -> None:
        if self.driving is not None:
            self.cmd.publish(Twist(linear=Vector3(x=self.driving)))

    def inject(self, fault: str, target: str = "", value: float = 0.0) -> InjectFault.Response:
        assert self.fault.wait_for_service(timeout_sec=STEP_S), "robot_sim/inject_fault not available"
        future = self.fault.call_async(InjectFault.Request(fault=fault, target=target, value=value))
        wait_for(future.done, STEP_S, f"inject_fault {fault}")
        return future.result()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1)
        self.node.destroy_node()
        self.context.try_shutdown()
        self.thread.join(5)


def write_users(tmp_path: Path) -> Path:
    path = tmp_path / "users.yaml"
    lines = ["users:"] + [f"  {u}: {{role: {r}, secret_hash: '{hash_secret(s)}'}}" for u, (r, s) in USERS.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def token(user: str) -> str:
    return f"{user}:{USERS[user][1]}"


def agent_argv(mode: str, robot: str, port: int, nats_url: str, users: Path) -> list[str]:
    return [sys.executable, "-m", "robot_platform.ws.standalone", "--mode", mode, "--robot-id", robot,
            "--port", str(port), "--nats-url", nats_url, "--users-file", str(users), "--anonymous-role", "viewer",
            "--web-dir", str(WEB_DIR), "--log-level", "WARNING"]  # fmt: skip


@pytest.fixture
def domains() -> Iterator[int]:
    block = DomainReservation(count=len(ROBOTS))
    try:
        yield block.domain_id
    finally:
        block.release()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path / "browser.log")
    try:
        yield b
    finally:
        b.close()


# ---------------------------------------------------------------------------------------- the test
def test_panel_and_console_in_chromium(procs: ProcessGroup, nats_server: Any, domains: int, browser: Browser,
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    users = write_users(tmp_path)
    py_env = {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    panel_ports: dict[str, int] = {}
    probes: dict[str, RosProbe] = {}
    for i, rid in enumerate(ROBOTS):
        env = ros_env(domains + i, py_env)
        params = tmp_path / f"{rid}.yaml"
        params.write_text(BRIDGE.format(rid=rid, url=nats_server.url, checks=CHECKS, state=tmp_path / f"{rid}-health"))
        nodes = [("sim", "robot_sim"), ("bridge", "nats_bridge"), ("health", "health_monitor_tree")]
        files = [str(params)]
        if rid == CAMERA_ROBOT:  # camera frames on demand: frame_publisher leased by the console's agent
            camera = tmp_path / f"{rid}.camera.yaml"
            camera.write_text(CAMERA.format(rid=rid, url=nats_server.url))
            files.append(str(camera))
            nodes.append(("frames", "frame_publisher"))
        for area, node in nodes:
            argv = [sys.executable, "-m", f"robot_platform.{area}.node", "--ros-args"]
            for f in files:
                argv += ["--params-file", f]
            procs.start(f"{rid}.{node}", argv, env=env)
        panel_ports[rid] = free_port()
        procs.start(f"{rid}.ws_agent", agent_argv("robot", rid, panel_ports[rid], nats_server.url, users), env=env)
        probes[rid] = RosProbe(domains + i)
    console_port = free_port()
    console_argv = agent_argv("fleet", "control", console_port, nats_server.url, users)
    console = procs.start("console.ws_agent", console_argv, env=os.environ | py_env)
    for port in (console_port, *panel_ports.values()):
        wait_port(port, timeout=START_S)
    try:
        run_scenario(browser, procs, probes, panel_ports, console_port, console, console_argv, py_env)
    finally:
        for probe in probes.values():
            probe.close()


def run_scenario(b: Browser, procs: ProcessGroup, probes: dict[str, RosProbe], panel_ports: dict[str, int],
                 console_port: int, console: subprocess.Popen[bytes], console_argv: list[str],
                 py_env: dict[str, str]) -> None:  # fmt: skip
    console_url = f"http://127.0.0.1:{console_port}"
    panel1 = f"http://127.0.0.1:{panel_ports['r1']}"
    shot = lambda page, name: b.do("screenshot", page=page, path=str(ARTIFACTS / f"{name}.png"))  # noqa: E731

    # 1. The console lists every robot, with live values; "/" routes by the agent's mode.
    b.do("open", page="console", url=f"{console_url}/?token={token('otto')}", width=1280, height=800)
    b.wait("console", "location.pathname === '/console/'")
    b.wait(
        "console",
        "window.__console && ['r1','r2'].every(id => window.__console.robots.get(id)?.battery "
        "&& window.__console.robots.get(id)?.odom && window.__console.robots.get(id)?.health)",
        START_S,
    )
    rows = b.wait(
        "console",
        "document.querySelectorAll('#fleet-body tr').length === 2 && "
        "[...document.querySelectorAll('#fleet-body tr')].map(tr => tr.innerText)",
    )
    assert all("online" in row for row in rows), rows
    seen = b.do("eval", page="console", js="window.__console.robots.get('r1').lastSeen")
    b.wait("console", f"window.__console.robots.get('r1').lastSeen > {seen}")  # live, not a snapshot
    b.do("eval", page="console", js="window.__loadMarker = 'same-page'")

    # 2. The touch panel (operator kiosk, 1024x600): the jog pad drives r1; the console sees it move.
    b.do("open", page="panel", url=f"{panel1}/?token={token('otto')}", width=1024, height=600)
    b.wait(
        "panel",
        "location.pathname === '/panel/' && window.__panel && window.__panel.client.connected "
        "&& window.__panel.model.battery && window.__panel.model.odom",
    )
    can = b.do("eval", page="panel", js="window.__panel.can")
    assert can == {"jog": True, "estop": True, "pause": True, "ack": True}, can
    assert b.do("eval", page="panel", js=ICON_STATUS_JS) == 200  # the page icon exists (no 404 per load)
    b.do("pointer", page="panel", selector="[data-testid=jog-fwd]", action="down")
    wait_for(lambda: probes["r1"].speed > 0.1, STEP_S, "r1 moving on its ROS graph under the jog pad")
    b.wait("console", "window.__console.robots.get('r1').odom.speed > 0.1")
    b.wait(
        "console",
        "parseFloat(document.querySelector('#fleet-body tr[data-robot=r1] [data-col=speed]').textContent) > 0.1",
    )
    shot("panel", "panel_1024x600_driving")
    shot("console", "console_fleet")
    sent = b.do("eval", page="panel", js="window.__panel.jogSent")
    assert sent >= 3, f"jog pad sent {sent} cmd_vel messages"
    # dead-man: releasing the button stops the commands (the base then stops)
    b.do("pointer", page="panel", action="up", selector="")
    wait_for(lambda: abs(probes["r1"].speed) < 0.02, STEP_S, "r1 stopped after the jog button was released")

    # 3. E-stop on the panel latches in r1's ROS graph: /odom stays 0 while cmd_vel keeps coming.
    probes["r1"].driving = 0.5
    wait_for(lambda: probes["r1"].speed > 0.2, STEP_S, "r1 moving under the test's cmd_vel")
    b.do("click", page="panel", selector="[data-testid=estop]")
    result = b.wait("panel", "window.__panel.lastEstop")
    assert result["ok"] and result["values"]["success"], result
    wait_for(lambda: abs(probes["r1"].speed) < 0.01, 5.0, "r1 braked by the e-stop")
    count = probes["r1"].odom_count
    wait_for(lambda: probes["r1"].odom_count >= count + 20, 5.0, "odometry during the e-stop")
    assert abs(probes["r1"].speed) < 0.01, "r1 moved although e-stopped"
    b.wait(
        "panel",
        "document.querySelector('#mode').textContent === 'ESTOP' "
        "&& document.querySelector('[data-testid=jog-fwd]').disabled",
    )
    shot("panel", "panel_1024x600_estop")
    b.do("viewport", page="panel", width=800, height=480)
    shot("panel", "panel_800x480")
    b.do("viewport", page="panel", width=1024, height=600)
    # a release takes two taps: the first only arms the button (also on a page younger than the arm window)
    b.do("click", page="panel", selector="[data-testid=release]")
    b.wait("panel", "document.querySelector('[data-testid=release]').textContent === 'Tap again to release'")
    count = probes["r1"].odom_count
    wait_for(lambda: probes["r1"].odom_count >= count + 5, 5.0, "odometry after the first release tap")
    assert abs(probes["r1"].speed) < 0.01, "one tap released the e-stop"
    b.do("click", page="panel", selector="[data-testid=release]")
    wait_for(lambda: probes["r1"].speed > 0.2, STEP_S, "r1 moving again after the release")
    probes["r1"].driving = None

    # 4. A fault injected in r2's simulator is an alert in the console within 2 s; acknowledge it.
    b.do("goto", page="console", url=f"{console_url}/console/?token={token('otto')}#/alerts")
    b.wait("console", "window.__console && window.__console.robots.get('r2')?.health")
    b.do("eval", page="console", js="window.__loadMarker = 'same-page'")
    assert probes["r2"].inject("silence_sensor", "scan").success
    injected, injected_wall = time.monotonic(), time.time()
    b.wait(
        "console", "document.querySelector('#a-active tr[data-robot=r2][data-code=\"TOPIC_SILENT.scan\"]')", timeout=10
    )
    latency = time.monotonic() - injected
    shot("console", "console_alerts")
    sys.stdout.write(f"alert in the console {latency:.2f}s after the fault was injected\n")
    assert latency < ALERT_BUDGET_S, f"alert shown {latency:.2f}s after the fault (budget {ALERT_BUDGET_S}s)"
    b.do("click", page="console", selector="#a-active tr[data-robot=r2][data-code='TOPIC_SILENT.scan'] button")
    b.wait(
        "console",
        "(function walk(n){ return n && ((n.code === 'TOPIC_SILENT.scan' && n.acknowledged_by === "
        "'otto') || (n.children || []).some(walk)); })(window.__console.robots.get('r2').health.snap.root)",
    )
    # A page opened later (through "/", which keeps the hash: the alert view opens) counts "Since" from the
    # robot's raise stamp, not from when the page first saw the alert.
    b.do("open", page="late", url=f"{console_url}/?token={token('otto')}#/alerts", width=1280, height=800)
    late = b.wait(
        "late",
        "location.pathname === '/console/' && !document.querySelector('#view-alerts').hidden && "
        "(tr => tr && {hash: location.hash, since: tr.querySelector('[data-col=since]').textContent, "
        "raisedAt: window.__console.robots.get('r2').alerts.get(tr.querySelector('button').dataset.alert).raisedAt, "
        "pageAt: performance.timeOrigin / 1000})"
        "(document.querySelector('#a-active tr[data-robot=r2][data-code=\"TOPIC_SILENT.scan\"]'))",
        START_S,
    )
    assert late["hash"] == "#/alerts", late
    assert injected_wall - 1.0 < late["raisedAt"] < injected_wall + ALERT_BUDGET_S, (late, injected_wall)
    assert late["raisedAt"] < late["pageAt"], late  # raised before this page existed
    shown_age = late["pageAt"] - late["raisedAt"]
    assert late["since"] != "now" or shown_age < 1.5, (late, shown_age)
    b.do("close", page="late")
    assert probes["r2"].inject("restore_sensor", "scan").success

    # 5. Robot detail and deployment views (screenshots; the deploy view is admin-only for otto: disabled).
    b.do("goto", page="console", url=f"{console_url}/console/?token={token('otto')}#/robot/r1")
    b.wait(
        "console",
        "window.__console && window.__console.robots.get('r1')?.odom && "
        "document.querySelector('#d-name').textContent === 'r1' && !document.querySelector('#d-estop').hidden",
    )
    b.wait("console", "document.querySelector('#d-tree li') !== null")
    b.do("click", page="console", selector="[data-testid=camera-toggle]")  # camera on demand (frames + lease)
    size = b.wait(
        "console",
        "document.querySelector('#d-cam').naturalWidth > 0 && "
        "[document.querySelector('#d-cam').naturalWidth, document.querySelector('#d-cam').naturalHeight]",
    )
    assert size == [320, 240], size
    probes["r1"].driving = 0.4
    b.wait("console", "window.__console.robots.get('r1').commanded?.v > 0.3")  # cmd_vel telemetry
    time.sleep(1.5)  # a visible trajectory and speed curve for the screenshot (not a synchronisation)
    probes["r1"].driving = None
    b.do("viewport", page="console", width=1280, height=1120)  # every card of the detail view
    shot("console", "console_robot_detail")
    b.do("viewport", page="console", width=1280, height=800)
    b.do("click", page="console", selector="[data-testid=camera-toggle]")
    b.do("goto", page="console", url=f"{console_url}/console/?token={token('otto')}#/deploy")
    b.wait("console", "document.querySelectorAll('#dep-robots input').length === 2")
    assert b.do("eval", page="console", js="document.querySelector('#dep-start').disabled") is True
    shot("console", "console_deploy")

    # 6. Roles: a viewer (anonymous) sees no controls, and the agent refuses the e-stop anyway.
    b.do("open", page="viewer", url=f"http://127.0.0.1:{panel_ports['r2']}/", width=800, height=480)
    b.wait("viewer", "window.__panel && window.__panel.client.connected")
    assert b.do("eval", page="viewer", js="window.__panel.session.role") == "viewer"
    assert b.do("eval", page="viewer", js="document.querySelector('[data-testid=estop]').disabled") is True
    refused = b.do(
        "eval",
        page="viewer",
        js="window.__panel.client.callService('/robot_sim/estop', 'std_srvs/srv/SetBool', {data: true})",
    )
    assert not refused["ok"] and "viewer" in refused["error"], refused

    # 7. The console's agent restarts: the same page reconnects by itself and shows fresh data.
    b.do("goto", page="console", url=f"{console_url}/console/?token={token('otto')}#/fleet")
    b.wait(
        "console", "window.__console && window.__console.client.connected && window.__console.robots.get('r1')?.odom"
    )
    b.do("eval", page="console", js="window.__loadMarker = 'before-restart'")
    console.send_signal(signal.SIGTERM)
    assert console.wait(timeout=15) == 0
    b.wait(
        "console",
        "!window.__console.client.connected && document.querySelector('#conn-banner').classList.contains('show')",
    )
    shot("console", "console_agent_down")
    procs.start("console.ws_agent.restarted", console_argv, env=os.environ | py_env)
    wait_port(console_port, timeout=START_S)
    restarted = b.do("eval", page="console", js="performance.now()")
    b.wait(
        "console",
        f"window.__loadMarker === 'before-restart' && window.__console.client.connected && "
        f"window.__console.client.reconnects >= 1 && window.__console.robots.get('r1').lastSeen > {restarted} "
        f"&& window.__console.robots.get('r2').lastSeen > {restarted}",
        START_S,
    )
    b.wait("console", "!document.querySelector('#conn-banner').classList.contains('show')")

    # 8. Nothing left 127.0.0.1, and the pages ran without script errors.
    report = b.do("report")
    assert report["external"] == [], report["external"]
    assert report["notFound"] == [], report["notFound"]  # e.g. /favicon.ico on "/" and the panel
    assert report["localRequests"] > 10
    page_errors = [e for e in report["errors"] if "pageerror" in e]
    assert page_errors == [], page_errors
