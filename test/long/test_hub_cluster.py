"""The clustered hub under kill -9, with the whole control side running (a few minutes).

Real parts: 3 hub nats-servers (site_setup/nats_config.py ``HubCluster``, the secured users on every
node), robot r1's nats-server as a leaf listing all three, r1's ``robot_agent`` (presence, logs), two
``fleet_registry`` and two ``jobs_service`` processes with ``ha: true`` (active/standby, lease in NATS KV),
the console's ``ws_agent`` (fleet mode, user console), Mosquitto (mTLS, the shipped ACL) and twelve
IoT Jobs devices (the platform's device agent, deploy/iot_jobs_client.py, with an engine that takes
JOB_S per deployment). r1 raises an alert every ALERT_PERIOD_S the whole time.

While a staged rollout to the twelve devices (one every 6 s after the canary) is in progress:

1. the hub node that the console's ws_agent is connected to, made the leader of FLEET_EVENTS and of the
   jobs state and lease buckets first (leader step-downs), is killed with -9: the ws_agent is connected
   to another node within 5 s by itself, the fleet API keeps answering;
2. while that node is still dead, the *active* jobs_service and the *active* fleet_registry are killed
   with -9 too: the standbys take their leases (measured), the rollout continues to COMPLETED with every
   execution SUCCEEDED, and the registry still lists r1 online with its first-seen time unchanged;
3. the node is restarted on its store: every replicated stream (FLEET_EVENTS, FLEET_LOGS, the registry,
   jobs state and lease buckets) lists it as a current replica again;
4. every alert raised before, during and after is in FLEET_EVENTS exactly once.

The figures are printed (``-s``) for the README's "Clustered hub" section.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import nats
import pytest

from helpers import REPO, DomainReservation, free_port, ros_env, wait_for, wait_port
from hub_cluster import NODES, ClusteredHub, all_current, move_leader, quiet, stream_ids, until
from robot_platform.deploy.iot_jobs_client import MqttSettings, start_agent
from robot_platform.deploy.jobs import Decision, State, Status
from robot_platform.messaging import streams
from robot_platform.messaging.envelope import Envelope
from robot_platform.messaging.inbox import connect_options
from robot_platform.messaging.lease import LEASE_BUCKET
from robot_platform.site_setup import certs
from robot_platform.site_setup.mosquitto_config import render_conf, site_overrides
from robot_platform.site_setup.nats_config import write_private

ROBOT = "r1"
THINGS = tuple(f"t{i}" for i in range(1, 13))
JOB_S = 1.5  # a device's deployment
ALERT_PERIOD_S = 0.2
RECONNECT_BOUND_S = 5.0
WAIT_S = 90.0
SRC = str(REPO / "src" / "robot_platform")
DOCUMENT = {"operation": "deploy", "package_name": "hello", "version": "1.0.0", "kind": "function",
            "sha256": "0" * 64, "signature": "c2ln"}  # fmt: skip
LEADERS_ON_VICTIM = (streams.EVENTS_HUB_STREAM, "KV_JOBS_STATE", f"KV_{LEASE_BUCKET}")
STREAMS = (
    streams.EVENTS_HUB_STREAM,
    streams.LOGS_HUB_STREAM,
    "KV_FLEET_REGISTRY",
    "KV_JOBS_STATE",
    f"KV_{LEASE_BUCKET}",
)


class Device:
    """An IoT Jobs device: the platform's device agent over MQTT, an engine that succeeds after JOB_S."""

    def __init__(self, thing: str, secrets: Path, port: int) -> None:
        self.thing = thing
        settings = MqttSettings("127.0.0.1", port, str(secrets / "ca.crt"), str(secrets / "robots" / f"{thing}.crt"),
                                str(secrets / "robots" / f"{thing}.key"), thing, thing)  # fmt: skip
        self.agent, self.client = start_agent(settings, self.submit)

    def submit(self, request: Any) -> Decision:
        threading.Timer(JOB_S, self._succeed, args=(request,)).start()
        return Decision(True, request.job_id, State.IN_PROGRESS, "")

    def _succeed(self, request: Any) -> None:
        status = Status(self.thing, request.job_id, request.package_name, request.version, state=State.SUCCEEDED)
        self.agent.on_status(status)


class Control:
    """The control side's processes (two of each HA service), Mosquitto, the devices."""

    def __init__(self, procs: Any, tmp: Path, hub: ClusteredHub) -> None:
        self.procs, self.tmp, self.hub = procs, tmp, hub
        self.domains = DomainReservation(count=4)
        self.pw = {}
        for user, password in [("control", hub.control_password), *hub.passwords.items()]:
            self.pw[user] = tmp / f"{user}.password"
            write_private(self.pw[user], password)
        self.secrets = tmp / "secrets"
        certs.init_ca(self.secrets)
        for thing in THINGS:
            certs.issue_robot(self.secrets, thing)
        certs.issue(self.secrets, "mosquitto", "mosquitto", server=True, dns=["localhost"], ips=["127.0.0.1"])
        certs.issue(self.secrets, "jobs-service", "jobs-service", server=False)
        self.mqtt_port = free_port()
        (tmp / "mosquitto-data").mkdir()
        overrides = site_overrides(self.mqtt_port, self.secrets, REPO / "config" / "mosquitto" / "acl",
                                   tmp / "mosquitto-data", user="root" if os.geteuid() == 0 else "")  # fmt: skip
        conf = tmp / "mosquitto.conf"
        conf.write_text(render_conf((REPO / "config" / "mosquitto" / "mosquitto.conf").read_text(), overrides))
        procs.start("mosquitto", ["/usr/sbin/mosquitto", "-c", str(conf)])
        wait_port(self.mqtt_port)
        self.ws_port = free_port()

    def env(self, index: int) -> dict[str, str]:
        return ros_env(
            self.domains.domain_id + index, {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
        )

    def node(self, name: str, module: str, params: dict[str, Any], domain: int) -> Any:
        argv = [sys.executable, "-m", module, "--ros-args"]
        for key, value in params.items():
            argv += ["-p", f"{key}:={value}"]
        return self.procs.start(name, argv, env=self.env(domain))

    def registry(self, name: str) -> Any:
        return self.node(name, "robot_platform.ops.registry_node", {
            "nats_url": self.hub.url, "nats_user": "fleet_registry", "nats_password_file": self.pw["fleet_registry"],
            "fleet_robots": f"[{ROBOT}]", "offline_after_s": 6.0, "sweep_period_s": 0.5, "ha": "true",
        }, 0)  # fmt: skip

    def jobs(self, name: str) -> Any:
        return self.node(name, "robot_platform.jobs.node", {
            "store_path": self.tmp / f"{name}.sqlite3", "nats_url": self.hub.url, "nats_user": "jobs",
            "nats_password_file": self.pw["jobs"], "mqtt_endpoint": "127.0.0.1", "mqtt_port": self.mqtt_port,
            "mqtt_ca": self.secrets / "ca.crt", "mqtt_cert": self.secrets / "jobs-service.crt",
            "mqtt_key": self.secrets / "jobs-service.key", "metrics_port": 0, "ha": "true",
        }, 0)  # fmt: skip

    def agent(self) -> Any:
        return self.node("robot_agent", "robot_platform.ops.node", {
            "robot_id": ROBOT, "site": "test-site", "nats_url": self.hub.robot_urls[ROBOT], "announce_period_s": 0.5,
        }, 1)  # fmt: skip

    def console(self) -> Any:
        return self.node("ws_agent", "robot_platform.ws.node", {
            "robot_id": "control", "mode": "fleet", "port": self.ws_port, "nats_url": self.hub.url,
            "nats_user": "console", "nats_password_file": self.pw["console"],
        }, 2)  # fmt: skip


async def call(hub: ClusteredHub, subject: str, body: dict[str, Any], timeout: float = 3.0) -> Any:
    """One request as the control user (a fresh connection, any live node); the result or None."""
    try:
        nc = await asyncio.wait_for(nats.connect(
            hub.url.split(","), connect_timeout=2, max_reconnect_attempts=1, reconnect_time_wait=0.1, error_cb=quiet,
            **connect_options("control", hub.control_password),
        ), 10)  # fmt: skip
    except (nats.errors.Error, OSError, TimeoutError):
        return None
    try:
        reply = msgpack.unpackb((await nc.request(subject, msgpack.packb(body), timeout=timeout)).data)
        return reply.get("result") if reply.get("ok") else None
    except (nats.errors.Error, TimeoutError):
        return None
    finally:
        await nc.close()


async def lease_holder(hub: ClusteredHub, service: str) -> int:
    """The pid of the instance holding ``service``'s lease (0: none)."""
    try:
        nc = await hub.control()
    except (nats.errors.Error, OSError):
        return 0
    try:
        entry = await (await nc.jetstream().key_value(LEASE_BUCKET)).get(service)
        return int((entry.value or b"-0").decode().rsplit("-", 1)[1])
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError, ValueError):
        return 0
    finally:
        await nc.close()


def node_of(hub: ClusteredHub, name_prefix: str) -> int | None:
    """Index of the hub node a client whose connection name starts with ``name_prefix`` is on."""
    for i in range(NODES):
        for conn in hub.monitor(i, "connz?limit=1024").get("connections") or []:
            if str(conn.get("name", "")).startswith(name_prefix):
                return i
    return None


def registry_r1(hub: ClusteredHub) -> dict[str, Any] | None:
    result = asyncio.run(call(hub, "fleet.registry.list", {}))
    records = {r["robot_id"]: r for r in (result or {}).get("robots", [])}
    return records.get(ROBOT)


class Alerts:
    """r1 raises an alert every ALERT_PERIOD_S on its own server (a thread with its own loop)."""

    def __init__(self, url: str) -> None:
        self.url, self.sent, self.stop = url, [], threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self) -> None:
        nc = await nats.connect(self.url)
        await streams.ensure_stream(nc, streams.events_stream_config(ROBOT))
        while not self.stop.is_set():
            msg_id = f"{ROBOT}-alert-{len(self.sent)}-{uuid.uuid4().hex[:8]}"
            headers = Envelope("robot_platform_interfaces/msg/Alert", msg_id=msg_id, robot_id=ROBOT).headers()
            await nc.publish(f"robots.{ROBOT}.alerts", msgpack.packb({"code": "TEST"}), headers=headers)
            self.sent.append(msg_id)
            await asyncio.sleep(ALERT_PERIOD_S)
        await nc.flush()
        await nc.close()

    def finish(self) -> list[str]:
        self.stop.set()
        self.thread.join(10)
        return self.sent


@pytest.mark.timeout(900)
def test_clustered_hub_kill9_node_and_active_services_during_rollout(procs: Any, tmp_path: Path) -> None:
    hub = ClusteredHub(procs, tmp_path, (ROBOT,), service_users=True)
    asyncio.run(hub.wait_jetstream())
    control = Control(procs, tmp_path, hub)
    devices: list[Device] = []
    box: list[Alerts] = []
    try:
        _scenario(hub, control, devices, box)
    finally:
        for alerts in box:
            alerts.stop.set()
        for device in devices:
            device.client.close()
        control.domains.release()


def _scenario(hub: ClusteredHub, control: Control, devices: list[Device], box: list[Alerts]) -> None:
    async def fleet_events() -> None:
        nc = await hub.control()
        await streams.ensure_stream(nc, streams.events_hub_stream_config([ROBOT]))
        await nc.close()

    asyncio.run(fleet_events())
    alerts = Alerts(hub.robot_urls[ROBOT])
    box.append(alerts)
    registries = {"registry-a": control.registry("registry-a")}
    jobs = {"jobs-a": control.jobs("jobs-a")}
    wait_for(lambda: asyncio.run(lease_holder(hub, "jobs_service")) == jobs["jobs-a"].pid, WAIT_S, "jobs-a active")
    wait_for(lambda: asyncio.run(lease_holder(hub, "fleet_registry")) == registries["registry-a"].pid, WAIT_S,
             "registry-a active")  # fmt: skip
    registries["registry-b"] = control.registry("registry-b")
    jobs["jobs-b"] = control.jobs("jobs-b")
    control.agent()
    control.console()
    wait_port(control.ws_port, timeout=WAIT_S)
    first = wait_for(lambda: (r := registry_r1(hub)) and r["status"] == "online" and r, WAIT_S, "r1 registered")
    devices.extend(Device(thing, control.secrets, control.mqtt_port) for thing in THINGS)
    job = asyncio.run(call(hub, "jobs.create", {"job_id": "rollout-1", "document": DOCUMENT, "targets": list(THINGS),
                                                "rollout": {"canary": 1, "max_per_minute": 10}}))  # fmt: skip
    assert job is not None, "jobs.create failed"

    def done() -> dict[str, str]:
        got = asyncio.run(call(hub, "jobs.get", {"job_id": "rollout-1"}))
        return {ex["thing"]: ex["status"] for ex in (got or {}).get("executions", [])}

    wait_for(lambda: list(done().values()).count("SUCCEEDED") >= 2, WAIT_S, "the rollout under way")

    # 1. kill -9 the hub node the console is on.
    (victim,) = wait_for(lambda: (i := node_of(hub, "ws_agent")) is not None and (i,), WAIT_S, "the console's node")

    async def lead_from_victim() -> None:
        nc = await hub.control()
        try:
            for stream in LEADERS_ON_VICTIM:
                assert await move_leader(nc, stream, hub.name(victim)), f"{stream}: leader not moved"
        finally:
            await nc.close()

    asyncio.run(lead_from_victim())
    leaf_on_victim = hub.linked().get(ROBOT) == victim
    t_kill = hub.kill_node(victim)
    moved = wait_for(lambda: (i := node_of(hub, "ws_agent")) is not None and i != victim, 30, "console reconnected",
                     period=0.05)  # fmt: skip
    console_s = time.monotonic() - t_kill
    assert moved is not None and console_s < RECONNECT_BOUND_S, f"console back after {console_s:.1f}s"
    in_flight = sum(1 for s in done().values() if s == "SUCCEEDED")
    assert in_flight < len(THINGS), "the rollout ended before the kills: nothing left to continue"

    # 2. kill -9 the active jobs_service and fleet_registry while the node is still dead.
    # (the lease bucket's leader died with the node: the holders are readable once a new one is elected)
    jobs_pid = wait_for(lambda: asyncio.run(lease_holder(hub, "jobs_service")), WAIT_S, "the jobs lease holder")
    reg_pid = wait_for(lambda: asyncio.run(lease_holder(hub, "fleet_registry")), WAIT_S, "the registry lease holder")
    for pid in (jobs_pid, reg_pid):
        assert pid in {p.pid for p in (*jobs.values(), *registries.values())}
        os.kill(pid, signal.SIGKILL)
    t_services = time.monotonic()
    wait_for(lambda: asyncio.run(lease_holder(hub, "jobs_service")) not in (0, jobs_pid), WAIT_S, "jobs standby")
    jobs_takeover_s = time.monotonic() - t_services
    wait_for(lambda: asyncio.run(lease_holder(hub, "fleet_registry")) not in (0, reg_pid), WAIT_S, "registry standby")
    registry_takeover_s = time.monotonic() - t_services
    after = wait_for(lambda: (r := registry_r1(hub)) and r, WAIT_S, "the standby registry answers")
    assert after["status"] == "online" and after["first_seen"] == first["first_seen"]

    # 3. the node comes back and catches up.
    hub.start_node(victim)
    t_back = time.monotonic()
    statuses = wait_for(lambda: (d := done()) and set(d.values()) == {"SUCCEEDED"} and len(d) == len(THINGS) and d,
                        WAIT_S * 2, "every execution SUCCEEDED")  # fmt: skip
    final = asyncio.run(call(hub, "jobs.get", {"job_id": "rollout-1"}))
    assert final["status"] == "COMPLETED", final
    sent = alerts.finish()

    async def check_streams() -> tuple[float, list[str]]:
        nc = await hub.control()
        try:
            names = {hub.name(i) for i in range(NODES)}
            for stream in STREAMS:
                info = await nc.jetstream().stream_info(stream)
                assert info.config.num_replicas == 3, f"{stream} is R{info.config.num_replicas}"
                await until(lambda s=stream: all_current(nc, s, names), f"{stream} current on the restarted node",
                            WAIT_S)  # fmt: skip
            caught_up = time.monotonic() - t_back
            await until(lambda: _count_ge(nc, len(sent)), f"all {len(sent)} alerts in FLEET_EVENTS", 120)
            await asyncio.sleep(1.0)
            return caught_up, await stream_ids(nc, streams.EVENTS_HUB_STREAM)
        finally:
            await nc.close()

    caught_up_s, ids = asyncio.run(check_streams())
    assert set(sent) <= set(ids), f"{len(set(sent) - set(ids))} alerts lost"
    assert len(ids) == len(set(ids)) == len(sent), f"{len(ids) - len(set(ids))} duplicated alerts"
    for name, proc in (*jobs.items(), *registries.items()):
        if proc.pid not in (jobs_pid, reg_pid):
            assert proc.poll() is None, f"{name} died"
    print(
        f"\nclustered hub: console back on another node {console_s:.2f} s after kill -9 of its node "
        f"(leader of {', '.join(LEADERS_ON_VICTIM)}; robot leaf {'also' if leaf_on_victim else 'not'} there) "
        f"({in_flight}/{len(THINGS)} executions done then); jobs_service standby active {jobs_takeover_s:.1f} s "
        f"and fleet_registry standby {registry_takeover_s:.1f} s after kill -9 of the actives; rollout "
        f"COMPLETED ({len(statuses)} SUCCEEDED); restarted node current in all {len(STREAMS)} streams "
        f"{caught_up_s:.1f} s after its restart; {len(sent)} alerts in FLEET_EVENTS exactly once"
    )


async def _count_ge(nc: Any, n: int) -> bool:
    try:
        return len(await stream_ids(nc, streams.EVENTS_HUB_STREAM)) >= n
    except (nats.errors.Error, TimeoutError):
        return False
