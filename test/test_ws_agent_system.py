"""System tests of ws_agent: real agent process, real nats-server, real clients.

1. Python WebSocket clients (simple-websocket): receive telemetry published on NATS in the bridge's
   envelope (JSON and msgpack fast path), publish a command (reaches NATS with envelope + audit
   event), call a service over NATS request/reply, and get error statuses for an unauthorized
   publish, malformed JSON and a wrong type, while the connection and other clients keep working;
   wrong token and foreign origin are refused at the upgrade; SIGTERM stops the agent cleanly.
2. Unmodified roslibjs (npm ``roslib``) in Node and in Debian's headless Chromium against the full
   robot stack (robot_sim + nats_bridge + nats-server + ws_agent): receives /odom, publishes
   /cmd_vel until the simulated robot moves, calls a service, is refused a deploy publish.

The service calls here are answered by a NATS responder in the test (the agent's side of the contract);
nats_bridge's routing of ``robots.<id>.srv.>`` requests to real ROS services (an e-stop of robot_sim) is
covered by test_nats_bridge_system.py::test_service_call_estops_real_sim.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import msgpack
import nats
import pytest
import rclpy  # noqa: F401  (no ROS install: a failure at collection, never a skip)
from nav_msgs.msg import Odometry
from simple_websocket import Client, ConnectionClosed
from simple_websocket import ConnectionError as UpgradeRefused
from wsproto.utilities import RemoteProtocolError as WsprotoProtocolError

from helpers import REPO, free_port, ros_env, wait_for, wait_port
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.envelope import Envelope
from robot_platform.ws.hashing import hash_secret

BROWSER_DIR = REPO / "test" / "browser"
SRC = str(REPO / "src" / "robot_platform")
SECRETS = {"vera": ("viewer", "vera-pw"), "otto": ("operator", "otto-pw"), "ada": ("admin", "ada-pw")}
WAIT_S = 20.0

AGENT_PARAMS = """
/**/ws_agent:
  ros__parameters:
    robot_id: r1
    mode: robot
    port: {port}
    nats_url: {url}
    users_file: {users}
    allowed_origins: [{origins}]
    diagnostics_period_s: 0.5
    service_timeout_s: 3.0
    stall_timeout_s: 2.0
"""

BRIDGE_PARAMS = """
/**/nats_bridge:
  ros__parameters:
    robot_id: r1
    nats_url: {url}
    out:
      names: [odom]
      odom: {{topic: /odom, type: nav_msgs/msg/Odometry}}
    in:
      names: [cmd_vel]
      cmd_vel: {{topic: /cmd_vel, type: geometry_msgs/msg/Twist}}
/**/robot_sim:
  ros__parameters:
    robot_id: r1
    odom_rate_hz: 20.0
    imu_rate_hz: 5.0
    scan_rate_hz: 1.0
"""


def write_users(tmp_path: Path) -> Path:
    path = tmp_path / "users.yaml"
    lines = ["users:"] + [
        f"  {name}: {{role: {role}, secret_hash: '{hash_secret(secret)}'}}" for name, (role, secret) in SECRETS.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def python_env(domain: int) -> dict[str, str]:
    return ros_env(domain, {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")})


def start_agent(procs: Any, tmp_path: Path, nats_url: str, domain: int, origins: list[str] = ()) -> tuple[Any, int]:
    port = free_port()
    params = tmp_path / "ws_agent.yaml"
    quoted = ", ".join(json.dumps(o) for o in origins)
    params.write_text(AGENT_PARAMS.format(port=port, url=nats_url, users=write_users(tmp_path), origins=quoted))
    argv = [sys.executable, "-m", "robot_platform.ws.node", "--ros-args", "--params-file", str(params)]
    proc = procs.start("ws_agent", argv, env=python_env(domain))
    wait_port(port, timeout=WAIT_S)
    wait_for(lambda: health(port)["nats_connected"], WAIT_S, "ws_agent connected to NATS")
    return proc, port


def health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
        return json.loads(resp.read())


def connect(port: int, user: str | None = None, secret: str | None = None, **kw: Any) -> Client:
    token = f"?token={user}:{secret or SECRETS[user][1]}" if user else ""
    return Client.connect(f"ws://127.0.0.1:{port}/ws{token}", **kw)


def recv_json(ws: Client, timeout: float = 5.0) -> dict[str, Any]:
    frame = ws.receive(timeout=timeout)
    assert frame is not None, "no frame within timeout"
    assert isinstance(frame, str), f"expected a text frame, got {type(frame).__name__}"
    return json.loads(frame)


def recv_until(ws: Client, pred: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = ws.receive(timeout=max(0.05, deadline - time.monotonic()))
        if frame is None:
            continue
        msg = json.loads(frame) if isinstance(frame, str) else msgpack.unpackb(frame, raw=False)
        if pred(msg):
            return msg
    raise TimeoutError("expected message not received")


def wait_nats_sub(server: Any, subject: str) -> None:
    """Wait until nats-server itself has a subscription on ``subject`` (the agent subscribes on demand)."""

    def subscribed() -> bool:
        with urllib.request.urlopen(f"{server.monitor_url}/subsz?subs=1", timeout=2) as resp:
            return any(s.get("subject") == subject for s in json.loads(resp.read()).get("subscriptions_list", []))

    wait_for(subscribed, WAIT_S, f"a NATS subscription on {subject}")


def raw_stalled_client(port: int, user: str, subscribe: dict[str, Any]) -> socket.socket:
    """A WebSocket client that upgrades, subscribes, and then never reads (small receive buffer)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws?token={user}:{SECRETS[user][1]} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    payload = json.dumps(subscribe).encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    sock.sendall(bytes((0x81, 0x80 | len(payload))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return sock


def drain(ws: Client, until: Any = None, timeout: float = WAIT_S) -> list[dict[str, Any]]:
    """Messages available now (or, with ``until``, up to the one it accepts)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = ws.receive(timeout=0.05 if until is None else 0.5)
        if frame is None:
            if until is None:
                return out
            continue
        out.append(json.loads(frame))
        if until is not None and until(out[-1]):
            return out
    if until is not None:
        raise TimeoutError("expected message not received")
    return out


class NatsPeer:
    """nats-py in a thread: publishes telemetry like nats_bridge does, answers a service, records subjects."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.received: dict[str, list[Any]] = {}
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nc = self.run(nats.connect(url))
        self.run(self._setup())

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _setup(self) -> None:
        async def record(msg: Any) -> None:
            self.received.setdefault(msg.subject, []).append(msg)

        async def estop(msg: Any) -> None:
            self.received.setdefault(msg.subject, []).append(msg)
            req = msgpack.unpackb(msg.data)
            await msg.respond(msgpack.packb({"success": True, "message": f"estop={req.get('data')}"}))

        await self.nc.subscribe("robots.r1.cmd.>", cb=record)
        await self.nc.subscribe("audit.>", cb=record)
        await self.nc.subscribe("robots.r1.srv.robot_sim.estop", cb=estop)
        await self.nc.flush()

    def publish(self, subject: str, body: bytes, headers: dict[str, str] | None) -> None:
        async def pub() -> None:
            await self.nc.publish(subject, body, headers=headers)
            await self.nc.flush()

        self.run(pub())

    def close(self) -> None:
        self.run(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def odom_envelope(codec: Codec, x: float) -> tuple[bytes, dict[str, str]]:
    msg = Odometry()
    msg.pose.pose.position.x = x
    msg.header.frame_id = "odom"
    headers = Envelope(type_name="nav_msgs/msg/Odometry", msg_id=uuid.uuid4().hex, topic="/odom", robot_id="r1")
    return codec.encode(msg), headers.headers()


def test_python_clients_against_real_agent(nats_server: Any, procs: Any, ros_domain: int, tmp_path: Path) -> None:
    agent, port = start_agent(procs, tmp_path, nats_server.url, ros_domain)
    peer = NatsPeer(nats_server.url)
    codec = Codec()
    clients: list[Client] = []
    try:
        # --- refused at the upgrade: wrong token, unknown user, foreign origin
        for user, secret in (("otto", "wrong"), ("mallory", "x")):
            with pytest.raises(UpgradeRefused):
                connect(port, user, secret)
        with pytest.raises(UpgradeRefused):
            connect(port, "otto", headers={"Origin": "http://evil.example"})
        assert health(port)["refused"] == {"auth": 2, "origin": 1}

        viewer = connect(port, "vera")
        fast = connect(port, "vera")
        operator = connect(port, "otto")
        clients += [viewer, fast, operator]
        viewer.send(json.dumps({"op": "subscribe", "id": "s1", "topic": "/odom", "type": "nav_msgs/msg/Odometry"}))
        fast.send(json.dumps({"op": "subscribe", "id": "s2", "topic": "/robots/r1/odom", "compression": "msgpack",
                              "queue_length": 50}))  # fmt: skip
        wait_nats_sub(nats_server, "robots.r1.ros.odom")

        # --- telemetry in the bridge's envelope reaches both clients, JSON and msgpack
        for i in range(5):
            peer.publish("robots.r1.ros.odom", *odom_envelope(codec, float(i)))
        got = [recv_json(viewer) for _ in range(5)]
        assert [m["msg"]["pose"]["pose"]["position"]["x"] for m in got] == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert got[0]["op"] == "publish" and got[0]["topic"] == "/odom"
        binary = [fast.receive(timeout=5) for _ in range(5)]
        assert all(isinstance(b, bytes) for b in binary)
        decoded = [msgpack.unpackb(b, raw=False) for b in binary]
        assert decoded[4]["topic"] == "/robots/r1/odom" and decoded[4]["msg"]["pose"]["pose"]["position"]["x"] == 4.0

        # --- a message without the envelope is not forwarded (counted)
        peer.publish("robots.r1.ros.odom", b"\x81\xa1x\x01", None)
        wait_for(lambda: health(port)["hub"]["errors"].get("bad_envelope") == 1, WAIT_S, "bad envelope counted")

        # --- viewer may not publish: error status, audited refusal; connection keeps working
        viewer.send(json.dumps({"op": "advertise", "id": "a1", "topic": "/cmd_vel", "type": "geometry_msgs/msg/Twist"}))
        status = recv_json(viewer)
        assert status["op"] == "status" and status["level"] == "error" and "may not publish" in status["msg"]
        # --- malformed JSON and a wrong field type: error statuses, nothing else happens
        viewer.send("{this is not json")
        assert "not valid JSON" in recv_json(viewer)["msg"]
        viewer.send(json.dumps({"op": "subscribe", "topic": "/odom", "throttle_rate": "fast"}))
        assert "throttle_rate" in recv_json(viewer)["msg"]
        peer.publish("robots.r1.ros.odom", *odom_envelope(codec, 5.0))
        assert recv_json(viewer)["msg"]["pose"]["pose"]["position"]["x"] == 5.0  # still subscribed, still served
        assert msgpack.unpackb(fast.receive(timeout=5))["msg"]["pose"]["pose"]["position"]["x"] == 5.0  # others too

        # --- operator command: envelope on NATS, audit event with who/what
        operator.send(json.dumps({"op": "advertise", "topic": "/cmd_vel", "type": "geometry_msgs/msg/Twist"}))
        operator.send(json.dumps({"op": "publish", "topic": "/cmd_vel", "msg": {"linear": {"x": 0.25}}}))
        cmds = wait_for(lambda: peer.received.get("robots.r1.cmd.cmd_vel"), WAIT_S, "cmd_vel on NATS")
        env = Envelope.from_headers("robots.r1.cmd.cmd_vel", cmds[0].headers)
        assert env.type_name == "geometry_msgs/msg/Twist" and env.robot_id == "r1"
        assert cmds[0].headers["Rp-User"] == "otto"
        assert msgpack.unpackb(cmds[0].data)["linear"]["x"] == 0.25

        def command_audits() -> list[dict[str, Any]]:
            events = [msgpack.unpackb(m.data) for m in peer.received.get("audit.r1", [])]
            return [e for e in events if e["op"] in ("publish", "advertise")]

        events = wait_for(command_audits, WAIT_S, "audit events")
        assert {(e["user"], e["allowed"]) for e in events} == {("vera", False), ("otto", True)}
        assert all("pw" not in json.dumps(e) for e in events)

        # --- service call over NATS request/reply; operator allowed, viewer refused
        operator.send(json.dumps({"op": "call_service", "id": "c1", "service": "/robot_sim/estop",
                                  "args": {"data": True}}))  # fmt: skip
        resp = recv_until(operator, lambda m: m.get("op") == "service_response")
        assert resp == {"op": "service_response", "id": "c1", "service": "/robot_sim/estop",
                        "values": {"success": True, "message": "estop=True"}, "result": True}  # fmt: skip
        operator.send(json.dumps({"op": "call_service", "id": "c2", "service": "/robot_sim/pause", "args": {}}))
        resp = recv_until(operator, lambda m: m.get("op") == "service_response" and m.get("id") == "c2")
        assert resp["result"] is False
        viewer.send(json.dumps({"op": "call_service", "id": "c3", "service": "/robot_sim/estop", "args": {}}))
        assert "may not call" in recv_json(viewer)["msg"]

        # --- a stalled client (reads nothing after the upgrade) fills its socket: its queue stays bounded,
        # drops are counted, the others keep receiving, and it is disconnected after stall_timeout_s
        stalled = raw_stalled_client(port, "vera", {"op": "subscribe", "topic": "/camera/image_raw",
                                                    "queue_length": 5})  # fmt: skip
        viewer.send(json.dumps({"op": "subscribe", "topic": "/camera/image_raw", "queue_length": 100}))
        wait_nats_sub(nats_server, "robots.r1.ros.camera.image_raw")
        n_frames, received = 400, []
        for i in range(n_frames):  # 400 x 32 KB (43 KB as JSON): far more than the socket buffers hold
            peer.publish("robots.r1.ros.camera.image_raw", msgpack.packb({"height": i, "data": b"x" * 32768}),
                         Envelope(type_name="sensor_msgs/msg/Image", msg_id=uuid.uuid4().hex).headers())  # fmt: skip
            if i % 50 == 49:  # the reading client keeps up while the stalled one does not read at all
                received += drain(viewer)
        if not received or received[-1]["msg"]["height"] != n_frames - 1:
            received += drain(viewer, until=lambda m: m["msg"]["height"] == n_frames - 1)
        heights = [m["msg"]["height"] for m in received]
        assert heights[-1] == n_frames - 1 and heights == sorted(heights)
        assert len(heights) > n_frames * 0.9, f"reading client lost {n_frames - len(heights)} frames"
        wait_for(lambda: health(port)["refused"].get("stalled") == 1, WAIT_S, "stalled client disconnected")
        hub = health(port)["hub"]
        assert hub["dropped"] > 0 and hub["clients"] == 3  # the stalled client's drops counted; it is gone
        stalled.close()
    finally:
        for ws in clients:
            with contextlib.suppress(ConnectionClosed):
                ws.close()
        peer.close()
    # --- clean stop on SIGTERM
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=15) == 0


# ---------------------------------------------------------------------------------------- roslibjs
def require_browser_tools() -> str:
    node = shutil.which("node")
    missing = []
    if node is None:
        missing.append("node (apt-get install -y nodejs npm)")
    if not (BROWSER_DIR / "node_modules" / "roslib").is_dir():
        missing.append("test/browser/node_modules (npm ci --prefix test/browser)")
    if not Path(os.environ.get("CHROMIUM", "/usr/bin/chromium")).exists():
        missing.append("chromium (apt-get install -y chromium chromium-driver)")
    assert not missing, "browser test tools missing: " + "; ".join(missing)
    return str(node)


def start_robot(procs: Any, tmp_path: Path, nats_url: str, domain: int) -> None:
    params = tmp_path / "robot.yaml"
    params.write_text(BRIDGE_PARAMS.format(url=nats_url))
    for name, module in (("robot_sim", "robot_platform.sim.node"), ("nats_bridge", "robot_platform.bridge.node")):
        argv = [sys.executable, "-m", module, "--ros-args", "--params-file", str(params)]
        procs.start(name, argv, env=python_env(domain))


def check_scenario(result: dict[str, Any]) -> None:
    assert result["connected"] and result["odomCount"] > 0
    assert result["moved"], f"robot did not move under roslibjs cmd_vel: {result}"
    assert result["service"] == {"ok": True, "resp": {"success": True, "message": "estop=True"}}
    refusals = [s for s in result["statuses"] if s.get("level") == "error"]
    assert refusals and "may not publish" in refusals[0]["msg"]


def test_roslibjs_node_and_chromium(nats_server: Any, procs: Any, ros_domain: int, tmp_path: Path) -> None:
    node = require_browser_tools()
    static_port = free_port()
    origin = f"http://127.0.0.1:{static_port}"
    start_robot(procs, tmp_path, nats_server.url, ros_domain)
    _agent, port = start_agent(procs, tmp_path, nats_server.url, ros_domain, origins=[origin])
    procs.start("static", [sys.executable, "-m", "http.server", str(static_port), "--bind", "127.0.0.1",
                           "--directory", str(BROWSER_DIR)])  # fmt: skip
    wait_port(static_port)
    peer = NatsPeer(nats_server.url)
    ws_url = f"ws://127.0.0.1:{port}/ws?token=otto:{SECRETS['otto'][1]}"
    try:
        for compression in ("none", "cbor"):  # cbor: roslibjs decodes the agent's binary frames itself
            run = subprocess.run([node, str(BROWSER_DIR / "roslib_node.mjs"), ws_url, compression],
                                 capture_output=True, text=True, timeout=60, cwd=BROWSER_DIR)  # fmt: skip
            assert run.returncode == 0, run.stderr
            check_scenario(json.loads(run.stdout.strip().splitlines()[-1]))
        shot = tmp_path / "chromium_roslib.png"
        page = f"{origin}/roslib_page.html?ws={urllib.request.quote(ws_url, safe='')}&compression=cbor"
        run = subprocess.run([node, str(BROWSER_DIR / "chromium_scenario.mjs"), page, str(shot)],
                             capture_output=True, text=True, timeout=90, cwd=BROWSER_DIR)  # fmt: skip
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert "failed" not in result, result
        check_scenario(result)
        assert result["external"] == []  # nothing left localhost
        assert shot.stat().st_size > 0
        audits = [msgpack.unpackb(m.data) for m in peer.received.get("audit.r1", [])]
        assert any(e["op"] == "call_service" and e["user"] == "otto" for e in audits)
    finally:
        peer.close()
    with pytest.raises(urllib.error.HTTPError):  # a page from another origin is refused the WebSocket
        req = urllib.request.Request(f"http://127.0.0.1:{port}/ws", headers={"Origin": "http://evil.example",
                                     "Upgrade": "websocket", "Connection": "Upgrade"})  # fmt: skip
        urllib.request.urlopen(req, timeout=5)


# ---------------------------------------------------------------------------------------- TLS, fleet mode
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


def test_tls_fleet_mode_and_anonymous_viewer(nats_server: Any, tmp_path: Path) -> None:
    import ssl

    from robot_platform.ws.server import AgentConfig, WsAgent
    from robot_platform.ws.topics import Mode

    cert, key = self_signed(tmp_path)
    config = AgentConfig(mode=Mode.FLEET, port=0, nats_url=nats_server.url, anonymous_role="viewer",
                         tls_cert=str(cert), tls_key=str(key), users_file=str(write_users(tmp_path)))  # fmt: skip
    agent = WsAgent(config)
    agent.start()
    peer = NatsPeer(nats_server.url)
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        # plain ws:// to a TLS port fails (refused, reset, or closed before any HTTP answer)
        with pytest.raises((UpgradeRefused, OSError, WsprotoProtocolError)):
            Client.connect(f"ws://127.0.0.1:{agent.port}/ws")
        ws = Client.connect(f"wss://127.0.0.1:{agent.port}/ws", ssl_context=ctx)
        ws.send(json.dumps({"op": "subscribe", "topic": "/odom"}))
        assert "fleet mode: name the robot" in recv_json(ws)["msg"]
        ws.send(json.dumps({"op": "subscribe", "topic": "/robots/r7/odom"}))
        wait_nats_sub(nats_server, "robots.r7.ros.odom")
        peer.publish("robots.r7.ros.odom", *odom_envelope(Codec(), 7.0))
        msg = recv_json(ws)
        assert msg["topic"] == "/robots/r7/odom" and msg["msg"]["pose"]["pose"]["position"]["x"] == 7.0
        # fleet overview: one wildcard subscription for every robot, each message names its robot
        ws.send(json.dumps({"op": "subscribe", "topic": "/robots/*/odom"}))
        wait_nats_sub(nats_server, "robots.*.ros.odom")
        peer.publish("robots.r8.ros.odom", *odom_envelope(Codec(), 8.0))
        msg = recv_json(ws)
        assert (msg["topic"], msg["robot"], msg["msg"]["pose"]["pose"]["position"]["x"]) == (
            "/robots/*/odom",
            "r8",
            8.0,
        )
        peer.publish("robots.r7.ros.odom", *odom_envelope(Codec(), 9.0))  # matches both subscriptions: once each
        got = sorted((recv_json(ws)["topic"], recv_json(ws)["topic"]))
        assert got == ["/robots/*/odom", "/robots/r7/odom"] and ws.receive(timeout=0.3) is None
        ws.send(json.dumps({"op": "publish", "topic": "/robots/r7/cmd_vel", "type": "geometry_msgs/msg/Twist",
                            "msg": {}}))  # fmt: skip
        assert "'anonymous' (role viewer) may not publish" in recv_json(ws)["msg"]
        admin = Client.connect(f"wss://127.0.0.1:{agent.port}/ws", ssl_context=ctx,
                               headers={"Authorization": f"Bearer ada:{SECRETS['ada'][1]}"})  # fmt: skip
        admin.send(json.dumps({"op": "publish", "topic": "/robots/r1/deploy", "type": "std_msgs/msg/String",
                               "msg": {"data": "pkg 1.2.0"}}))  # fmt: skip
        wait_for(lambda: peer.received.get("robots.r1.cmd.deploy"), WAIT_S, "admin command on NATS")
        ws.close()
        admin.close()
    finally:
        peer.close()
        agent.stop()
