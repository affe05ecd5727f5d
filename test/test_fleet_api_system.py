"""The control server's fleet services through ws_agent (fleet mode), with real parts only.

A secured hub (generated config: robots r1, r2 as leaf nodes with their own users; ws_agent as the
least-privileged ``console`` user, fleet_registry as ``fleet_registry``, jobs_service as ``jobs``, each
with a password file), two robot nats-servers with a
robot_agent each, a ROS node logging on r1's graph, fleet_registry, jobs_service in API-only mode (no
MQTT) and ws_agent in fleet mode with a users file; the test speaks rosbridge v2 over WebSockets as a
viewer and as an admin:

- ``/fleet/registry/list`` shows both robots; r2's agent stops, r2 goes offline and that record arrives
  on ``/fleet/registry/events``; fleet_registry restarts and lists the fleet read back from its bucket;
- a warning logged on r1 arrives live on ``/robots/*/logs`` and is found by ``/fleet/logs/query``
  (level, robot and text filters on the hub's FLEET_LOGS);
- an admin creates a job, sees it in ``/fleet/jobs/list`` and on ``/fleet/jobs/events``, and cancels
  it; a viewer's create and cancel are refused by the agent (audited) while its list works;
- bad arguments (unknown level, limit too large, non-object args, a job id missing) get a clear error
  and the agent keeps serving;
- the console's NATS user gets no answer from a robot's remote actions (the control user does).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import nats
import nats.errors
from simple_websocket import Client, ConnectionClosed

from helpers import REPO, DomainReservation, RosNodeThread, free_port, ros_env, wait_for, wait_port
from robot_platform.messaging import inbox
from robot_platform.messaging.inbox import connect_options
from robot_platform.ops.actions import encode_request
from robot_platform.site_setup.nats_config import (
    Endpoint,
    Fleet,
    render_hub,
    render_robot,
    service_user_entry,
    write_private,
)  # fmt: skip
from robot_platform.ws.hashing import hash_secret

SRC = str(REPO / "src" / "robot_platform")
WAIT_S = 30.0
OFFLINE_AFTER_S = 3.0
SECRETS = {"vera": ("viewer", "vera-pw"), "ada": ("admin", "ada-pw")}
REGISTRY_PARAMS = """/**/fleet_registry:
  ros__parameters:
    nats_url: {url}
    nats_user: fleet_registry
    nats_password_file: {pw}
    offline_after_s: {offline}
    sweep_period_s: 0.5
"""
AGENT_PARAMS = """/**/robot_agent:
  ros__parameters:
    robot_id: {robot}
    site: test-site
    nats_url: {url}
    announce_period_s: 0.5
    capabilities: [sim]
"""
JOBS_PARAMS = """/**/jobs_service:
  ros__parameters:
    store_path: {store}
    nats_url: {url}
    nats_user: jobs
    nats_password_file: {pw}
    mqtt_endpoint: ""
    metrics_port: 0
"""
WS_PARAMS = """/**/ws_agent:
  ros__parameters:
    mode: fleet
    robot_id: control
    port: {port}
    nats_url: {url}
    nats_user: console
    nats_password_file: {pw}
    users_file: {users}
    service_timeout_s: 8.0
    diagnostics_period_s: 1.0
"""


def py_env(domain: int) -> dict[str, str]:
    return ros_env(domain, {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")})


class RobotLogger(RosNodeThread):
    """A ROS node on a robot's graph whose log lines robot_agent forwards (via /rosout)."""

    def __init__(self, domain: int) -> None:
        super().__init__("fleet_api_test_app", domain)
        self.start()


class RosbridgeClient:
    """A rosbridge v2 client over a real WebSocket; a reader thread keeps every message received."""

    def __init__(self, port: int, user: str) -> None:
        self.ws = Client.connect(f"ws://127.0.0.1:{port}/ws?token={user}:{SECRETS[user][1]}")
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.closed:
            try:
                frame = self.ws.receive(timeout=0.5)
            except ConnectionClosed:
                return
            if frame is not None:
                with self.lock:
                    self.messages.append(json.loads(frame))

    def send(self, msg: dict[str, Any]) -> None:
        self.ws.send(json.dumps(msg))

    def wait(self, pred: Any, timeout: float = WAIT_S, what: str = "message") -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            with self.lock:
                return next((m for m in self.messages if pred(m)), None)

        return wait_for(found, timeout, what)  # type: ignore[return-value]

    def subscribe(self, topic: str) -> None:
        self.send({"op": "subscribe", "id": f"sub-{topic}", "topic": topic})

    def published(self, topic: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if m.get("op") == "publish" and m.get("topic") == topic]

    def call(self, service: str, args: Any, timeout: float = WAIT_S) -> dict[str, Any]:
        """The service_response (or error status) of one call_service."""
        rid = uuid.uuid4().hex[:8]
        self.send({"op": "call_service", "id": rid, "service": service, "args": args})
        return self.wait(lambda m: m.get("id") == rid and m.get("op") in ("service_response", "status"), timeout,
                         f"answer to {service}")  # fmt: skip

    def values(self, service: str, args: Any) -> Any:
        resp = self.call(service, args)
        assert resp["op"] == "service_response" and resp["result"] is True, resp
        return resp["values"]

    def close(self) -> None:
        self.closed = True
        self.ws.close()
        self.thread.join(timeout=2)


def healthz(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
        return json.loads(resp.read())


def whoami(port: int, user: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/whoami?token={user}:{SECRETS[user][1]}"
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.loads(resp.read())


async def ask_r1_agent(url: str, user: str, password: str) -> bool:
    """Whether ``user`` gets any answer from r1's robot_agent (list_graph) through the hub."""
    nc = await nats.connect(url, allow_reconnect=False, **connect_options(user, password))
    try:  # as the platform's clients ask a robot: the reply comes in r1's slot of the user's inbox
        await inbox.request(nc, "robots.r1.ops.list_graph", encode_request("x", "viewer"), timeout=2.0)
        return True
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        return False
    finally:
        await nc.close()


def test_fleet_services_through_the_agent(procs: Any, tmp_path: Path) -> None:
    exe = shutil.which("nats-server")
    assert exe, "nats-server not on PATH"
    hub_port, leaf_port, ws_port = free_port(), free_port(), free_port()
    fleet = Fleet.generate(["r1", "r2"])
    services = {"console": uuid.uuid4().hex, "fleet_registry": uuid.uuid4().hex, "jobs": uuid.uuid4().hex}
    hub_conf = tmp_path / "hub.conf"
    extra = [service_user_entry(user, pw) for user, pw in services.items()]
    hub_text = render_hub(fleet, Endpoint(port=hub_port), leaf_port, str(tmp_path / "js-hub"), extra_users=extra)
    write_private(hub_conf, hub_text)
    procs.start("hub", [exe, "-c", str(hub_conf)])
    wait_port(hub_port)
    robot_ports = {"r1": free_port(), "r2": free_port()}
    for robot, port in robot_ports.items():
        conf = tmp_path / f"{robot}.conf"
        write_private(conf, render_robot(robot, fleet.robots[robot], Endpoint(port=port), f"127.0.0.1:{leaf_port}",
                                         str(tmp_path / f"js-{robot}")))  # fmt: skip
        procs.start(f"nats-{robot}", [exe, "-c", str(conf)])
        wait_port(port)
    pw = {}
    for user, password in services.items():
        pw[user] = tmp_path / f"{user}.password"
        write_private(pw[user], password)
    hub_url = f"nats://127.0.0.1:{hub_port}"
    users = tmp_path / "users.yaml"
    lines = [f"  {name}: {{role: {role}, secret_hash: '{hash_secret(pw)}'}}" for name, (role, pw) in SECRETS.items()]
    users.write_text("users:\n" + "\n".join(lines) + "\n")

    domains = DomainReservation(count=5)
    logger = None
    clients: list[RosbridgeClient] = []
    try:
        # Control side: registry, jobs (API only, as the hub's jobs user), the console's agent.
        params = tmp_path / "registry.yaml"
        params.write_text(REGISTRY_PARAMS.format(url=hub_url, pw=pw["fleet_registry"], offline=OFFLINE_AFTER_S))
        registry_argv = [sys.executable, "-m", "robot_platform.ops.registry_node", "--ros-args", "--params-file",
                         str(params)]  # fmt: skip
        registry = procs.start("fleet_registry", registry_argv, env=py_env(domains.domain_id))
        params = tmp_path / "jobs.yaml"
        params.write_text(JOBS_PARAMS.format(store=tmp_path / "jobs.sqlite3", url=hub_url, pw=pw["jobs"]))
        procs.start("jobs_service", [sys.executable, "-m", "robot_platform.jobs.node", "--ros-args",
                                     "--params-file", str(params)], env=py_env(domains.domain_id + 1))  # fmt: skip
        params = tmp_path / "ws_agent.yaml"
        params.write_text(WS_PARAMS.format(port=ws_port, url=hub_url, pw=pw["console"], users=users))
        agent = procs.start("ws_agent", [sys.executable, "-m", "robot_platform.ws.node", "--ros-args",
                                         "--params-file", str(params)], env=py_env(domains.domain_id + 2))  # fmt: skip
        wait_port(ws_port, timeout=WAIT_S)
        wait_for(lambda: healthz(ws_port)["nats_connected"], WAIT_S, "ws_agent connected to the hub as console")

        viewer, admin = RosbridgeClient(ws_port, "vera"), RosbridgeClient(ws_port, "ada")
        clients += [viewer, admin]
        for topic in ("/fleet/registry/events", "/robots/*/logs", "/fleet/jobs/events"):
            viewer.subscribe(topic)
        admin.subscribe("/fleet/jobs/events")
        assert whoami(ws_port, "vera")["fleet"]["call"]["/fleet/jobs/create"] is False
        assert whoami(ws_port, "ada")["fleet"]["call"]["/fleet/jobs/create"] is True

        # Robots: an agent each (presence, logs), a ROS node logging on r1's graph.
        agents = {}
        for i, robot in enumerate(("r1", "r2")):
            params = tmp_path / f"agent-{robot}.yaml"
            params.write_text(AGENT_PARAMS.format(robot=robot, url=f"nats://127.0.0.1:{robot_ports[robot]}"))
            agents[robot] = procs.start(f"agent-{robot}", [sys.executable, "-m", "robot_platform.ops.node",
                                                           "--ros-args", "--params-file", str(params)],
                                        env=py_env(domains.domain_id + 3 + i))  # fmt: skip
        logger = RobotLogger(domains.domain_id + 3)

        # 1. Registry: both robots listed online, with what they announced; their arrival was an event.
        def listed() -> dict[str, Any] | None:
            resp = viewer.call("/fleet/registry/list", {})
            if resp.get("result") is not True:
                return None
            robots = {r["robot_id"]: r for r in resp["values"]["robots"]}
            return (
                robots
                if {"r1", "r2"} <= set(robots) and all(r["status"] == "online" for r in robots.values())
                else None
            )

        robots = wait_for(listed, WAIT_S, "r1 and r2 listed online by /fleet/registry/list", period=0.5)
        assert robots["r1"]["last"]["site"] == "test-site" and robots["r1"]["last"]["capabilities"] == ["sim"]
        assert robots["r2"]["first_seen"] <= robots["r2"]["last_seen"]
        viewer.wait(lambda m: m.get("topic") == "/fleet/registry/events" and m["msg"]["robot_id"] == "r2",
                    what="r2's record on /fleet/registry/events")  # fmt: skip

        # 2. r2 stops: it goes offline, and the record says so on the events topic.
        agents["r2"].send_signal(2)
        agents["r2"].wait(timeout=15)
        event = viewer.wait(lambda m: m.get("topic") == "/fleet/registry/events"
                            and m["msg"]["robot_id"] == "r2" and m["msg"]["status"] == "offline",
                            what="r2 offline on /fleet/registry/events")  # fmt: skip
        assert event["msg"]["last"]["site"] == "test-site"
        listing = {r["robot_id"]: r["status"] for r in viewer.values("/fleet/registry/list", {})["robots"]}
        assert listing == {"r1": "online", "r2": "offline"}
        refreshes = [m for m in viewer.published("/fleet/registry/events") if m["msg"]["robot_id"] == "r1"]
        assert len(refreshes) < 20, "r1's unchanged announcements (2/s) must be throttled"
        # fleet_registry restarts: with its least-privileged user it reads the fleet back from the bucket.
        registry.send_signal(2)
        registry.wait(timeout=15)
        registry = procs.start("fleet_registry_2", registry_argv, env=py_env(domains.domain_id))
        wait_for(lambda: viewer.call("/fleet/registry/list", {}).get("result"), WAIT_S, "registry back", period=0.5)
        listing = {r["robot_id"]: r["status"] for r in viewer.values("/fleet/registry/list", {})["robots"]}
        assert listing == {"r1": "online", "r2": "offline"}

        # 3. Logs: a warning on r1 arrives live and is found by the query; filters apply on the hub.
        text = f"battery low {uuid.uuid4().hex[:8]}"
        logger.node.get_logger().warning(text)
        live = viewer.wait(lambda m: m.get("topic") == "/robots/*/logs" and m["msg"]["msg"] == text,
                           what="the warning live on /robots/*/logs")  # fmt: skip
        assert live["robot"] == "r1"
        entry = live["msg"]
        assert (entry["robot"], entry["level"], entry["node"]) == ("r1", "warn", "fleet_api_test_app"), entry
        assert isinstance(entry["stamp"], float) and abs(entry["stamp"] - time.time()) < 60
        assert set(entry) == {"robot", "stamp", "level", "node", "msg", "file", "function", "line"}

        query = {"robot": "r1", "level": "warn", "grep": text.split()[-1], "since_s": 600, "limit": 10}
        found = wait_for(lambda: viewer.values("/fleet/logs/query", query)["entries"], WAIT_S,
                         "the warning found by /fleet/logs/query", period=0.5)  # fmt: skip
        assert [e["msg"] for e in found] == [text] and found[0] == entry
        assert viewer.values("/fleet/logs/query", {**query, "level": "error"})["entries"] == []
        assert viewer.values("/fleet/logs/query", {**query, "robot": "r2"})["entries"] == []
        newest = viewer.values("/fleet/logs/query", {"limit": 3})["entries"]
        assert 1 <= len(newest) <= 3 and [e["stamp"] for e in newest] == sorted(e["stamp"] for e in newest)

        # 4. Jobs: the admin creates one, sees it listed and on the events topic, and cancels it.
        job = {"job_id": f"fleet-api-{uuid.uuid4().hex[:6]}", "document": {"operation": "deploy", "package": "nav"},
               "targets": ["r1", "r2"], "description": "from the console"}  # fmt: skip
        created = admin.values("/fleet/jobs/create", job)
        assert created["job_id"] == job["job_id"] and {e["thing"] for e in created["executions"]} == {"r1", "r2"}
        jobs = viewer.values("/fleet/jobs/list", {})
        assert job["job_id"] in [j["job_id"] for j in jobs]
        got = viewer.values("/fleet/jobs/get", {"job_id": job["job_id"]})
        assert got["description"] == "from the console"
        for client in (admin, viewer):
            client.wait(lambda m: m.get("topic") == "/fleet/jobs/events" and m["msg"].get("job_id") == job["job_id"],
                        what="the job on /fleet/jobs/events")  # fmt: skip

        # 5. A viewer may list, not create or cancel: refused by the agent, nothing reaches the jobs service.
        refused = viewer.call("/fleet/jobs/create", {**job, "job_id": "viewer-job"})
        assert refused["op"] == "status" and refused["level"] == "error"
        assert "may not call jobs.create" in refused["msg"], refused
        refused = viewer.call("/fleet/jobs/cancel", {"job_id": job["job_id"]})
        assert refused["op"] == "status" and "may not call jobs.cancel" in refused["msg"]
        resp = admin.call("/fleet/jobs/get", {"job_id": "viewer-job"})
        assert resp["result"] is False and "viewer-job" in resp["values"], resp
        canceled = admin.values("/fleet/jobs/cancel", {"job_id": job["job_id"], "reason": "test"})
        assert canceled["job_id"] == job["job_id"]

        # 6. Bad arguments: clear errors, and the agent (and fleet_registry) keep serving.
        bad = viewer.call("/fleet/logs/query", {"level": "loud"})
        assert bad["result"] is False and "level" in bad["values"] and "unknown log level" in bad["values"], bad
        bad = viewer.call("/fleet/logs/query", {"limit": 5000})
        assert bad["result"] is False and "limit" in bad["values"] and "1000" in bad["values"], bad
        bad = viewer.call("/fleet/logs/query", [1, 2])
        assert bad["op"] == "status" and "args" in bad["msg"], bad
        bad = admin.call("/fleet/jobs/get", {})
        assert bad["result"] is False and "job_id" in bad["values"], bad
        bad = viewer.call("/fleet/nope", {})
        assert bad["op"] == "status" and "not a fleet service" in bad["msg"]
        assert {r["robot_id"] for r in viewer.values("/fleet/registry/list", {})["robots"]} == {"r1", "r2"}
        errors = healthz(ws_port)["gateway"]["errors"]
        assert errors["denied"] == 2 and errors["fleet_service_error"] >= 3, errors
        assert agent.poll() is None and registry.poll() is None

        # 7. Least privilege on the hub: the console's NATS user cannot reach a robot's remote actions,
        #    which the unrestricted control user can (positive control: r1's agent answers it).
        assert asyncio.run(ask_r1_agent(hub_url, "control", fleet.control_password)) is True
        assert asyncio.run(ask_r1_agent(hub_url, "console", services["console"])) is False
    finally:
        for client in clients:
            client.close()
        if logger is not None:
            logger.close()
        domains.release()
