"""The ws_agent process without ROS: NATS, sessions, camera leases, and the asyncio WebSocket server.

Parts: connections.py (the event loop: accept, handshake timeout, cap on pending connections, one
coroutine per client, sender and stall check), http_api.py (routes and upgrade admission), static_files.py
(web/), access.py / roles.py / hashing.py / login_limiter.py / origin.py / audit.py (who may do what),
gateway.py (client frames), hub.py (NATS fan-out), client_session.py / outgoing.py (per-client queues),
frame_relay.py (camera frames), camera_leases.py (camera leases). Threads: the event loop, a small
worker pool, the hash pool, the NATS thread (fan-out into bounded session queues, never a socket write)
and a lease thread that holds one frame_publisher lease per camera some client watches. None of them
grows with the number of connections.

Security defaults: bind 127.0.0.1; TLS when cert and key are given; only loopback Host names unless
``allowed_hosts`` lists site names; same-origin browsers only unless ``allowed_origins`` lists more; no
anonymous role unless configured; no request line or query string is logged (tokens may travel there).
permessage-deflate is refused by default: it costs CPU per client and message (telemetry fan-out).
"""

from __future__ import annotations

import functools
import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robot_platform.exceptions import ConfigError, MissingParameterError
from robot_platform.messaging.backoff import Backoff
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.connect import Credentials
from robot_platform.messaging.errors import SubjectError
from robot_platform.messaging.nats_link import NatsLink
from robot_platform.messaging.rostypes import TypeRegistry
from robot_platform.ws.access import AccessControl
from robot_platform.ws.alert_export_http import AlertExports
from robot_platform.ws.audit import Auditor
from robot_platform.ws.camera_leases import LeaseKeeper, LeaseLoop
from robot_platform.ws.client_session import SessionLimits
from robot_platform.ws.connections import ServerLimits, WsServer
from robot_platform.ws.fanout import Hub
from robot_platform.ws.foxglove_catalog import Catalog, load_bridge_routes
from robot_platform.ws.foxglove_gateway import FoxgloveGateway
from robot_platform.ws.frame_relay import is_frame_subject
from robot_platform.ws.gateway import Gateway, GatewayLimits
from robot_platform.ws.hashing import DEFAULT_HASH_WORKERS, HashPool, pin_mmap_threshold
from robot_platform.ws.http_api import HttpApi, fleet_permissions
from robot_platform.ws.login_limiter import LoginLimiter
from robot_platform.ws.origin import HostPolicy, OriginPolicy
from robot_platform.ws.overview import OverviewPolicy
from robot_platform.ws.site_map import load_site_map
from robot_platform.ws.static_files import StaticFiles
from robot_platform.ws.topics import Mode, TopicMapper
from robot_platform.ws.user_roles import resolve_roles

__all__ = ["GIL_SWITCH_INTERVAL_S", "AgentConfig", "LoginLimits", "WsAgent", "fleet_permissions"]

STOP_JOIN_TIMEOUT_S = 5.0
# The NATS thread hands messages to the event loop through the GIL; CPython's default 5 ms switch
# interval adds up to 5 ms per hand-over under load. The entry points (node.main, standalone.main) set
# this process-wide; measured in bench/RESULTS.md.
GIL_SWITCH_INTERVAL_S = 0.001
LEASE_RETRY_S = 1.0  # a failed lease request (frame_publisher down or busy) is retried this often
# NATS: the fan-out subscriptions buffer more than the bridge's (thousands of msg/s into the hub);
# reconnects are capped lower than the bridge's: a browser is waiting.
NATS_SUB_PENDING_MSGS = 10_000
NATS_SUB_PENDING_BYTES = 64 * 1024 * 1024
NATS_OUTBOX_CAPACITY = 1000
NATS_RECONNECT_WAIT_MAX_S = 2.0
# Fleet mode: robots get Foxglove channels when their health is first seen. ``.>``: a subject the hub
# never subscribes (client names map to robots.<id>.health[.<part>]), so the two never replace each other.
FLEET_DISCOVERY_SUBJECT = "robots.*.health.>"


@dataclass(frozen=True)
class LoginLimits:
    """Failed-login limits shared by every login path (see login_limiter.py)."""

    max_failures_per_addr: int = 10
    max_failures_per_user: int = 5
    window_s: float = 60.0
    max_backoff_s: float = 300.0
    hash_workers: int = DEFAULT_HASH_WORKERS


@dataclass
class AgentConfig:
    mode: Mode = Mode.ROBOT
    robot_id: str = ""  # required in robot mode (no robot may claim to be another by default)
    host: str = "127.0.0.1"
    port: int = 9090
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str = ""
    nats_password: str = field(default="", repr=False)
    users_file: str = ""
    anonymous_role: str = ""
    allowed_origins: list[str] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)  # besides loopback names and a specific bind host
    web_dir: str = ""
    site_map_file: str = ""  # site_map.py: robots' origins and floor plan for the console's site view
    tls_cert: str = ""
    tls_key: str = ""
    permessage_deflate: bool = False
    ping_interval_s: float = 25.0
    stall_timeout_s: float = 30.0
    max_clients: int = 100
    max_clients_per_user: int = 0  # 0: no limit per user
    max_pending_connections: int = 128  # accepted, request not complete; the oldest is cut beyond
    handshake_timeout_s: float = 5.0  # from accept to a complete request (and the upgrade)
    auth_timeout_s: float = 10.0  # a connection without a login must send its auth op within this
    max_payload_bytes: int = 8 * 1024 * 1024
    frame_lease_ttl_s: float = 5.0  # ttl asked for the agent's camera leases (renewed every ttl/3)
    overview_topics: list[str] = field(default_factory=list)  # robots' decimated copies (ws/overview.py)
    overview_rate_hz: float = 2.0
    foxglove_bridge_config: str = ""  # nats_bridge params YAML: Foxglove channels (foxglove_catalog.py); '' = off
    logins: LoginLimits = field(default_factory=LoginLimits)
    gateway: GatewayLimits = field(default_factory=GatewayLimits)
    session: SessionLimits = field(default_factory=SessionLimits)


class WsAgent:
    """Owns every part of the agent; ``start()`` / ``stop()`` (idempotent, bounded)."""

    def __init__(self, config: AgentConfig, log: logging.Logger | Any | None = None) -> None:
        if config.mode is Mode.ROBOT and not config.robot_id:
            raise MissingParameterError("robot_id", "a robot-mode ws_agent serves one robot: set robot_id")
        self.config = config
        self.log = log or logging.getLogger("ws_agent")
        agent_id = config.robot_id if config.mode is Mode.ROBOT else "control"
        self.hasher = HashPool(config.logins.hash_workers)
        if config.users_file:
            self.access = AccessControl.from_file(config.users_file, config.anonymous_role, self.hasher)
        else:
            self.access = AccessControl({}, resolve_roles({}), config.anonymous_role, self.hasher)
        self.logins = LoginLimiter(config.logins.max_failures_per_addr, config.logins.max_failures_per_user,
                                   config.logins.window_s, max_backoff_s=config.logins.max_backoff_s)  # fmt: skip
        self.nats = NatsLink(
            config.nats_url, name=f"ws_agent.{agent_id}", outbox_capacity=NATS_OUTBOX_CAPACITY,
            # own reply inbox: _INBOX.<user>, or on a robot _INBOX.<robot id> (what its leaf link carries back)
            credentials=Credentials(config.nats_user, config.nats_password,
                                    config.robot_id if config.mode is Mode.ROBOT else ""),
            backoff=Backoff(max_s=NATS_RECONNECT_WAIT_MAX_S), log=self.log,
            sub_pending_msgs=NATS_SUB_PENDING_MSGS, sub_pending_bytes=NATS_SUB_PENDING_BYTES,
        )  # fmt: skip
        self.leases = LeaseKeeper(config.frame_lease_ttl_s, LEASE_RETRY_S, f"ws_agent-{agent_id}")
        self.lease_loop = LeaseLoop(self.leases, self.nats, self.log.warning)
        try:
            overview = OverviewPolicy.of(config.overview_topics, config.overview_rate_hz)
        except (SubjectError, ValueError) as exc:
            raise ConfigError("overview_topics", config.overview_topics, str(exc)) from None
        self.hub = Hub(self._on_interest, config.max_payload_bytes, self.log.warning, overview)
        self.auditor = Auditor(agent_id, self.nats.publish, self.log)
        self.gateway = Gateway(
            TopicMapper(config.mode, config.robot_id), self.access, self.hub, self.nats, self.auditor,
            Codec(TypeRegistry(), config.gateway.max_frame_bytes), agent_id, config.gateway, config.session,
            self.logins,
        )  # fmt: skip
        self.foxglove: FoxgloveGateway | None = None
        if config.foxglove_bridge_config:
            catalog = Catalog(config.mode, load_bridge_routes(config.foxglove_bridge_config))
            self.foxglove = FoxgloveGateway(self.gateway, catalog, agent_id)
            for error in catalog.schema_errors:
                self.log.warning(f"Foxglove: no channel for {error}")
            if config.mode is Mode.ROBOT:
                self.foxglove.add_robot(config.robot_id)
            else:  # every robot's bridge reports on robots.<id>.health.nats_bridge (a subject no client name maps to)
                self.nats.subscribe(FLEET_DISCOVERY_SUBJECT, self._on_robot_seen)
        hosts = HostPolicy(config.allowed_hosts, config.host)
        self.refused: dict[str, int] = {}
        self._refused_lock = threading.Lock()
        self.exports = AlertExports(self.nats.request, self.auditor, self._count_refused, self.log.warning)
        self.api = HttpApi(
            mode=config.mode, robot_id=config.robot_id, access_control=self.access, logins=self.logins,
            hosts=hosts, origins=OriginPolicy(config.allowed_origins, hosts),
            static=StaticFiles(Path(config.web_dir) if config.web_dir else None), auditor=self.auditor,
            client_slots=self._client_slots, stats=self.stats, refuse=self._count_refused, log=self.log.warning,
            site_map=load_site_map(config.site_map_file), exports=self.exports,
        )  # fmt: skip
        limits = ServerLimits(
            max_clients=config.max_clients, max_clients_per_user=config.max_clients_per_user,
            max_pending_connections=config.max_pending_connections,
            handshake_timeout_s=config.handshake_timeout_s, auth_timeout_s=config.auth_timeout_s,
            ping_interval_s=config.ping_interval_s, stall_timeout_s=config.stall_timeout_s,
            max_frame_bytes=config.gateway.max_frame_bytes, permessage_deflate=config.permessage_deflate,
            login_threads=self.hasher.capacity,
        )  # fmt: skip
        self.server = WsServer(config.host, config.port, self._ssl_context(), self.api, self.gateway, limits,
                               self._count_refused, self.log, self.foxglove)  # fmt: skip
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        pin_mmap_threshold()  # big hash buffers go back to the system when freed (see hashing.py)
        self.nats.start()
        self.server.start()
        self.lease_loop.start()
        scheme = "https" if self.server.ssl_context else "http"
        self.log.info(f"ws_agent ({self.config.mode.value}) serving {scheme}://{self.config.host}:{self.port}")

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.server.stop()
        self.lease_loop.stop()  # releases sent before the link stops
        self.nats.stop()
        self.hasher.close()

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not (self.config.tls_cert or self.config.tls_key):
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return ctx

    def _client_slots(self) -> bool:
        return len(self.server.clients) < self.config.max_clients

    def _count_refused(self, kind: str) -> None:
        with self._refused_lock:
            self.refused[kind] = self.refused.get(kind, 0) + 1

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
            self.lease_loop.poke()

    def _on_robot_seen(self, subject: str, _headers: Any, _data: bytes) -> None:
        parts = subject.split(".")
        if len(parts) >= 3 and self.foxglove is not None:
            self.foxglove.add_robot(parts[1])

    def stats(self) -> dict[str, Any]:
        with self._refused_lock:
            refused = dict(self.refused)
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
            "refused": refused,
            "connections": self.server.snapshot(),
            "logins": {**self.logins.snapshot(), "hash_busy": self.hasher.busy_refusals},
            "leases": {"held": sorted(self.leases.held()), **vars(self.leases.counters)},
            "audit_events": self.auditor.events,
            "alert_exports": {"started": self.exports.started, "refused": self.exports.refused},
            "foxglove": self.foxglove.stats() if self.foxglove is not None else None,
            "nats": self.nats.snapshot(),
        }
