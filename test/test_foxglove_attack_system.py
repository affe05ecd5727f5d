"""ws_agent's Foxglove path (foxglove.websocket.v1) under attack: a real ws_agent node, nats-server, sockets.

Each bad input must get a clear answer (a ``status`` of level error, a ``serviceCallFailure``, an HTTP
status or a close code with a reason), be counted (``/healthz``), be logged once per client and kind (not
per frame), and leave the agent serving: the attacked connection itself and every other client.

1. Frames: malformed and deeply nested JSON, unknown ops, bad binary opcodes, truncated headers, unknown
   channel ids, garbage CDR in publishes and service calls, advertising a non-allowlisted topic, a flood of
   duplicate subscription ids in one message (one status, not 1,023), a viewer advertising cmd_vel 1,024
   times in one message (one audited refusal, not 1,024), an oversized frame (1009), wrong or missing
   credentials, duplicate Host headers (400, was a 500 with a traceback), a foreign Host or Origin; RSS
   stays flat over a flood of such frames.
2. A reader that never reads (the other client keeps getting messages, memory bounded, the reader is cut
   after ``stall_timeout_s``) and connections that never finish their request (cut, counted, summed up in
   one log line).
3. One login holds at most ``max_clients_per_user`` connections (503 beyond, others unaffected); the NATS
   link drops and comes back under a subscribed Foxglove client.
Duration: about 30 s for the three (load 9-13).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from helpers import free_port, wait_for, wait_port
from test_foxglove_system import AuditLog
from test_ws_agent_system import SECRETS, health, python_env, write_users

WAIT_S = 30.0
FOX = "foxglove.websocket.v1"
MAX_FRAME = 256 * 1024
STALL_S = 3.0
PARAMS = """
/**/nats_bridge:
  ros__parameters:
    robot_id: r1
    out:
      names: [odom]
      odom: {{topic: /odom, type: nav_msgs/msg/Odometry}}
    in:
      names: [cmd_vel]
      cmd_vel: {{topic: /cmd_vel, type: geometry_msgs/msg/Twist}}
    services:
      names: [estop]
      estop: {{service: /robot_sim/estop, type: std_srvs/srv/SetBool, timeout_s: 2.0}}
/**/ws_agent:
  ros__parameters:
    robot_id: r1
    mode: robot
    port: {port}
    nats_url: {url}
    users_file: {users}
    foxglove_bridge_config: {params}
    max_frame_bytes: {max_frame}
    stall_timeout_s: {stall}
    handshake_timeout_s: 2.0
    max_clients_per_user: {per_user}
    diagnostics_period_s: 1.0
"""
ODOM_HEADERS = {"Content-Type": "application/msgpack", "Ros-Type": "nav_msgs/msg/Odometry", "Robot-Id": "r1",
                "Ros-Topic": "/odom"}  # fmt: skip


class Agent:
    def __init__(self, procs: Any, tmp_path: Path, url: str, domain: int, per_user: int = 16) -> None:
        self.port = free_port()
        params = tmp_path / "params.yaml"
        params.write_text(PARAMS.format(port=self.port, url=url, users=write_users(tmp_path), params=params,
                                        max_frame=MAX_FRAME, stall=STALL_S, per_user=per_user))  # fmt: skip
        argv = [sys.executable, "-m", "robot_platform.ws.node", "--ros-args", "--params-file", str(params)]
        procs.start("ws_agent", argv, env=python_env(domain))
        self.child = procs.child("ws_agent")
        wait_port(self.port, timeout=WAIT_S)
        wait_for(lambda: health(self.port)["nats_connected"], WAIT_S, "ws_agent connected to NATS")
        self.ps = psutil.Process(self.child.pid)
        self.url = f"ws://127.0.0.1:{self.port}/ws"

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 1e6

    def log(self) -> str:
        return self.child.output(max_bytes=2_000_000)

    async def fox(self, user: str = "otto", **kw: Any) -> tuple[ClientConnection, dict[str, Any]]:
        """A logged-in Foxglove client and what the server announced: {op: message} of the first three."""
        ws = await connect(f"{self.url}?token={user}:{SECRETS[user][1]}", subprotocols=[FOX], **kw)
        hello = {}
        while len(hello) < (3 if user == "otto" else 2):
            msg = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
            hello[msg["op"]] = msg
        return ws, hello


async def answers(ws: ClientConnection, quiet_s: float = 0.5, max_s: float = 10.0) -> list[Any]:
    """What the server sends until it is quiet for ``quiet_s`` or ``max_s`` passed (JSON decoded, binary as bytes)."""
    out: list[Any] = []
    end = time.monotonic() + max_s
    while time.monotonic() < end:
        try:
            msg = await asyncio.wait_for(ws.recv(), quiet_s)
        except TimeoutError:
            break
        out.append(json.loads(msg) if isinstance(msg, str) else msg)
    return out


def text_answers(items: list[Any]) -> list[dict[str, Any]]:
    return [m for m in items if isinstance(m, dict)]


async def publish_odom(url: str, n: int, rate_hz: float, pad: int = 0) -> None:
    """``n`` Odometry messages in the bridge's envelope; ``pad`` bytes of child_frame_id make them big."""
    import nats

    odom = {"header": {"stamp": {"sec": 1, "nanosec": 2}, "frame_id": "odom"}, "child_frame_id": "b" * (pad or 9)}
    body = msgpack.packb(odom)
    nc = await nats.connect(url)
    try:
        for _ in range(n):
            await nc.publish("robots.r1.ros.odom", body, headers={**ODOM_HEADERS, "Nats-Msg-Id": uuid.uuid4().hex})
            await asyncio.sleep(1 / rate_hz)
        await nc.flush()
    finally:
        await nc.close()


def test_malformed_floods_and_refused_logins_are_answered_counted_logged_once(
    nats_server: Any, procs: Any, ros_domain: int, tmp_path: Path
) -> None:
    agent = Agent(procs, tmp_path, nats_server.url, ros_domain)
    audit = AuditLog(nats_server.url)
    try:
        asyncio.run(_frames(agent, nats_server.url, audit))
    finally:
        audit.close()


async def _frames(agent: Agent, nats_url: str, audit: AuditLog) -> None:
    ws, hello = await agent.fox("otto")
    odom = next(c["id"] for c in hello["advertise"]["channels"] if c["topic"] == "/odom")
    estop = hello["advertiseServices"]["services"][0]["id"]
    twist = {"op": "advertise", "channels": [{"id": 7, "topic": "/cmd_vel", "encoding": "cdr",
                                              "schemaName": "geometry_msgs/msg/Twist"}]}  # fmt: skip
    cases: list[tuple[str | bytes, str]] = [
        ("{not json", "not JSON"),
        ("[" * 60_000, "nested too deeply"),  # was: RecursionError, the connection closed without a word
        (json.dumps({"op": "getParameters", "parameterNames": []}), "unsupported op 'getParameters'"),
        (json.dumps({"op": "subscribe", "subscriptions": [{"id": -1, "channelId": odom}]}), "32-bit unsigned"),
        (json.dumps({"op": "subscribe", "subscriptions": [{"id": 1, "channelId": 999}]}), "no channel 999"),
        (b"\x09abc", "unsupported binary opcode 9"),
        (b"", "empty binary message"),
        (b"\x01\x00", "shorter than its header"),
        (b"\x01" + struct.pack("<I", 77) + b"xx", "channel 77 was not advertised"),
        (b"\x02\x01", "shorter than its header"),
        (struct.pack("<BIII", 2, estop, 5, 1_000_000) + b"cdr", "bad encoding length"),
        (
            json.dumps({"op": "advertise", "channels": [{**twist["channels"][0], "topic": "/odom"}]}),
            "not an allowlisted command",
        ),
        (json.dumps(twist), ""),  # accepted: no answer
        (b"\x01" + struct.pack("<I", 7) + os.urandom(7), "payload is not cdr of geometry_msgs/msg/Twist"),
        (struct.pack("<BIII", 2, estop, 5, 3) + b"cdr" + os.urandom(30), "request is not cdr of std_srvs"),
        (struct.pack("<BIII", 2, 999, 6, 3) + b"cdr", "no such service"),
    ]
    for frame, expected in cases:
        await ws.send(frame)
        got = text_answers(await answers(ws, 0.4 if expected else 0.8))
        if not expected:
            assert got == [], got
            continue
        assert len(got) == 1, (frame[:40], got)
        text = got[0].get("message", "")
        assert expected in text and got[0]["op"] in ("status", "serviceCallFailure"), (frame[:40], got)
        if got[0]["op"] == "status":
            assert got[0]["level"] == 2

    # 1,024 subscriptions in one message, all on one channel: one subscribed, ONE status for the 1,023 others
    subs = [{"id": i, "channelId": odom} for i in range(1024)]
    await ws.send(json.dumps({"op": "subscribe", "subscriptions": subs}))
    got = text_answers(await answers(ws, 0.8))
    assert len(got) == 1 and got[0]["message"].startswith("1023 of 1024 items refused"), got[:3]

    # a viewer advertising cmd_vel 1,024 times in one message: one status and ONE audited refusal
    viewer, _ = await agent.fox("vera")
    audited_before = sum(1 for e in audit.events if e["user"] == "vera" and not e["allowed"])
    chans = [{**twist["channels"][0], "id": i} for i in range(1024)]
    await viewer.send(json.dumps({"op": "advertise", "channels": chans}))
    got = text_answers(await answers(viewer, 0.8))
    assert len(got) == 1 and "may not publish" in got[0]["message"] and "1024 of 1024" in got[0]["message"], got
    wait_for(lambda: sum(1 for e in audit.events if e["user"] == "vera" and not e["allowed"]) > audited_before,
             10, "the viewer's refusal audited")  # fmt: skip
    await asyncio.sleep(0.5)
    assert sum(1 for e in audit.events if e["user"] == "vera" and not e["allowed"]) == audited_before + 1

    # a flood from 4 connections (bounded by the inbound rate limit): RSS flat, statuses bounded
    rss0 = agent.rss_mb()
    flooders = [(await agent.fox("otto"))[0] for _ in range(4)]
    junk = [b"\x09" * 1000, "{" * 5000, json.dumps({"op": "subscribe", "subscriptions": subs}), b"\x01\x00\x00"]
    for i in range(200):
        for f in flooders:
            await f.send(junk[i % len(junk)])
        if i % 50 == 0:
            await asyncio.sleep(0.05)
    for f in flooders:
        await answers(f, 0.5)
        await f.close()
    rss1 = agent.rss_mb()
    assert rss1 - rss0 < 20, (rss0, rss1)

    # the attacked connection still serves: its odom subscription delivers message data
    await publish_odom(nats_url, 20, rate_hz=50)
    data = [m for m in await answers(ws, 1.0) if isinstance(m, bytes)]
    assert data and data[0][0] == 0x01 and struct.unpack_from("<I", data[0], 1)[0] == 0, data[:1]

    # oversized frame: 1009 with the reason, counted, logged
    big, _ = await agent.fox("otto")
    await big.send(b"\x01" + struct.pack("<I", 7) + b"x" * (MAX_FRAME + 10))
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(big.recv(), WAIT_S)
    assert big.close_code == 1009 and "exceeds limit" in big.close_reason

    # credentials, Host, Origin
    for kw, status in ((dict(uri=f"{agent.url}?token=otto:wrong"), 401),
                       (dict(uri=f"{agent.url}?token=otto:otto-pw", additional_headers=[("Host", "127.0.0.1"),
                                                                                      ("Host", "evil.example")]), 400),
                       (dict(uri=f"ws://evil.example:{agent.port}/ws?token=otto:otto-pw", host="127.0.0.1"), 421),
                       (dict(uri=f"{agent.url}?token=otto:otto-pw", origin="http://evil.example"), 403)):  # fmt: skip
        with pytest.raises(InvalidStatus) as refused:
            await connect(kw.pop("uri"), subprotocols=[FOX], open_timeout=WAIT_S, **kw)
        assert refused.value.response.status_code == status, (kw, refused.value.response)
    anon = await connect(agent.url, subprotocols=[FOX])
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(anon.recv(), WAIT_S)
    assert anon.close_code == 1008 and "token" in anon.close_reason

    # counted and still serving
    stats = health(agent.port)
    errors, refused_counts = stats["gateway"]["errors"], stats["refused"]
    # refused items are counted as tried: 8 of the 1,023 duplicates, 1 of the 1,024 denied advertisements
    assert errors.get("protocol", 0) >= 8 + 12 and errors.get("invalid_message", 0) >= 2, errors
    assert errors.get("denied", 0) >= 1 and errors.get("bad_topic", 0) >= 1, errors
    assert refused_counts.get("oversized") == 1 and refused_counts.get("bad_request") == 1, refused_counts
    assert refused_counts.get("auth", 0) >= 2 and refused_counts.get("host", 0) >= 1, refused_counts
    assert "internal_error" not in refused_counts
    other, hello = await agent.fox("otto")
    assert hello["serverInfo"]["name"]
    await other.close()
    await ws.close()
    await viewer.close()

    # logged once per client and kind, not per frame; no traceback
    wait_for(lambda: "c1 (otto) disconnected; refused messages:" in agent.log(), WAIT_S, "the disconnect summary")
    log = agent.log()
    assert "Traceback" not in log and "process_request failed" not in log
    lines = log.splitlines()
    first_kind = [line for line in lines if "client c1 (otto" in line and "refused message (protocol)" in line]
    assert len(first_kind) == 1, first_kind
    assert len([line for line in lines if "refused message (protocol)" in line]) <= 8  # 1 per client
    assert "closed (1009)" in log and "more than one Host header" in log and "no credentials (closed 1008)" in log


def test_a_reader_that_never_reads_and_requests_never_finished(
    nats_server: Any, procs: Any, ros_domain: int, tmp_path: Path
) -> None:
    agent = Agent(procs, tmp_path, nats_server.url, ros_domain)
    asyncio.run(_stalls(agent, nats_server.url))


def _masked(payload: bytes, opcode: int = 0x1) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _never_reading_client(port: int) -> socket.socket:
    """A Foxglove client that completes the upgrade, subscribes to /odom and then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall((f"GET /ws?token=vera:{SECRETS['vera'][1]} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {FOX}\r\n\r\n").encode())  # fmt: skip
    sock.settimeout(WAIT_S)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.sendall(_masked(json.dumps({"op": "subscribe", "subscriptions": [{"id": 1, "channelId": 1}]}).encode()))
    return sock


async def _stalls(agent: Agent, nats_url: str) -> None:
    good, _ = await agent.fox("vera", ping_interval=None)
    await good.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": 1, "channelId": 1}]}))
    slow = _never_reading_client(agent.port)
    await asyncio.sleep(0.5)
    rss0 = agent.rss_mb()
    got, peak = 0, rss0
    # 20 KB messages at up to 200/s (4 MB/s): the never-reading client's socket buffers fill in a second or two
    publisher = asyncio.create_task(publish_odom(nats_url, 100_000, rate_hz=200, pad=20_000))
    deadline = time.monotonic() + WAIT_S
    try:
        while time.monotonic() < deadline:
            got += sum(1 for m in await answers(good, 0.2, 0.5) if isinstance(m, bytes))
            peak = max(peak, agent.rss_mb())
            if (await asyncio.to_thread(health, agent.port))["refused"].get("stalled"):
                break
        received_when_cut = got
        for _ in range(5):  # the good client goes on after the cut
            got += sum(1 for m in await answers(good, 0.2, 0.5) if isinstance(m, bytes))
    finally:
        publisher.cancel()
        slow.close()
    assert (await asyncio.to_thread(health, agent.port))["refused"].get("stalled") == 1, "never-reading client not cut"
    assert received_when_cut > 50 and got > received_when_cut, (received_when_cut, got)
    assert peak - rss0 < 40, (rss0, peak)
    assert "stalled for" in agent.log()

    # 30 connections that never finish their request: cut after handshake_timeout_s, counted, one log line
    socks = [socket.create_connection(("127.0.0.1", agent.port)) for _ in range(30)]
    for s in socks[:15]:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    try:
        wait_for(lambda: health(agent.port)["connections"]["no_request"] >= 30, WAIT_S, "unfinished requests cut")
        wait_for(lambda: "closed before sending a complete request" in agent.log(), WAIT_S, "one summary line")
    finally:
        for s in socks:
            s.close()
    assert agent.log().count("closed before sending a complete request") <= 2
    await good.close()


def test_one_login_is_bounded_and_the_nats_link_drops_under_a_foxglove_client(
    nats_server: Any, procs: Any, ros_domain: int, tmp_path: Path
) -> None:
    """nats-server killed while a Foxglove client is subscribed: a service call gets a failure naming the
    cause at once, other frames are still answered, the connection stays, and after the restart the same
    subscription delivers again (no reconnect by the client)."""
    agent = Agent(procs, tmp_path, nats_server.url, ros_domain, per_user=2)
    asyncio.run(_link_drop(agent, procs, nats_server.url))


async def _link_drop(agent: Agent, procs: Any, nats_url: str) -> None:
    ws, hello = await agent.fox("otto")
    # one login holds at most max_clients_per_user (2 here) connections; other users are not affected
    second, _ = await agent.fox("otto")
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"{agent.url}?token=otto:{SECRETS['otto'][1]}", subprotocols=[FOX], open_timeout=WAIT_S)
    assert refused.value.response.status_code == 503 and b"max_clients_per_user" in refused.value.response.body
    viewer, _ = await agent.fox("vera")
    await viewer.close()
    await second.close()
    assert health(agent.port)["refused"].get("user_capacity") == 1
    estop = hello["advertiseServices"]["services"][0]["id"]
    await ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": 5, "channelId": 1}]}))
    hub = procs.child("nats-server")
    hub.popen.kill()
    hub.popen.wait(timeout=WAIT_S)
    wait_for(lambda: not health(agent.port)["nats_connected"], WAIT_S, "ws_agent noticed the link drop")
    start = time.monotonic()
    await ws.send(struct.pack("<BIII", 2, estop, 9, 3) + b"cdr" + b"\x00\x01\x00\x00\x01")  # SetBool{data: true}
    failure = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    assert failure["op"] == "serviceCallFailure" and "not connected" in failure["message"], failure
    assert time.monotonic() - start < 3.0  # not the service timeout: the agent knows the link is down
    await ws.send(b"\x09")
    assert "opcode 9" in json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["message"]
    procs.restart("nats-server")
    wait_for(lambda: health(agent.port)["nats_connected"], WAIT_S, "ws_agent re-linked")
    data: list[bytes] = []
    deadline = time.monotonic() + WAIT_S
    while not data and time.monotonic() < deadline:
        await publish_odom(nats_url, 5, rate_hz=20)
        data = [m for m in await answers(ws, 0.3, 2.0) if isinstance(m, bytes)]
    assert data and struct.unpack_from("<I", data[0], 1)[0] == 5, "the subscription did not deliver after re-link"
    await ws.close()
