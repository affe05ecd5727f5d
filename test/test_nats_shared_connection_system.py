"""Links of one process share one NATS connection when sharing is on (the robot's single layout), each
keeping its own subscriptions, and stopping one leaves the others working (messaging/connection.py).
Real nats-server; the count of connections is the server's own (/connz)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import nats
import pytest

from helpers import wait_for
from robot_platform.messaging import connection
from robot_platform.messaging.backoff import Backoff
from robot_platform.messaging.nats_link import NatsLink


def subs_of(conn: dict[str, Any]) -> list[str]:
    return list(conn.get("subscriptions_list") or [])


def connections(monitor_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{monitor_url}/connz?subs=1", timeout=5) as reply:
        return list(json.load(reply).get("connections") or [])


def publish(url: str, subject: str, body: bytes) -> None:
    async def run() -> None:
        nc = await nats.connect(url)
        await nc.publish(subject, body)
        await nc.flush()
        await nc.close()

    asyncio.run(run())


def collect(url: str, subject: str, n: int, action: Any) -> list[bytes]:
    """Subscribe to ``subject`` on a connection of the test's own, run ``action``, wait for ``n`` messages."""

    async def run() -> list[bytes]:
        nc = await nats.connect(url)
        got: list[bytes] = []

        async def on_msg(msg: Any) -> None:
            got.append(msg.data)

        await nc.subscribe(subject, cb=on_msg)
        await nc.flush()
        action()
        deadline = time.monotonic() + 10
        while len(got) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await nc.close()
        return got

    return asyncio.run(run())


@pytest.fixture
def sharing() -> Iterator[None]:
    connection.share_connections(True)
    try:
        yield
    finally:
        connection.share_connections(False)


@pytest.mark.timeout(60)
def test_two_links_share_one_connection_and_one_stops_alone(nats_server: Any, sharing: None) -> None:
    """~3 s. Would catch: a link opening a connection of its own while sharing is on; stopping one link
    closing the connection under the other, or leaving its subscriptions (and handlers) behind."""
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    got_demand: list[bytes] = []
    a = NatsLink(nats_server.url, lambda s, h, d: got_a.append(d), ["test.a"], name="node_a")
    b = NatsLink(nats_server.url, lambda s, h, d: got_b.append(d), ["test.b"], name="node_b")
    a.start()
    b.start()
    try:
        wait_for(lambda: a.connected and b.connected, 15, "both links connected")
        a.subscribe("test.demand", lambda s, h, d: got_demand.append(d))
        conns = wait_for(
            lambda: [c for c in connections(nats_server.monitor_url) if "test.demand" in subs_of(c)],
            10,
            "a's on-demand subscription",
        )
        assert len(connections(nats_server.monitor_url)) == 1, "two links, one connection"
        assert {"test.a", "test.b", "test.demand"} <= set(conns[0]["subscriptions_list"])
        assert conns[0]["name"] == "node_a"  # the first link names the shared connection
        assert connection.open_connections() == 1

        publish(nats_server.url, "test.a", b"1")
        publish(nats_server.url, "test.b", b"2")
        wait_for(lambda: got_a == [b"1"] and got_b == [b"2"], 10, "each link gets its own subjects only")

        a.publish("test.out", b"from-a", {})
        b.publish("test.out", b"from-b", {})
        wait_for(lambda: a.queued == 0 and b.queued == 0, 10, "both outboxes sent")

        a.stop()
        assert not a.alive and b.alive
        subs = wait_for(
            lambda: [c["subscriptions_list"] for c in connections(nats_server.monitor_url)
                     if "test.a" not in c.get("subscriptions_list", [])], 10, "a's subscriptions ended")  # fmt: skip
        assert len(connections(nats_server.monitor_url)) == 1 and subs[0] == ["test.b"]
        assert b.connected
        publish(nats_server.url, "test.a", b"late")
        publish(nats_server.url, "test.demand", b"late")
        publish(nats_server.url, "test.b", b"3")
        wait_for(lambda: got_b == [b"2", b"3"], 10, "b still receives after a stopped")
        assert got_a == [b"1"] and got_demand == []
        assert collect(nats_server.url, "test.out", 1, lambda: b.publish("test.out", b"still", {})) == [b"still"]
    finally:
        a.stop()
        b.stop()
    assert not b._thread.is_alive(), "the last link's stop closes the connection and its thread"
    assert connection.open_connections() == 0
    wait_for(lambda: connections(nats_server.monitor_url) == [], 10, "no connection left at the server")


@pytest.mark.timeout(60)
def test_shared_connection_reconnects_every_link(procs: Any, tmp_path: Any, sharing: None) -> None:
    """~6 s. Would catch: a reconnect restoring only the first link's subscriptions or set-up."""
    from helpers import free_port
    from test_nats_bridge_echo_link_system import start_server

    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    server = start_server(procs, tmp_path, port, "first")
    setups: list[str] = []
    got: dict[str, list[bytes]] = {"a": [], "b": []}

    def make(name: str) -> NatsLink:
        async def on_connected(nc: Any) -> None:
            setups.append(name)

        return NatsLink(url, lambda s, h, d: got[name].append(d), [f"test.{name}"], name=name,
                        backoff=Backoff(0.05, 0.3), on_connected=on_connected)  # fmt: skip

    a, b = make("a"), make("b")
    a.start()
    b.start()
    try:
        wait_for(lambda: a.connected and b.connected, 15, "both connected")
        assert sorted(setups) == ["a", "b"]
        server.terminate()
        server.wait(timeout=10)
        wait_for(lambda: not a.connected and not b.connected, 10, "both see the loss")
        start_server(procs, tmp_path, port, "again")
        wait_for(lambda: a.connected and b.connected, 15, "both reconnect")
        assert sorted(setups) == ["a", "a", "b", "b"]
        assert a.counters.disconnects == b.counters.disconnects == 1
        publish(url, "test.a", b"x")
        publish(url, "test.b", b"y")
        wait_for(lambda: got == {"a": [b"x"], "b": [b"y"]}, 10, "subscriptions restored for both links")
    finally:
        b.stop()
        a.stop()
    assert connection.open_connections() == 0
