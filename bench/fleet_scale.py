#!/usr/bin/env python3
"""Fleet scale benchmark: N robots' own nats-servers linked as leaf nodes to one control server's hub.

Real parts, as a site runs them: the hub and every robot's nats-server with the secured configs the demo
renders (demo/nats_site.py -> site_setup/nats_config.py: one hub user per robot, JetStream on each robot in
its own domain), each robot's ``EVENTS_<id>``/``LOGS_<id>`` streams (messaging/streams.py), the hub's
``FLEET_EVENTS`` sourcing every ``EVENTS_<id>`` (created as the control nats_bridge does; the bridge's ROS
mirror itself is not run), and the installed control nodes ws_agent (fleet mode), fleet_registry (KV
registry, ``FLEET_LOGS`` sourcing every ``LOGS_<id>``) and jobs_service, logged in as their service users.

The robots are synthetic (no ROS): a few processes of nats-py (``--role robots``), each robot publishing on
its own server what its nodes would: telemetry at the bridge's rate caps (config/robot.yaml: odom 20 Hz, imu
10, scan 5 with 360 ranges, cmd_vel 10, battery 1; msgpack bodies shaped like the messages, with the
envelope headers), health snapshots 1 Hz, presence every 5 s (robot_agent's JSON announcement), a log record
a second, and an alert every ``--alert-period`` s through JetStream with a ``Nats-Msg-Id`` (as the health
monitor does) stamped with the robot's wall clock. ``--deploy`` adds Mosquitto and one IoT-Jobs device per
robot (deploy_service's own protocol code, deploy/iot_jobs_client.py, over a synthetic engine that
reports the package installed after 0.5 s) and times one job to every robot.

The synthetic robots also send the bridge's decimated overview copy of odometry (``robots.<id>.overview.odom``
at ``out.odom.overview_rate_hz``, 2 Hz), which the console's ws_agent takes for overview clients.

Console: ``--clients`` WebSocket clients (bench/fleet_console.mjs) subscribe what the console's fleet
overview does. Measured over ``--duration`` s: CPU and RSS of the hub nats-server and of each control node,
alert latency robot -> console p50/p99 and delivery, FLEET_EVENTS completeness, registry freshness (age
of each robot's record in fleet.registry.list, and how long it lagged a presence the hub already had),
leaf-link bandwidth per robot both ways (hub /leafz).

    . scripts/env.sh && PYTHONPATH=src/robot_platform python bench/fleet_scale.py --robots 100 --deploy --pin
    ... python bench/fleet_scale.py --smoke    # 3 robots, a few seconds: does every path deliver?

``--pin`` (a 2-core machine): the control server's side (hub nats-server, ws_agent, fleet_registry,
jobs_service, Mosquitto) runs on CPU 0, the load generator (robots' nats-servers, synthetic robots, console
clients, this orchestrator) on CPU 1, so the hub is measured on a core of its own and cannot borrow the
robots' one; both sides' CPU and each CPU's busy share are reported.

Bounded: the whole run ends within ``--budget`` s (default 330) whatever the hub does; a phase that does
not finish in time ends the run with the results so far and ``unfinished`` naming the phase. Everything
binds to 127.0.0.1; every process started is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from pathlib import Path
from typing import Any

import msgpack
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))
sys.path.insert(0, str(REPO / "src" / "robot_platform"))
from helpers import free_port, ros_env, wait_port  # noqa: E402
from robot_platform.demo import nats_site  # noqa: E402
from robot_platform.demo.fleet import write_demo_users  # noqa: E402
from robot_platform.launcher import plan  # noqa: E402
from robot_platform.launcher.domains import DomainReservation  # noqa: E402
from robot_platform.launcher.processes import Installation, control_processes, with_params  # noqa: E402
from robot_platform.messaging import streams  # noqa: E402
from robot_platform.ops.registry import LIST_SUBJECT, Announcement  # noqa: E402
from robot_platform.site_setup.nats_config import Endpoint  # noqa: E402

SLOT_S = 0.01  # the robots' publish schedule: 100 slots of 10 ms, each (robot, topic) at a random phase
SLOTS = 100
ANNOUNCE_PERIOD_S = 5.0  # robot_agent's default announce_period_s
SNAPSHOT_TYPE = "robot_platform/health/TreeSnapshot"  # health/node.py (not imported: it needs rclpy)
CONTROL_NODES = ("ws_agent", "fleet_registry", "jobs_service")
# fleet_console.mjs's subscriptions besides one odom per robot: six /robots/*/... and two /fleet/... events
CONSOLE_WILDCARDS = ("battery_state", "health", "alerts", "robot_state", "deploy.status", "deploy.installed",
                     "fleet.registry.events", "jobs.events")  # fmt: skip
# The job's staged rollout: one canary, then the rest at the fastest release rate jobs_service accepts (the
# default, 10 a minute, spreads 100 robots over 10 minutes on purpose: that measures the policy, not us).
ROLLOUT = {"canary": 1, "max_per_minute": 1000}
HUB_CPU, LOAD_CPU = 0, 1  # --pin
HUB_SIDE = ("hub", "mosquitto", *(f"control/{n}" for n in CONTROL_NODES))
# Telemetry that stays on the robot's own server while only the fleet overview watches (no hub-side
# subscriber: the leaf link never carries it). --pin leaves it out unless --local-telemetry: at 100 robots
# it cost the load generator's one core more than the core (1.04 cores, 37 s behind schedule), and it never
# reaches the hub (measured: the leaf links carried the same ~21-28 kbit/s per robot with it).
LOCAL_ONLY = frozenset({"odom", "imu", "scan", "cmd_vel"})  # odom: the full rate; its overview copy is sent
OVERVIEW_RATE_HZ = 2.0  # config/robot.yaml out.odom.overview_rate_hz (the synthetic robots send it too)
STOP_RESERVE_S = 25.0  # of the budget: stopping every process (terminate, 15 s, kill)


# ------------------------------------------------------------------------------------ synthetic robots
def _stamp(t: float) -> dict[str, int]:
    return {"sec": int(t), "nanosec": int((t % 1) * 1e9)}


def telemetry_bodies(t: float) -> list[tuple[str, str, float, bytes]]:
    """(topic, ROS type, rate Hz, msgpack body) of what the bridge sends at its rate caps."""
    cov = [0.0] * 36
    hdr = {"stamp": _stamp(t), "frame_id": "odom"}
    odom = {"header": hdr, "child_frame_id": "base_link",
            "pose": {"pose": {"position": {"x": 1.0, "y": 2.0, "z": 0.0},
                              "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}, "covariance": cov},
            "twist": {"twist": {"linear": {"x": 0.5, "y": 0.0, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": 0.1}},
                      "covariance": cov}}  # fmt: skip
    vec = {"x": 0.01, "y": 0.02, "z": 9.81}
    imu = {"header": hdr | {"frame_id": "imu"}, "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0},
           "orientation_covariance": [0.0] * 9, "angular_velocity": vec, "angular_velocity_covariance": [0.0] * 9,
           "linear_acceleration": vec, "linear_acceleration_covariance": [0.0] * 9}  # fmt: skip
    scan = {"header": hdr | {"frame_id": "laser"}, "angle_min": -3.14159, "angle_max": 3.12414,
            "angle_increment": 0.017453, "time_increment": 0.0, "scan_time": 0.1, "range_min": 0.1,
            "range_max": 12.0, "ranges": [random.uniform(0.5, 12.0) for _ in range(360)],
            "intensities": []}  # fmt: skip
    twist = {"linear": {"x": 0.5, "y": 0.0, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": 0.1}}
    battery = {"header": hdr | {"frame_id": "base_link"}, "voltage": 24.1, "current": -1.2, "percentage": 0.8,
               "power_supply_status": 2, "present": True}  # fmt: skip
    return [
        ("odom", "nav_msgs/msg/Odometry", 20.0, msgpack.packb(odom)),
        ("imu", "sensor_msgs/msg/Imu", 10.0, msgpack.packb(imu)),
        ("scan", "sensor_msgs/msg/LaserScan", 5.0, msgpack.packb(scan)),
        ("cmd_vel", "geometry_msgs/msg/Twist", 10.0, msgpack.packb(twist)),
        ("battery_state", "sensor_msgs/msg/BatteryState", 1.0, msgpack.packb(battery)),
    ]


def alert_body(rid: str, n: int, active: bool) -> bytes:
    return msgpack.packb({
        "robot_id": rid, "alert_id": f"{rid}-a{(n + 1) // 2}", "code": "BENCH_FAULT", "severity": 2,
        "message": "synthetic fault of bench/fleet_scale.py", "source": "fleet_scale", "active": active,
        "acknowledged": False, "acknowledged_by": "", "values": [], "stamp": _stamp(time.time()),
    })  # fmt: skip


class SyntheticRobot:
    def __init__(self, rid: str, url: str) -> None:
        self.rid, self.url = rid, url
        self.nc: Any = None
        self.seq = 0
        self.sent = 0
        self.alerts_sent = self.alert_errors = self.alert_n = 0
        self.started = time.time()

    async def connect(self) -> None:
        import nats

        self.nc = await nats.connect(self.url, name=f"synthetic-{self.rid}", max_reconnect_attempts=-1)
        await streams.ensure_stream(self.nc, streams.events_stream_config(self.rid))  # the bridge's
        await streams.ensure_stream(self.nc, streams.logs_stream_config(self.rid))  # robot_agent's

    def headers(self, type_name: str, topic: str) -> dict[str, str]:
        self.seq += 1
        now = time.time()
        h = {"Content-Type": "application/msgpack", "Ros-Type": type_name, "Robot-Id": self.rid,
             "Ros-Stamp": f"{now:.9f}", "Rp-Seq": str(self.seq), "Rp-Origin": f"bench{self.rid}",
             "Nats-Msg-Id": f"bench{self.rid}-{self.seq:x}"}  # fmt: skip
        if topic:
            h["Ros-Topic"] = topic
        return h

    async def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        await self.nc.publish(subject, body, headers=headers)
        self.sent += 1

    async def presence(self) -> None:
        a = Announcement(robot_id=self.rid, site="bench", software_version="bench", host=f"host-{self.rid}",
                         uptime_s=time.time() - self.started, capabilities=("deploy",),
                         sent_at=time.time())  # fmt: skip
        await self.publish(f"robots.{self.rid}.presence", a.encode(),
                           {"Content-Type": "application/json", "Robot-Id": self.rid})  # fmt: skip

    async def alert(self, n: int) -> None:
        h = self.headers("robot_platform_interfaces/msg/Alert", "/alerts")
        h["Nats-Msg-Id"] = f"{self.rid}-a{n}"
        try:
            await self.nc.jetstream().publish(f"robots.{self.rid}.alerts", alert_body(self.rid, n, n % 2 == 1),
                                              headers=h, timeout=5.0)  # fmt: skip
            self.alerts_sent += 1
        except Exception:  # counted: the orchestrator reports alert_errors
            self.alert_errors += 1


def start_devices(spec: list[dict[str, Any]], install_s: float) -> list[Any]:
    """Each robot's IoT Jobs device: deploy_service's own protocol code (deploy/iot_jobs_client.py, mutual
    TLS to Mosquitto) over a synthetic engine that accepts the package and reports it installed after
    ``install_s`` (no download, no install: what is timed is the fleet's job path, not a package)."""
    import threading

    from robot_platform.deploy.iot_jobs_client import MqttSettings, start_agent
    from robot_platform.deploy.jobs import Decision, State, Status

    clients = []
    for s in spec:
        if "mqtt" not in s:
            continue
        holder: dict[str, Any] = {}

        def submit(request: Any, rid: str = s["rid"], holder: dict[str, Any] = holder) -> Decision:
            done = Status(rid, request.job_id, request.package_name, request.version, state=State.SUCCEEDED)
            threading.Timer(install_s, holder["agent"].on_status, (done,)).start()
            return Decision(True, request.job_id, State.IN_PROGRESS, "")

        agent, client = start_agent(MqttSettings(**s["mqtt"]), submit)
        holder["agent"] = agent
        clients.append(client)
    return clients


async def run_robots(spec: list[dict[str, Any]], alert_period: float, local: bool = True) -> None:
    """One process of synthetic robots; runs until stdin closes, then prints its counters as JSON.
    ``local`` False: leave out the telemetry no hub-side subscriber takes (LOCAL_ONLY)."""
    robots = [SyntheticRobot(s["rid"], s["url"]) for s in spec]
    await asyncio.gather(*(r.connect() for r in robots))
    devices = start_devices(spec, 0.5)
    table: list[list[tuple[SyntheticRobot, str, str, str, bytes]]] = [[] for _ in range(SLOTS)]
    overview_every = round(SLOTS / OVERVIEW_RATE_HZ)
    for r in robots:
        for topic, type_name, rate, body in telemetry_bodies(time.time()):
            every = max(1, round(SLOTS / rate))
            phase = random.randrange(every)
            for slot in range(phase, SLOTS, every):
                if local or topic not in LOCAL_ONLY:
                    table[slot].append((r, f"robots.{r.rid}.ros.{topic}", type_name, "/" + topic, body))
                if topic == "odom" and (slot - phase) % overview_every == 0:  # the bridge's copy, same message
                    table[slot].append((r, f"robots.{r.rid}.overview.{topic}", type_name, "/" + topic, body))
    print("READY", flush=True)
    stop, alerting = asyncio.Event(), asyncio.Event()

    def on_stdin() -> None:  # "alerts" starts the alerts (once the console listens); end of input stops
        (alerting if sys.stdin.readline() else stop).set()

    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), on_stdin)
    offsets = {r.rid: random.uniform(0, 1) for r in robots}
    tasks: set[asyncio.Task[Any]] = set()
    start, tick = time.monotonic(), 0
    while not stop.is_set():
        for r, subject, type_name, topic, body in table[tick % SLOTS]:
            await r.publish(subject, body, r.headers(type_name, topic))
        if tick % SLOTS == 0:
            second = tick // SLOTS
            for r in robots:
                snapshot = msgpack.packb({"status": "ok", "tick": second, "checks": {"battery": "ok", "scan": "ok"}})
                await r.publish(f"robots.{r.rid}.health", snapshot, r.headers(SNAPSHOT_TYPE, ""))
                rec = msgpack.packb({"stamp": _stamp(time.time()), "level": 20, "name": "bench", "msg": "tick",
                                     "file": "fleet_scale.py", "function": "run", "line": 1})  # fmt: skip
                await r.publish(f"robots.{r.rid}.logs.info", rec, r.headers("rcl_interfaces/msg/Log", "/rosout"))
        for r in robots:  # presence and alerts at their periods, each robot at its own offset
            t_now = (tick * SLOT_S) + offsets[r.rid] * ANNOUNCE_PERIOD_S
            if tick == 0 or int(t_now / ANNOUNCE_PERIOD_S) != int((t_now - SLOT_S) / ANNOUNCE_PERIOD_S):
                await r.presence()
            t_alert = (tick * SLOT_S) + offsets[r.rid] * alert_period
            if alerting.is_set() and int(t_alert / alert_period) != int((t_alert - SLOT_S) / alert_period):
                r.alert_n += 1
                task = asyncio.create_task(r.alert(r.alert_n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * SLOT_S - time.monotonic()))
    await asyncio.gather(*tasks, return_exceptions=True)
    late = time.monotonic() - (start + tick * SLOT_S)
    for r in robots:
        await r.nc.drain()
    for client in devices:
        client.close()
    print(json.dumps({"sent": sum(r.sent for r in robots), "alerts": sum(r.alerts_sent for r in robots),
                      "alert_errors": sum(r.alert_errors for r in robots), "late_s": late,
                      "seconds": tick * SLOT_S}), flush=True)  # fmt: skip


# ------------------------------------------------------------------------------------ orchestration
class Site:
    """The hub, the robots' servers, the control nodes and the load processes; ``close`` stops them all."""

    def __init__(self, tmp: Path, robots: int, pin: bool = False, deadline: float = float("inf")) -> None:
        self.tmp, self.procs, self.named = tmp, [], {}
        self.pin, self.deadline = pin, deadline
        self.closed = False
        self.ids = [f"r{i}" for i in range(1, robots + 1)]
        self.hub_port, self.hub_monitor, self.leaf_port, self.ws_port = (free_port() for _ in range(4))
        self.robot_ports = {rid: free_port() for rid in self.ids}
        hub = Endpoint(port=self.hub_port, monitor_port=self.hub_monitor)
        self.nats = nats_site.prepare(tmp, {rid: (port, 0) for rid, port in self.robot_ports.items()}, hub,
                                      self.leaf_port)  # fmt: skip
        self.control_password = self.nats.password_files["control"].read_text().strip()
        self.domain = DomainReservation()

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen:
        log = open(self.tmp / f"{name.replace('/', '_')}.log", "wb")  # noqa: SIM115 - closed with the process
        if self.pin:  # taskset execs the program: same pid, every thread and child on that CPU
            cpu = HUB_CPU if name in HUB_SIDE else LOAD_CPU
            argv = ["taskset", "-c", str(cpu), *argv]
        proc = subprocess.Popen(argv, stdout=kw.pop("stdout", log), stderr=log, env=env, **kw)
        self.procs.append(proc)
        self.named[name] = proc
        return proc

    def start_servers(self) -> None:
        exe = nats_site.nats_server_executable()
        self.start("hub", [exe, "-c", str(self.nats.hub_conf)])
        wait_port(self.hub_port, 20)
        # One Go scheduler thread per robot server: each stands for a robot's own machine; a hundred of them
        # sharing this one keep their runtime overhead down so the hub is what gets measured.
        env = None
        for rid in self.ids:
            self.start(f"nats-{rid}", [exe, "-c", str(self.nats.robot_confs[rid])], env)
        for rid in self.ids:
            wait_port(self.robot_ports[rid], 30)
        wait_until(lambda: len(self.monitor("leafz").get("leafs", [])) >= len(self.ids),
                   min(60 + len(self.ids), self.left()), "every robot's leaf link on the hub")  # fmt: skip

    def left(self, reserve: float = 0.0) -> float:
        """Seconds of the run's budget left (minus ``reserve``), at least 1."""
        return max(1.0, self.deadline - STOP_RESERVE_S - reserve - time.monotonic())

    def start_mosquitto(self) -> dict[str, str]:
        """The demo's Mosquitto (mutual TLS, the shipped ACL) with a certificate per robot; returns
        jobs_service's MQTT parameters."""
        from robot_platform.demo import site_services

        ports = site_services.SitePorts(mqtt=free_port())
        self.site = site_services.prepare(self.tmp, self.ids, Installation.find().share, ports)
        spec = site_services.processes(self.site)[0]
        self.start("mosquitto", spec.argv)
        wait_port(ports.mqtt, 20)
        return site_services.jobs_params(self.site)

    def mqtt_settings(self, rid: str) -> dict[str, Any]:
        """A robot's IoT Jobs device settings (deploy/iot_jobs_client.MqttSettings fields)."""
        pki = self.site.pki
        return {"endpoint": "127.0.0.1", "port": self.site.ports.mqtt, "ca_file": str(pki / "ca.crt"),
                "cert_file": str(pki / "robots" / f"{rid}.crt"), "key_file": str(pki / "robots" / f"{rid}.key"),
                "thing_name": rid, "client_id": f"deploy-{rid}"}  # fmt: skip

    def start_control(self, users_file: Path, extra: dict[str, dict[str, str]], wait: bool = True) -> None:
        values = plan.defaults(plan.CONTROL_ARGUMENTS) | {
            "start_nats": "false", "enable_bridge": "false", "nats_url": f"nats://127.0.0.1:{self.hub_port}",
            "ws_port": str(self.ws_port), "users_file": str(users_file), "jobs_store": str(self.tmp / "jobs.sqlite3"),
            "jobs_metrics_port": "0", "fleet_robots": "[" + ",".join(self.ids) + "]", "log_level": "warn",
        }  # fmt: skip
        # the installed nodes import the installed package (its entry points), whatever PYTHONPATH we run with
        installed = [str(p) for p in sorted((REPO / "install").glob("*/lib/python3*/site-packages"))]
        env = ros_env(self.domain.domain_id, {"PYTHONPATH": os.pathsep.join(installed)})
        for spec in control_processes(values, Installation.find()):
            node = spec.name.split("/", 1)[1]
            spec = with_params(spec, self.nats.node_credentials(node) | extra.get(node, {}))
            self.start(spec.name, spec.argv, env | spec.env)
        if wait:
            wait_port(self.ws_port, 90)

    def leafs(self) -> list[dict[str, Any]]:
        return self.monitor("leafz").get("leafs", [])

    def monitor(self, what: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.hub_monitor}/{what}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())

    def close(self) -> None:
        """Stop every process (terminate, then kill after 15 s); idempotent."""
        if self.closed:
            return
        self.closed = True
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.domain.release()


def wait_until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class Observer:
    """The operator's view over NATS (user ``control``): latest presence per robot, registry samples."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.latest: dict[str, tuple[float, float]] = {}  # robot -> (sent_at, monotonic when seen on the hub)
        self.ages: list[float] = []
        self.behind: list[float] = []
        self.list_ms: list[float] = []
        self.history_ms: list[float] = []
        self.online = 0
        self.list_timeouts = self.list_no_responders = 0
        self.history_watch_failures: list[str] = []
        self.history_task: Any = None

    async def connect(self) -> Any:
        import nats

        nc = await nats.connect(f"nats://127.0.0.1:{self.site.hub_port}", user="control",
                                password=self.site.control_password, connect_timeout=10)  # fmt: skip

        async def on_presence(msg: Any) -> None:
            body = json.loads(msg.data)
            self.latest[body["robot_id"]] = (body["sent_at"], time.monotonic())

        await nc.subscribe("robots.*.presence", cb=on_presence)

        async def on_event(msg: Any) -> None:  # alert -> FLEET_EVENTS on the hub (the alert history)
            stamp = msgpack.unpackb(msg.data).get("stamp")
            if isinstance(stamp, dict):
                self.history_ms.append((time.time() - stamp["sec"] - stamp["nanosec"] / 1e9) * 1000)

        async def watch_history() -> None:  # a hub whose JetStream API is slow must not stop the run
            for _ in range(10):
                try:
                    await nc.jetstream(timeout=30).subscribe(
                        "robots.*.alerts", stream=streams.EVENTS_HUB_STREAM, cb=on_event, ordered_consumer=True
                    )
                    return
                except Exception as exc:  # nats TimeoutError, a JetStream API error: counted, retried
                    self.history_watch_failures.append(f"{type(exc).__name__}: {exc}")

        self.history_task = asyncio.create_task(watch_history())
        return nc

    async def registry(self, nc: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        t0 = time.monotonic()
        reply = msgpack.unpackb((await nc.request(LIST_SUBJECT, msgpack.packb({}), timeout=timeout)).data)
        self.list_ms.append((time.monotonic() - t0) * 1000)
        return reply["result"]["robots"]

    async def sample(self, nc: Any) -> None:
        import nats

        try:
            records = await self.registry(nc)
        except TimeoutError:  # a registry too busy to answer within 10 s: counted, the run goes on
            self.list_timeouts += 1
            return
        except nats.errors.NoRespondersError:  # not serving yet (still opening its bucket): counted
            self.list_no_responders += 1
            return
        now, mono = time.time(), time.monotonic()
        self.online = sum(1 for r in records if r["status"] == "online")
        for r in records:
            sent = r["last"].get("sent_at", 0.0)
            self.ages.append(now - sent)
            latest = self.latest.get(r["robot_id"])
            if latest and latest[0] > sent + 1e-6:  # the hub had a newer announcement than the registry shows
                self.behind.append(mono - latest[1])
            else:
                self.behind.append(0.0)


def leaf_rates(before: list[dict[str, Any]] | None, after: list[dict[str, Any]] | None, seconds: float) -> Any:
    """Mean bytes per second per robot over its leaf link, each way (the hub's /leafz counters; a link
    that reconnected in between restarts its counters and is left out); None without both readings."""
    if before is None or after is None:
        return None
    old = {leaf["name"]: leaf for leaf in before}
    pairs = [(old[leaf["name"]], leaf) for leaf in after
             if leaf["name"] in old and leaf["in_bytes"] >= old[leaf["name"]]["in_bytes"]]  # fmt: skip
    if not pairs:
        return {"robot_to_hub": float("nan"), "hub_to_robot": float("nan"), "links": 0}
    up = sum(b["in_bytes"] - a["in_bytes"] for a, b in pairs) / len(pairs) / seconds
    down = sum(b["out_bytes"] - a["out_bytes"] for a, b in pairs) / len(pairs) / seconds
    return {"robot_to_hub": round(8 * up / 1000, 1), "hub_to_robot": round(8 * down / 1000, 1), "links": len(pairs)}


async def probe(results: dict[str, Any], what: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` off the event loop (the observer's NATS link keeps being served); None if it failed or
    timed out (a hub or agent too busy to answer its monitoring port), noted in ``probe_failures``."""
    try:
        return await asyncio.to_thread(fn, *args)
    except (OSError, ValueError) as exc:  # socket timeouts and URLError are OSErrors
        results.setdefault("probe_failures", []).append(f"{what}: {type(exc).__name__}: {exc}")
        return None


def agent_stats(port: int) -> dict[str, Any]:
    """ws_agent's /healthz counters (fan-out: received from NATS, offered to clients, dropped)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=15) as resp:
        return json.loads(resp.read())


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def cpu_busy(before: list[Any], after: list[Any]) -> list[float]:
    """Busy share (%) of each CPU between two psutil.cpu_times(percpu=True) readings, whoever used it."""
    busy = []
    for a, b in zip(before, after, strict=True):
        total = sum(b) - sum(a)
        idle = (b.idle - a.idle) + (getattr(b, "iowait", 0.0) - getattr(a, "iowait", 0.0))
        busy.append(round(100.0 * (1.0 - idle / total), 1) if total > 0 else float("nan"))
    return busy


def cpu_s(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


async def ensure_fleet_events(site: Site) -> None:
    """FLEET_EVENTS on the hub sourcing every EVENTS_<id>, as the control nats_bridge makes it."""
    import nats

    nc = await nats.connect(
        f"nats://127.0.0.1:{site.hub_port}", user="control", password=site.control_password, connect_timeout=10
    )
    await streams.ensure_stream(nc, streams.events_hub_stream_config(site.ids))
    await nc.close()


async def stream_state(nc: Any, name: str) -> tuple[int, int, int]:
    """(messages, sources with lag > 0, sources inactive for > 10 s) of a hub stream."""
    try:
        info = await nc.jetstream(timeout=15).stream_info(name)
    except Exception:  # the hub's JetStream API did not answer: -1 (reported, and check() fails the run)
        return -1, -1, -1
    sources = info.sources or []
    lagging = sum(1 for s in sources if (s.lag or 0) > 0)
    stale = sum(1 for s in sources if s.active is None or s.active > 10e9)
    return info.state.messages, lagging, stale


async def measure(args: argparse.Namespace, site: Site, results: dict[str, Any]) -> None:
    """Fills ``results`` as it goes (a run cut by the budget keeps what was measured)."""
    phases, t_phase = results["phase_s"], time.monotonic()

    def phase(name: str) -> None:
        nonlocal t_phase
        phases[name] = round(time.monotonic() - t_phase, 1)
        t_phase = time.monotonic()

    users = write_demo_users(site.tmp)
    await ensure_fleet_events(site)
    jobs_mqtt = await asyncio.to_thread(site.start_mosquitto) if args.deploy else {}
    phase("mosquitto")
    site.start_control(users.path, {"jobs_service": jobs_mqtt}, wait=False)  # starts while the robots start
    per = -(-len(site.ids) // args.processes)
    workers = []
    env = dict(os.environ, PYTHONPATH=str(REPO / "src" / "robot_platform"))
    for i in range(0, len(site.ids), per):
        spec = [
            {"rid": rid, "url": f"nats://127.0.0.1:{site.robot_ports[rid]}"}
            | ({"mqtt": site.mqtt_settings(rid)} if args.deploy else {})
            for rid in site.ids[i : i + per]
        ]
        argv = [sys.executable, __file__, "--role", "robots", "--spec", json.dumps(spec),
                "--alert-period", str(args.alert_period),
                "--local-telemetry" if args.local_telemetry else "--no-local-telemetry"]  # fmt: skip
        workers.append(site.start(f"robots{i}", argv, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    for w in workers:
        if (await asyncio.to_thread(w.stdout.readline)).strip() != "READY":
            raise RuntimeError("a robot process did not start: see its log in " + str(site.tmp))
    wait_port(site.ws_port, min(90, site.left()))
    phase("robots_and_control_nodes")
    obs = Observer(site)
    nc = await obs.connect()
    t_wait = time.monotonic()
    leaf_idle0 = await probe(results, "leafz", site.leafs)
    while True:  # every robot online in the registry (its first announcement went through)
        await obs.sample(nc)
        if obs.online >= len(site.ids):
            break
        if time.monotonic() - t_wait > min(60 + len(site.ids), site.left(60)):
            raise TimeoutError(f"registry shows {obs.online}/{len(site.ids)} robots online")
        await asyncio.sleep(0.5)
    await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - t_wait)))  # at least 5 s of link traffic
    results["leaf_kbit_s_per_robot_no_console"] = leaf_rates(leaf_idle0, await probe(results, "leafz", site.leafs),
                                                             time.monotonic() - t_wait)  # fmt: skip
    phase("registry_online")
    robots_file = site.tmp / "robots.json"
    robots_file.write_text(json.dumps(site.ids))
    console = site.start("console", ["node", str(REPO / "bench" / "fleet_console.mjs"),
                                     f"ws://127.0.0.1:{site.ws_port}/ws?token={users.tokens['admin']}",
                                     str(robots_file), str(args.clients)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    ready = await asyncio.wait_for(asyncio.to_thread(console.stdout.readline), min(120, site.left(60)))
    if ready.strip() != "READY":
        raise RuntimeError("console clients did not start")
    # READY means the subscribe ops were sent; alerts start once ws_agent holds every subject (else the
    # first alerts of a loaded run reach the agent before its subscription and are missed by design)
    expected = len(site.ids) + len(CONSOLE_WILDCARDS)
    t_subs = time.monotonic()
    held = 0
    while held < expected:
        if time.monotonic() - t_subs > min(60, site.left(60)):
            raise TimeoutError(f"ws_agent holds {held}/{expected} subjects")
        stats = await probe(results, "ws_agent healthz", agent_stats, site.ws_port)
        held = stats["hub"]["subjects"] if stats else held
        await asyncio.sleep(0.25)
    await asyncio.sleep(1.0)  # the agent's NATS subscriptions follow its index
    phase("console")
    for w in workers:
        w.stdin.write("alerts\n")
        w.stdin.flush()
    await asyncio.sleep(args.warmup)
    obs.ages.clear(), obs.behind.clear(), obs.list_ms.clear()
    watched = {"hub": site.named["hub"].pid} | {n: site.named[f"control/{n}"].pid for n in CONTROL_NODES}
    if "mosquitto" in site.named:
        watched["mosquitto"] = site.named["mosquitto"].pid
    ps = {name: psutil.Process(pid) for name, pid in watched.items()}
    robot_servers = [psutil.Process(site.named[f"nats-{rid}"].pid) for rid in site.ids]
    loads = [psutil.Process(w.pid) for w in workers] + [psutil.Process(console.pid)]
    cpu0 = {n: cpu_s(p) for n, p in ps.items()}
    rob0, load0 = sum(cpu_s(p) for p in robot_servers), sum(cpu_s(p) for p in loads)
    leaf0 = await probe(results, "leafz", site.leafs)
    agent0 = await probe(results, "ws_agent healthz", agent_stats, site.ws_port)
    varz0 = await probe(results, "varz", site.monitor, "varz")
    console_ps = psutil.Process(console.pid)
    console_cpu0 = cpu_s(console_ps)
    rss_peak = {n: 0 for n in ps}
    percpu0 = psutil.cpu_times(percpu=True)
    t0 = time.monotonic()
    duration = min(args.duration, site.left(90 if args.deploy else 60))  # room for the job, settle and drain
    results["measured_s"] = round(duration, 1)
    while time.monotonic() - t0 < duration:
        await obs.sample(nc)
        for n, p in ps.items():
            rss_peak[n] = max(rss_peak[n], p.memory_info().rss)
        await asyncio.sleep(1.0)
    wall = time.monotonic() - t0
    percpu1 = psutil.cpu_times(percpu=True)
    phase("measure")
    cpu = {n: (cpu_s(p) - cpu0[n]) / wall for n, p in ps.items()}
    leaf1 = await probe(results, "leafz", site.leafs)
    agent1 = await probe(results, "ws_agent healthz", agent_stats, site.ws_port)
    varz1 = await probe(results, "varz", site.monitor, "varz")
    results["ws_agent"] = {"console_clients_cores": round((cpu_s(console_ps) - console_cpu0) / wall, 3)}
    if agent0 and agent1:
        results["ws_agent"] |= {k: agent1["hub"][k] - agent0["hub"][k] for k in ("received", "offered", "dropped")}
        results["ws_agent"]["nats_slow_consumer"] = (
            agent1["nats"]["dropped_slow_consumer"] - agent0["nats"]["dropped_slow_consumer"])  # fmt: skip
    if varz0 and varz1:
        results["hub_slow_consumers"] = varz1.get("slow_consumers", 0) - varz0.get("slow_consumers", 0)
    results["cpu_cores"] = {n: round(v, 3) for n, v in cpu.items()}
    results["control_total_cores"] = round(sum(cpu.values()), 3)  # hub side (CPU 0 with --pin)
    results["rss_mb"] = {n: round(v / 2**20, 1) for n, v in rss_peak.items()}
    results["robot_servers"] = {
        "cores": round((sum(cpu_s(p) for p in robot_servers) - rob0) / wall, 3),
        "rss_mb_each": round(sum(p.memory_info().rss for p in robot_servers) / len(robot_servers) / 2**20, 1),
    }
    results["load_processes_cores"] = round((sum(cpu_s(p) for p in loads) - load0) / wall, 3)
    results["load_side_cores"] = round(results["robot_servers"]["cores"] + results["load_processes_cores"], 3)
    results["pinned"] = bool(args.pin)
    results["cpu_busy_percent"] = cpu_busy(percpu0, percpu1)  # per CPU, every process of the machine
    results["registry_list_timeouts"] = obs.list_timeouts
    results["registry_list_no_responders"] = obs.list_no_responders
    results["hub_fds"] = ps["hub"].num_fds()
    results["leaf_kbit_s_per_robot"] = leaf_rates(leaf0, leaf1, wall)
    results["registry"] = {
        "online": obs.online, "age_p50_s": round(pct(obs.ages, 0.5), 2), "age_max_s": round(max(obs.ages), 2),
        "behind_p99_s": round(pct(obs.behind, 0.99), 2), "behind_max_s": round(max(obs.behind), 2),
        "list_p50_ms": round(pct(obs.list_ms, 0.5), 1), "list_p99_ms": round(pct(obs.list_ms, 0.99), 1),
    }  # fmt: skip
    if args.deploy:
        c0, t_dep = {n: cpu_s(p) for n, p in ps.items()}, time.monotonic()
        results["deploy"] = await deploy_job(nc, site.ids, timeout_s=min(300.0, site.left(45)))
        results["deploy"]["cpu_cores"] = {  # the hub side while the job runs (alerts keep flowing)
            n: round((cpu_s(p) - c0[n]) / max(1e-9, time.monotonic() - t_dep), 3) for n, p in ps.items()
        }
        phase("deploy")
    # stop the robots, let the last alerts through, then read the clients and the hub's streams
    counters = []
    for w in workers:
        w.stdin.close()
    for w in workers:
        line = await asyncio.wait_for(asyncio.to_thread(w.stdout.readline), site.left(30))
        counters.append(json.loads(line or "{}"))
    alerts_sent = sum(c.get("alerts", 0) for c in counters)
    results["robots_sent"] = {"msgs_per_s": round(sum(c.get("sent", 0) for c in counters) / max(
        1e-9, max(c.get("seconds", 0) for c in counters)), 0), "alerts": alerts_sent,
        "alert_errors": sum(c.get("alert_errors", 0) for c in counters),
        "schedule_late_s": round(max(c.get("late_s", 0) for c in counters), 2)}  # fmt: skip
    t_settle = time.monotonic()
    while True:
        events = await stream_state(nc, streams.EVENTS_HUB_STREAM)
        if events[0] >= alerts_sent or time.monotonic() - t_settle > min(30, site.left(30)):
            break
        await asyncio.sleep(0.5)
    logs = await stream_state(nc, streams.LOGS_HUB_STREAM)
    results["fleet_events"] = {"messages": events[0], "alerts_sent": alerts_sent, "lagging_sources": events[1],
                               "settle_s": round(time.monotonic() - t_settle, 1),
                               "latency_p50_ms": round(pct(obs.history_ms, 0.5), 1),
                               "latency_p99_ms": round(pct(obs.history_ms, 0.99), 1),
                               "latency_max_ms": round(max(obs.history_ms, default=float("nan")), 1),
                               "watch_failures": obs.history_watch_failures}  # fmt: skip
    results["fleet_logs"] = {"messages": logs[0], "sources_lagging": logs[1]}
    phase("settle")
    t_drain = time.monotonic()
    while time.monotonic() - t_drain < min(60, site.left(10)):  # the clients' last alerts (queued in ws_agent)
        console.stdin.write("count\n")
        console.stdin.flush()
        if json.loads(await asyncio.to_thread(console.stdout.readline))["alerts"] >= alerts_sent * args.clients:
            break
        await asyncio.sleep(0.5)
    phase("console_drain")
    console.stdin.close()
    res = json.loads(await asyncio.wait_for(asyncio.to_thread(console.stdout.readline), site.left()))
    results["console"] = {"alerts_received": res["alerts"], "alerts_expected": alerts_sent * args.clients,
                          "p50_ms": res["p50"], "p99_ms": res["p99"], "max_ms": res["max"],
                          "msgs_per_client": round(sum(res["counts"]) / max(1, len(res["counts"])), 0),
                          "closed": res["closed"], "failed_to_connect": res["failed"]}  # fmt: skip
    await nc.close()


async def run_bounded(args: argparse.Namespace, site: Site, results: dict[str, Any]) -> None:
    """``measure`` within the budget. Whatever ends it (done, out of time, an error), the processes are
    stopped before the event loop closes: a reader thread blocked on a process's pipe then sees EOF (the
    loop waits for its threads at exit)."""
    try:
        await asyncio.wait_for(measure(args, site, results), timeout=site.left())
    except BaseException as exc:
        done = list(results["phase_s"])
        results["unfinished"] = f"after phase {done[-1] if done else 'start'}: {type(exc).__name__}: {exc}"
        raise
    finally:
        await asyncio.to_thread(site.close)


async def deploy_job(nc: Any, targets: list[str], timeout_s: float = 300.0) -> dict[str, Any]:
    """One deployment job to every robot through jobs_service (NATS jobs.create, as the console does):
    seconds until every execution SUCCEEDED, and when the first and the median robot finished."""

    async def call(op: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = msgpack.unpackb((await nc.request(f"jobs.{op}", msgpack.packb(body), timeout=30)).data)
        if not reply.get("ok"):
            raise RuntimeError(f"jobs.{op}: {reply}")
        return reply["result"]

    document = {
        "operation": "deploy",
        "package_name": "bench_app",
        "version": "1.0.0",
        "kind": "app",
        "sha256": "0" * 64,
        "signature": "bench",
        "artifact_uri": "s3://packages/bench_app-1.0.0.tar.gz",
    }
    t0 = time.monotonic()
    job = await call(
        "create", {"document": document, "targets": targets, "description": "fleet_scale", "rollout": ROLLOUT}
    )
    created = time.monotonic() - t0
    job_id = job["job_id"]
    done: dict[str, float] = {}
    get_timeouts = 0
    while time.monotonic() - t0 < timeout_s:
        try:
            job = await call("get", {"job_id": job_id})
        except TimeoutError:  # nats-py's timeout: jobs_service busy (counted, asked again)
            get_timeouts += 1
            continue
        for ex in job["executions"]:
            if ex["status"] == "SUCCEEDED" and ex["thing"] not in done:
                done[ex["thing"]] = time.monotonic() - t0
        if len(done) == len(targets) or all(ex["status"] not in ("QUEUED", "IN_PROGRESS")
                                             for ex in job["executions"]):  # fmt: skip
            break
        await asyncio.sleep(0.25)
    times = sorted(done.values())
    return {
        "targets": len(targets),
        "succeeded": len(done),
        "create_s": round(created, 2),
        "first_s": round(times[0], 2) if times else None,
        "median_s": round(pct(times, 0.5), 2),
        "all_s": round(times[-1], 2) if len(done) == len(targets) else None,
        "counts": job.get("counts"),
    }


def check(results: dict[str, Any]) -> list[str]:
    """What must hold at any size: every path delivered (the smoke run fails on any of these)."""
    bad = []
    c, ev = results["console"], results["fleet_events"]
    if not results["robots_sent"]["alerts"]:
        bad.append("no alert was stored on any robot")
    if c["alerts_received"] < c["alerts_expected"]:
        bad.append(f"console clients got {c['alerts_received']} of {c['alerts_expected']} alerts")
    if ev["messages"] < ev["alerts_sent"]:
        bad.append(f"FLEET_EVENTS holds {ev['messages']} of {ev['alerts_sent']} alerts")
    if not results["fleet_logs"]["messages"]:
        bad.append("FLEET_LOGS holds no log record")
    if results["registry"]["online"] < results["robots"]:
        bad.append(f"registry shows {results['registry']['online']}/{results['robots']} online")
    if "deploy" in results and results["deploy"]["succeeded"] < results["deploy"]["targets"]:
        bad.append(f"deployment job: {results['deploy']['succeeded']}/{results['deploy']['targets']} succeeded")
    if c["failed_to_connect"]:
        bad.append(f"{c['failed_to_connect']} console clients could not connect")
    if not c["msgs_per_client"]:
        bad.append("console clients received nothing")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", choices=["orchestrator", "robots"], default="orchestrator")
    ap.add_argument("--spec", default="[]", help="(robots role) JSON list of {rid, url}")
    ap.add_argument("--robots", type=int, default=10)
    ap.add_argument("--processes", type=int, default=4, help="processes of synthetic robots")
    ap.add_argument("--clients", type=int, default=5, help="console WebSocket clients")
    ap.add_argument("--alert-period", type=float, default=10.0, help="s between alerts of one robot")
    ap.add_argument("--duration", type=float, default=60.0, help="measurement window, s")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--deploy", action="store_true", help="Mosquitto + IoT Jobs devices: time a job to all")
    ap.add_argument("--smoke", action="store_true", help="3 robots, a few seconds (with --deploy)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--pin", action="store_true", help="hub side on CPU 0, load generator on CPU 1 (taskset)")
    ap.add_argument(
        "--local-telemetry",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also send the robot-local telemetry (LOCAL_ONLY; default: yes, no with --pin)",
    )
    ap.add_argument("--budget", type=float, default=330.0, help="the whole run ends within this many s")
    args = ap.parse_args()
    if args.local_telemetry is None:
        args.local_telemetry = not args.pin
    if args.role == "robots":
        asyncio.run(run_robots(json.loads(args.spec), args.alert_period, args.local_telemetry))
        return 0
    if shutil.which("node") is None or not (REPO / "test" / "browser" / "node_modules" / "ws").is_dir():
        print("needs node and `npm ci --prefix test/browser`", file=sys.stderr)
        return 2
    if args.smoke:
        args.robots, args.processes, args.clients, args.alert_period = 3, 1, 2, 1.0
        args.duration, args.warmup, args.deploy = 3.0, 1.0, True
    if args.pin:
        if len(os.sched_getaffinity(0)) < 2 or shutil.which("taskset") is None:
            print("--pin needs 2 CPUs and taskset (util-linux)", file=sys.stderr)
            return 2
        os.sched_setaffinity(0, {LOAD_CPU})  # this orchestrator is load side; hub-side processes get CPU 0
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    started = time.monotonic()
    results: dict[str, Any] = {"robots": args.robots, "clients": args.clients, "pinned": args.pin,
                               "local_telemetry": args.local_telemetry, "phase_s": {}}  # fmt: skip
    failed = None
    with tempfile.TemporaryDirectory(prefix="rp-fleet-scale-") as tmp:
        site = Site(Path(tmp), args.robots, args.pin, started + args.budget)
        try:
            t_servers = time.monotonic()
            site.start_servers()
            results["phase_s"]["servers"] = round(time.monotonic() - t_servers, 1)
            asyncio.run(run_bounded(args, site, results))
        except (Exception, asyncio.CancelledError) as exc:  # reported with the results so far; Ctrl-C ends it
            failed = exc
            results.setdefault("unfinished", f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
            for log in sorted(Path(tmp).glob("*.log")):
                tail = log.read_bytes()[-600:].decode(errors="replace").strip()
                if tail:
                    print(f"--- {log.name}\n{tail}", file=sys.stderr)
        finally:
            site.close()
    results["loadavg_before"] = load_before
    results["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    results["run_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    bad = [f"run not finished: {results['unfinished']}"] if failed is not None else check(results)
    for line in bad:
        print("FAIL:", line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
