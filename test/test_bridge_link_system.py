"""System tests of NatsLink's on-demand side (what ws_agent uses): subscribe/unsubscribe while running,
per-subscription handlers, request with timeout, per-user reply inbox, and all of it across a restart of
the real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import shutil
import threading
import urllib.request
from pathlib import Path
from typing import Any

import nats
import pytest

from helpers import free_port, wait_for, wait_port
from robot_platform.messaging.backoff import Backoff
from robot_platform.messaging.connect import Credentials
from robot_platform.messaging.nats_link import NatsLink

WAIT_S = 15.0


def start_server(procs: Any, tmp_path: Path, port: int, name: str, extra: str = "", monitor: int = 0) -> Any:
    conf = tmp_path / f"{name}.conf"
    http = f"http: 127.0.0.1:{monitor}\n" if monitor else ""
    conf.write_text(f"listen: 127.0.0.1:{port}\nserver_name: srv\n{http}{extra}")
    proc = procs.start(name, [shutil.which("nats-server"), "-c", str(conf)])
    wait_port(port)
    return proc


def server_subs(monitor: int, client_name: str) -> set[str]:
    """What nats-server itself holds for the named client (the subscriptions the link really has)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/connz?subs=1", timeout=2) as resp:
        conns = json.load(resp)["connections"] or []
    return {s for c in conns if c.get("name") == client_name for s in c.get("subscriptions_list", [])}


class Peer:
    """A plain nats-py client in its own thread: publishes and answers ``svc.echo``."""

    def __init__(self, url: str, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nc = self.run(nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2, **options))
        self.run(self.nc.subscribe("svc.echo", cb=self._echo))
        self.run(self.nc.flush())

    async def _echo(self, msg: Any) -> None:
        seen = (msg.headers or {}).get("Rp-Req", "")
        await self.nc.publish(msg.reply, b"echo:" + msg.data, headers={"Rp-Seen": seen})

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT_S)

    def publish(self, subject: str, data: bytes) -> None:
        """Best effort (used inside bounded waits, also while the server restarts)."""

        async def go() -> None:
            await self.nc.publish(subject, data)
            await self.nc.flush(timeout=1)

        with contextlib.suppress(nats.errors.Error, TimeoutError):
            asyncio.run_coroutine_threadsafe(go(), self.loop).result(2)

    def close(self) -> None:
        self.run(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Replies:
    def __init__(self) -> None:
        self.got: list[tuple[Any, str]] = []

    def __call__(self, result: Any, reason: str) -> None:
        self.got.append((result, reason))


@pytest.mark.timeout(90)
def test_on_demand_subscriptions_and_requests_survive_a_server_restart(procs: Any, tmp_path: Path) -> None:
    port, monitor = free_port(), free_port()
    url = f"nats://127.0.0.1:{port}"
    server = start_server(procs, tmp_path, port, "nats1", monitor=monitor)
    got: list[tuple[str, str, bytes]] = []

    def on(pattern: str, subject: str, _headers: Any, data: bytes) -> None:
        got.append((pattern, subject, data))

    link = NatsLink(url, name="test_link", backoff=Backoff(0.05, 0.3))
    link.subscribe("a.*", functools.partial(on, "a.*"))  # before start: subscribed on connect
    link.start()
    peer = Peer(url)
    try:
        wait_for(lambda: link.connected, WAIT_S, "link connected")
        link.subscribe("a.x", functools.partial(on, "a.x"))  # while running; overlaps a.*
        wait_for(lambda: server_subs(monitor, "test_link") == {"a.*", "a.x"}, WAIT_S, "both subscribed")
        peer.publish("a.x", b"1")
        wait_for(lambda: len(got) >= 2, WAIT_S, "both subscriptions deliver")
        assert sorted(got) == [("a.*", "a.x", b"1"), ("a.x", "a.x", b"1")]

        link.unsubscribe("a.*")
        link.unsubscribe("never.subscribed")  # nothing happens
        wait_for(lambda: server_subs(monitor, "test_link") == {"a.x"}, WAIT_S, "a.* unsubscribed")
        got.clear()
        peer.publish("a.y", b"3")  # only a.* would match, and it is gone
        peer.publish("a.x", b"4")
        wait_for(lambda: ("a.x", "a.x", b"4") in got, WAIT_S, "a.x delivers")
        assert got == [("a.x", "a.x", b"4")], got

        replies = Replies()
        link.request("svc.echo", b"hi", {"Rp-Req": "7"}, 2.0, replies)
        link.request("svc.nobody", b"", {}, 2.0, replies)
        wait_for(lambda: len(replies.got) == 2, WAIT_S, "two requests answered")
        answers = {reason: result for result, reason in replies.got}
        assert answers[""][1] == b"echo:hi" and answers[""][0]["Rp-Seen"] == "7"
        assert "no service answers on svc.nobody" in answers

        # The server restarts: the link reconnects by itself and holds the same subscriptions again.
        server.terminate()
        server.wait(10)
        wait_for(lambda: not link.connected, WAIT_S, "link notices the server is gone")
        down = Replies()
        link.request("svc.echo", b"x", {}, 1.0, down)
        wait_for(lambda: down.got == [(None, "NATS is not connected")], WAIT_S, "request refused while down")
        start_server(procs, tmp_path, port, "nats2", monitor=monitor)
        wait_for(lambda: link.connected, WAIT_S, "link reconnects")
        wait_for(lambda: server_subs(monitor, "test_link") == {"a.x"}, WAIT_S, "a.x subscribed again")
        got.clear()
        wait_for(lambda: peer.publish("a.x", b"5") or ("a.x", "a.x", b"5") in got, WAIT_S, "a.x again after restart")
        after = Replies()

        def answered_again() -> bool:
            if any(reason == "" for _, reason in after.got):
                return True
            link.request("svc.echo", b"again", {}, 1.0, after)  # the peer may still be reconnecting
            return False

        wait_for(answered_again, WAIT_S, "request answered after restart")
        assert {res[1] for res, reason in list(after.got) if reason == ""} == {b"echo:again"}
        counters = link.snapshot()
        assert counters["connects"] >= 2 and counters["disconnects"] >= 1
        assert counters["requests"] >= 4 and counters["request_failures"] >= 2
    finally:
        link.stop()
        peer.close()
    assert link.snapshot()["state"] == "stopped"


@pytest.mark.timeout(60)
def test_requests_use_the_users_own_inbox_and_stop_answers_pending_ones(procs: Any, tmp_path: Path) -> None:
    """alice may only subscribe _INBOX.alice.>: a request works only through her own reply inbox."""
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    auth = """authorization {
  users = [
    {user: alice, password: apw, permissions: {publish: ["svc.>"], subscribe: ["_INBOX.alice.>"]}}
    {user: svc, password: spw}
  ]
}
"""
    start_server(procs, tmp_path, port, "nats_auth", auth)
    peer = Peer(url, user="svc", password="spw")
    link = NatsLink(url, name="alice_link", credentials=Credentials("alice", "apw"), backoff=Backoff(0.05, 0.3))
    link.start()
    try:
        wait_for(lambda: link.connected, WAIT_S, "alice connected")
        replies = Replies()
        link.request("svc.echo", b"mine", {}, 2.0, replies)
        wait_for(lambda: len(replies.got) == 1, WAIT_S, "alice's request answered")
        assert replies.got[0][1] == "" and replies.got[0][0][1] == b"echo:mine", replies.got

        async def never_answer(_msg: Any) -> None:
            return

        peer.run(peer.nc.subscribe("svc.slow", cb=never_answer))
        peer.run(peer.nc.flush())
        pending = Replies()
        link.request("svc.slow", b"", {}, 30.0, pending)
        wait_for(lambda: link.snapshot()["requests"] == 2, WAIT_S, "slow request sent")
    finally:
        link.stop()
        peer.close()
    assert pending.got == [(None, "the NATS link is stopping")]
    refused = Replies()
    link.request("svc.echo", b"", {}, 1.0, refused)
    assert refused.got == [(None, "the NATS link is not running")]
