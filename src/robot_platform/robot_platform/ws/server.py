"""The ws_agent process without ROS: Flask + flask-sock app, werkzeug threaded server, NATS, sessions.

Threads: werkzeug accepts connections (one thread per HTTP request / WebSocket), simple-websocket
reads each socket in its own thread, the agent adds one sender thread per client (the only place a
socket is written, so a stalled browser blocks only its own sender), the NATS thread (fan-out into
bounded session queues, never a socket write), and a housekeeping thread that disconnects clients
whose socket write has been stuck for ``stall_timeout_s``, and a lease thread that holds one
frame_publisher lease per camera some client watches (see frame_relay.py).

HTTP:  GET /            web/index.html;  GET /<path>  files under web/ (no listing, no traversal;
                        <dir>/ serves <dir>/index.html)
       GET /healthz     aggregate counters as JSON (no user names, no secrets)
       GET /whoami      who the given credentials are: {user, role, mode, robot_id, rules} (the web UI
                        shows or hides controls with it; the gateway still checks every operation);
                        fleet mode adds {fleet: {call: {"/fleet/jobs/create": bool, ...},
                        subscribe: {"/fleet/jobs/events": bool, ...}}}: the role's verdict per fleet name
WS:    /ws              rosbridge v2 (see protocol.py), credentials as described in access.py

Security defaults: bind 127.0.0.1; TLS when cert and key are given; same-origin browsers only unless
``allowed_origins`` lists more; no request line or query string is logged (tokens may travel there).
permessage-deflate is refused by default: it costs CPU per client and message (telemetry fan-out)
and, with simple-websocket writing from two threads (pong + sender), compression state would be shared.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from flask import Flask, Response, abort, jsonify, request, send_from_directory
from flask_sock import ConnectionClosed, Sock
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from robot_platform.bridge.backoff import Backoff
from robot_platform.bridge.codec import Codec
from robot_platform.bridge.link import Credentials, NatsLink
from robot_platform.bridge.rostypes import TypeRegistry
from robot_platform.frames.leases import decode_reply

from . import access
from .access import AccessControl, Auditor, FailureLimiter, OriginPolicy, credentials_from_request, resolve_roles
from .client_session import ClientSession, SessionLimits
from .errors import AuthError
from .frame_relay import LeaseCall, LeaseKeeper, is_frame_subject
from .gateway import Gateway, GatewayLimits
from .hub import Hub
from .topics import FLEET_SERVICES, FLEET_TOPICS, Mode, TopicMapper

RECEIVE_POLL_S = 1.0  # receive loops wake this often to notice a stopping agent
SENDER_POLL_S = 1.0
HOUSEKEEPING_PERIOD_S = 1.0
STOP_JOIN_TIMEOUT_S = 5.0
WRITE_CHUNK_BYTES = 256 * 1024
CONTROL_WRITE_TIMEOUT_S = 2.0  # a close/pong waiting behind a stalled data write gives up (stop() never hangs)
# The NATS thread and the per-client sender threads hand messages over through the GIL; CPython's
# default 5 ms switch interval adds up to 5 ms per hand-over under load. The entry points (node.main,
# standalone.main) set this process-wide; measured in bench/RESULTS.md.
GIL_SWITCH_INTERVAL_S = 0.001
LEASE_REQUEST_TIMEOUT_S = 1.0
LEASE_RETRY_S = 1.0  # a failed lease request (frame_publisher down or busy) is retried this often
LEASE_IDLE_WAKE_S = 1.0
# NATS: the fan-out subscriptions buffer more than the bridge's (thousands of msg/s into the hub);
# reconnects are capped lower than the bridge's: a browser is waiting.
NATS_SUB_PENDING_MSGS = 10_000
NATS_SUB_PENDING_BYTES = 64 * 1024 * 1024
NATS_OUTBOX_CAPACITY = 1000
NATS_RECONNECT_WAIT_MAX_S = 2.0
TOKEN_RE = re.compile(r"(token=)[^&\s'\"]*", re.IGNORECASE)


@dataclass
class AgentConfig:
    mode: Mode = Mode.ROBOT
    robot_id: str = "r1"
    host: str = "127.0.0.1"
    port: int = 9090
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str = ""
    nats_password: str = field(default="", repr=False)
    users_file: str = ""
    anonymous_role: str = ""
    allowed_origins: list[str] = field(default_factory=list)
    web_dir: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    permessage_deflate: bool = False
    ping_interval_s: float = 25.0
    stall_timeout_s: float = 30.0
    max_clients: int = 100
    max_payload_bytes: int = 8 * 1024 * 1024
    frame_lease_ttl_s: float = 5.0  # ttl asked for the agent's camera leases (renewed every ttl/3)
    gateway: GatewayLimits = field(default_factory=GatewayLimits)
    session: SessionLimits = field(default_factory=SessionLimits)


def fleet_permissions(role: access.Role) -> dict[str, dict[str, bool]]:
    """What the role may do with each fleet name (same rules as the gateway applies to them)."""
    return {
        "call": {name: role.allows("call", subject) for name, subject in FLEET_SERVICES.items()},
        "subscribe": {name: role.allows("subscribe", subject) for name, subject in FLEET_TOPICS.items()},
    }


class _LockedSocket:
    """The client socket with every write whole and serialized.

    simple-websocket's reader thread writes pongs/pings/close with ``sock.send`` while our sender
    writes data; without a lock a partial write of one could interleave with the other and corrupt
    the stream. ``send`` becomes ``sendall`` (simple-websocket ignores short writes).
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, data: bytes) -> int:
        """Writes of simple-websocket (pong, ping, close): give up rather than wait behind a stalled write."""
        if not self._lock.acquire(timeout=CONTROL_WRITE_TIMEOUT_S):
            raise TimeoutError("socket busy with a stalled write")
        try:
            self._sock.sendall(data)
        finally:
            self._lock.release()
        return len(data)

    def sendall(self, data: bytes) -> None:
        with self._lock:
            self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _QuietHandler(WSGIRequestHandler):
    """No access log (tokens can be in query strings); error lines with any token redacted."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return

    def log(self, type: str, message: str, *args: Any) -> None:
        super().log(type, TOKEN_RE.sub(r"\1<redacted>", message % args if args else message))


@dataclass
class _Client:
    session: ClientSession
    ws: Any
    sender: threading.Thread | None = None


class WsAgent:
    """Owns every part of the agent; ``start()`` / ``stop()`` (idempotent, bounded)."""

    def __init__(self, config: AgentConfig, log: logging.Logger | Any | None = None) -> None:
        self.config = config
        self.log = log or logging.getLogger("ws_agent")
        agent_id = config.robot_id if config.mode is Mode.ROBOT else "control"
        if config.users_file:
            self.access = AccessControl.from_file(config.users_file, config.anonymous_role)
        else:
            self.access = AccessControl({}, resolve_roles({}), config.anonymous_role)
        self.nats = NatsLink(
            config.nats_url, name=f"ws_agent.{agent_id}", outbox_capacity=NATS_OUTBOX_CAPACITY,
            # own reply inbox: _INBOX.<user>, or on a robot _INBOX.<robot id> (what its leaf link carries back)
            credentials=Credentials(config.nats_user, config.nats_password,
                                    config.robot_id if config.mode is Mode.ROBOT else ""),
            backoff=Backoff(max_s=NATS_RECONNECT_WAIT_MAX_S), log=self.log,
            sub_pending_msgs=NATS_SUB_PENDING_MSGS, sub_pending_bytes=NATS_SUB_PENDING_BYTES,
        )  # fmt: skip
        self.leases = LeaseKeeper(config.frame_lease_ttl_s, LEASE_RETRY_S, f"ws_agent-{agent_id}")
        self._lease_wake = threading.Event()
        self.hub = Hub(self._on_interest, config.max_payload_bytes, self.log.warning)
        self.auditor = Auditor(agent_id, self.nats.publish, self.log)
        self.gateway = Gateway(
            TopicMapper(config.mode, config.robot_id), self.access, self.hub, self.nats, self.auditor,
            Codec(TypeRegistry(), config.gateway.max_frame_bytes), agent_id, config.gateway, config.session,
        )  # fmt: skip
        self.origins = OriginPolicy(config.allowed_origins)
        self.failures = FailureLimiter()
        self.web_dir = Path(config.web_dir) if config.web_dir else None
        self.refused: dict[str, int] = {}
        self._clients: dict[str, _Client] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._threads: list[threading.Thread] = []
        self.app = self._build_app()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.nats.start()
        ctx = None
        if self.config.tls_cert or self.config.tls_key:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        self._server = make_server(self.config.host, self.config.port, self.app, threaded=True,
                                   request_handler=_QuietHandler, ssl_context=ctx)  # fmt: skip
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        loops = (
            (self._server.serve_forever, "http"),
            (self._housekeeping, "housekeeping"),
            (self._lease_loop, "leases"),
        )
        for target, name in loops:
            thread = threading.Thread(target=target, name=f"ws_agent-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        scheme = "https" if ctx else "http"
        self.log.info(f"ws_agent ({self.config.mode.value}) serving {scheme}://{self.config.host}:{self.port}")

    @property
    def port(self) -> int:
        return self._server.server_port if self._server else self.config.port

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            clients = list(self._clients.values())
        for client in clients:
            if client.session.sending_since is None:  # a close frame would wait behind a stalled write
                with contextlib.suppress(ConnectionClosed, OSError, RuntimeError):
                    client.ws.close(reason=1001, message="agent stopping")
            _shutdown_socket(client.ws)
            client.session.close()
        for client in clients:
            if client.sender is not None:
                client.sender.join(STOP_JOIN_TIMEOUT_S)
        self._lease_wake.set()
        for thread in self._threads:
            if thread.name == "ws_agent-leases":
                thread.join(STOP_JOIN_TIMEOUT_S)
        self.leases.release_all(time.monotonic())  # best effort: unreleased leases expire after their ttl
        self._send_lease_requests(time.monotonic())
        self.nats.stop()
        for thread in self._threads:
            thread.join(STOP_JOIN_TIMEOUT_S)

    def _on_interest(self, subject: str, wanted: bool) -> None:
        """First client in / last client out of a subject: NATS subscription, and a lease for a camera.

        The subscription tells the hub which subscribed subject a message came through, so a message
        matching both ``robots.*.presence`` and ``robots.r1.presence`` reaches each set of clients once."""
        if wanted:
            self.nats.subscribe(subject, functools.partial(self.hub.deliver, pattern=subject))
        else:
            self.nats.unsubscribe(subject)
        if is_frame_subject(subject):
            (self.leases.want if wanted else self.leases.unwant)(subject, time.monotonic())
            self._lease_wake.set()

    # ------------------------------------------------------------------ camera leases
    def _lease_loop(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            self._send_lease_requests(now)
            due = self.leases.next_due()
            wait = LEASE_IDLE_WAKE_S if due is None else min(max(due - now, 0.0), LEASE_IDLE_WAKE_S)
            self._lease_wake.wait(wait)
            self._lease_wake.clear()

    def _send_lease_requests(self, now: float) -> None:
        for call in self.leases.due(now):
            self.nats.request(call.lease_subject, call.body, {}, LEASE_REQUEST_TIMEOUT_S,
                              lambda result, reason, call=call: self._on_lease_reply(call, result, reason))  # fmt: skip

    def _on_lease_reply(self, call: LeaseCall, result: Any, reason: str) -> None:
        """NATS thread: the lease reply (or why there is none)."""
        reply = None
        if result is not None:
            try:
                reply = decode_reply(result[1])
            except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                reason = "lease reply is not a map"
        if reply is not None and not reply.get("ok"):
            reason = str(reply.get("message", "refused"))[:200]
        if reason and not call.release:
            self.log.warning(f"camera lease on {call.lease_subject} failed: {reason}; retrying")
        self.leases.on_reply(call, reply, time.monotonic())
        self._lease_wake.set()

    # ------------------------------------------------------------------ HTTP / WS
    def _build_app(self) -> Flask:
        app = Flask("ws_agent", static_folder=None)
        app.config["SOCK_SERVER_OPTIONS"] = {
            "ping_interval": self.config.ping_interval_s or None,
            "max_message_size": self.config.gateway.max_frame_bytes,
        }
        sock = Sock(app)

        @app.before_request
        def gate() -> Any:
            if request.path != "/ws":
                return None
            return self._admit()

        @sock.route("/ws")
        def ws_endpoint(ws: Any) -> None:
            self._serve_client(ws, request.environ.get("rp.principal"), request.environ.get("rp.client", ""))

        @app.get("/healthz")
        def healthz() -> Response:
            return jsonify(self.stats())

        @app.get("/whoami")
        def whoami() -> Response:
            return self._whoami()

        @app.get("/")
        def index() -> Response:
            return self._static("index.html")

        @app.get("/<path:path>")
        def static_file(path: str) -> Response:
            return self._static(path)

        return app

    def _static(self, path: str) -> Response:
        if self.web_dir is None or not self.web_dir.is_dir():
            abort(404)
        if path.endswith("/"):  # web/console/ -> web/console/index.html (the pages' own URLs)
            path += "index.html"
        return send_from_directory(self.web_dir, path)  # werkzeug safe_join: no traversal

    def _whoami(self) -> Response:
        """The principal of the request's credentials (same sources and failure limit as /ws).

        Lets a page learn its role before it draws controls; answers 401 with ``login_required`` when
        there are no credentials and no anonymous role. Never echoes a secret.
        """
        env = request.environ
        addr = str(env.get("REMOTE_ADDR", "?"))
        if self.failures.blocked(addr):
            return self._refuse(429, "too many failed logins; wait a minute", addr, "auth_blocked")
        principal = self.access.anonymous
        try:
            creds = credentials_from_request(request.headers.get("Authorization"), request.args.get("token"))
            if creds:
                principal = self.access.authenticate_token(creds)
                self.failures.succeeded(addr)
        except AuthError:
            self.failures.failed(addr)
            return self._refuse(401, "authentication failed", addr, "auth")
        body: dict[str, Any] = {"mode": self.config.mode.value, "robot_id": self.config.robot_id}
        if principal is None:
            body.update(login_required=True)
            resp = jsonify(body)
            resp.status_code = 401
        else:
            rules = {action: list(patterns) for action, patterns in principal.role.rules.items()}
            body.update(user=principal.user, role=principal.role.name, rules=rules)
            if self.config.mode is Mode.FLEET:
                body["fleet"] = fleet_permissions(principal.role)
            resp = jsonify(body)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def _admit(self) -> Response | None:
        """Origin, rate of failed logins and credentials, before the upgrade; None lets it through."""
        env = request.environ
        client = f"{env.get('REMOTE_ADDR', '?')}:{env.get('REMOTE_PORT', '?')}"
        addr = str(env.get("REMOTE_ADDR", "?"))
        if not self.origins.check(request.headers.get("Origin"), request.headers.get("Host")):
            return self._refuse(403, "origin not allowed", client, "origin")
        if len(self._clients) >= self.config.max_clients:
            return self._refuse(503, "too many clients", client, "capacity")
        if self.failures.blocked(addr):
            return self._refuse(429, "too many failed logins; wait a minute", client, "auth_blocked")
        principal = self.access.anonymous
        try:
            creds = credentials_from_request(request.headers.get("Authorization"), request.args.get("token"))
            if creds:
                principal = self.access.authenticate_token(creds)
        except AuthError as exc:
            self.failures.failed(addr)
            self.auditor.record(robot="", session="", user=exc.user, role="", client=client, op="connect",
                                target="/ws", allowed=False, reason=exc.reason)  # fmt: skip
            return self._refuse(401, "authentication failed", client, "auth")
        if creds:
            self.failures.succeeded(addr)
        env["rp.principal"] = principal
        env["rp.client"] = client
        if not self.config.permessage_deflate:
            env.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
        return None

    def _refuse(self, code: int, text: str, client: str, kind: str) -> Response:
        self.refused[kind] = self.refused.get(kind, 0) + 1
        self.log.warning(f"refused WebSocket from {client}: {text}")
        return Response(text + "\n", status=code, mimetype="text/plain")

    def _serve_client(self, ws: Any, principal: Any, client: str) -> None:
        with contextlib.suppress(OSError):  # small telemetry frames must not wait for Nagle + delayed ACK
            ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ws.sock = _LockedSocket(ws.sock)
        session = self.gateway.open(principal, client)
        entry = _Client(session, ws)
        entry.sender = threading.Thread(target=self._send_loop, args=(entry,), name=f"ws-send-{session.session_id}",
                                        daemon=True)  # fmt: skip
        with self._lock:
            self._clients[session.session_id] = entry
        entry.sender.start()
        who = principal.user if principal is not None else "(not yet authenticated)"
        self.log.info(f"client {session.session_id} connected from {client} as {who}")
        try:
            while not self._stopping.is_set() and not session.closed:
                frame = ws.receive(timeout=RECEIVE_POLL_S)
                if frame is None:
                    if not ws.connected:
                        break
                    continue
                if not self.gateway.handle(session, frame):
                    break
        except ConnectionClosed:
            pass
        finally:
            self.gateway.close(session)
            with self._lock:
                self._clients.pop(session.session_id, None)
            entry.sender.join(STOP_JOIN_TIMEOUT_S)
            self.log.info(f"client {session.session_id} ({session.user or '-'}) disconnected")

    def _send_loop(self, entry: _Client) -> None:
        session, ws = entry.session, entry.ws
        while True:
            batch = session.take(SENDER_POLL_S)
            if batch is None:
                return
            if not batch:
                continue
            frames = session.render_wire(batch)
            session.sending_since = time.monotonic()
            try:
                if not ws.connected:
                    raise ConnectionClosed()
                for chunk in _chunks(frames):
                    ws.sock.sendall(chunk)  # one write per ~256 KB, not per message
            except (ConnectionClosed, OSError):
                session.close()
                _shutdown_socket(ws)  # wakes the receive loop
                return
            finally:
                session.sending_since = None

    def _housekeeping(self) -> None:
        while not self._stopping.wait(HOUSEKEEPING_PERIOD_S):
            now = time.monotonic()
            with self._lock:
                clients = list(self._clients.values())
            for client in clients:
                since = client.session.sending_since
                if since is not None and now - since > self.config.stall_timeout_s:
                    self.refused["stalled"] = self.refused.get("stalled", 0) + 1
                    self.log.warning(f"client {client.session.session_id} stalled for "
                                     f"{now - since:.0f}s: disconnecting it")  # fmt: skip
                    client.session.close()
                    _shutdown_socket(client.ws)

    def stats(self) -> dict[str, Any]:
        return {
            "mode": self.config.mode.value,
            "nats_connected": self.nats.connected,
            "hub": self.hub.snapshot(),
            "gateway": {
                "frames": self.gateway.counters.frames,
                "commands": self.gateway.counters.commands,
                "service_calls": self.gateway.counters.service_calls,
                "errors": dict(self.gateway.counters.errors),
            },
            "refused": dict(self.refused),
            "leases": {"held": sorted(self.leases.held()), **vars(self.leases.counters)},
            "audit_events": self.auditor.events,
            "nats": self.nats.snapshot(),
        }


def _chunks(frames: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    pending: list[bytes] = []
    size = 0
    for frame in frames:
        pending.append(frame)
        size += len(frame)
        if size >= WRITE_CHUNK_BYTES:
            out.append(b"".join(pending))
            pending, size = [], 0
    if pending:
        out.append(b"".join(pending))
    return out


def _shutdown_socket(ws: Any) -> None:
    sock = getattr(ws, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
