"""What the agent does with each client frame: parse, authorize, act, answer; no sockets, no threads.

One :class:`Gateway` per agent. The server calls :meth:`open` when a WebSocket is accepted,
:meth:`handle` for each frame the client sends (in that client's receive thread) and :meth:`close`
when it goes away. Every failure is a typed :class:`WsError`, answered with a rosbridge ``status``
message to that client, counted by kind, and never affects other clients. Every command (publish,
call_service) and every refusal is audited.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from robot_platform.common.rate_limit import TokenBucket
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.envelope import CONTENT_TYPE, H_CONTENT_TYPE, H_MSG_ID, H_ROBOT, H_TYPE, EnvelopeFactory
from robot_platform.messaging.errors import BridgeError
from robot_platform.messaging.rostypes import TypeRegistry, type_name_of
from robot_platform.ws import protocol
from robot_platform.ws.access import AccessControl, Principal
from robot_platform.ws.audit import Auditor
from robot_platform.ws.client_session import ClientSession, SessionLimits
from robot_platform.ws.errors import AuthBusyError, AuthError, MessageError, ProtocolError, WsError
from robot_platform.ws.fanout import Hub
from robot_platform.ws.login_limiter import LoginLimiter
from robot_platform.ws.topics import Target, TopicMapper

H_USER = "Rp-User"
H_ERROR = "Rp-Error"
LEVEL_ORDER = {name: i for i, name in enumerate(protocol.LEVELS)}
MAX_ENVELOPE_FACTORIES = 1024


class NatsPort:
    """What the gateway needs from NATS (the real one is :class:`robot_platform.messaging.nats_link.NatsLink`)."""

    def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None: ...

    def request(self, subject: str, body: bytes, headers: dict[str, str], timeout: float,
                reply: Callable[[Any, str], None]) -> None: ...  # fmt: skip


@dataclass(frozen=True)
class GatewayLimits:
    max_frame_bytes: int = 1024 * 1024
    max_client_msgs_per_s: float = 200.0  # token bucket per client; beyond: error status, frame dropped
    service_timeout_s: float = 5.0
    max_auth_failures: int = 3  # per connection; then the connection is closed


@dataclass
class GatewayCounters:
    frames: int = 0
    commands: int = 0
    service_calls: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class Gateway:
    """See the module docstring."""

    def __init__(self, mapper: TopicMapper, access: AccessControl, hub: Hub, nats: NatsPort, auditor: Auditor,
                 codec: Codec, agent_id: str, limits: GatewayLimits | None = None,
                 session_limits: SessionLimits | None = None, logins: LoginLimiter | None = None) -> None:  # fmt: skip
        self.mapper = mapper
        self.access = access
        self.hub = hub
        self.nats = nats
        self.auditor = auditor
        self.codec = codec
        self.agent_id = agent_id
        self.limits = limits or GatewayLimits()
        self.session_limits = session_limits or SessionLimits()
        self.counters = GatewayCounters()
        self.logins = logins or LoginLimiter()  # shared with the upgrade and /whoami: one limit for every path
        self._ids = itertools.count(1)
        self._envelopes: dict[str, EnvelopeFactory] = {}
        self._origin = uuid.uuid4().hex
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def open(self, principal: Principal | None, client: str, address: str = "") -> ClientSession:
        """New session; ``principal`` None means: the first message must be an ``auth`` op. ``client`` is
        ``host:port`` (audit), ``address`` the remote host (login limits; default: taken from ``client``)."""
        session = ClientSession(self._next_session_id(), limits=self.session_limits)
        self.setup_session(session, principal, client, address)
        return session

    def _next_session_id(self) -> str:
        return f"c{next(self._ids)}"

    def setup_session(self, session: ClientSession, principal: Principal | None, client: str, address: str) -> None:
        """Addresses, inbound rate limit, principal, and the hub's registration (also of Foxglove sessions)."""
        session.client = client
        session.address = address or client.rpartition(":")[0] or client
        rate = self.limits.max_client_msgs_per_s
        # Bursts of 5 s worth, at least 100: a console subscribing to a whole fleet on page load sends a
        # few hundred subscribes at once.
        session.inbound_limiter = TokenBucket(rate, max(100.0, 5 * rate), time.monotonic())
        if principal is not None:
            self._set_principal(session, principal)
        self.hub.add_session(session)

    def close(self, session: ClientSession) -> None:
        self.hub.remove_session(session)

    # ------------------------------------------------------------------ frames
    def handle(self, session: ClientSession, frame: str | bytes) -> bool:
        """Process one client frame; False means: close this connection (too many failed logins)."""
        self.counters.frames += 1
        rid: str | None = None
        try:
            if not session.inbound_limiter.take(time.monotonic()):
                raise ProtocolError("too many messages; slow down", "", "")
            data = protocol.decode_frame(frame, self.limits.max_frame_bytes)
            req = protocol.parse(data)
            rid = req.id
            if isinstance(req, protocol.Auth):
                return self._auth(session, req)
            if session.principal is None:
                raise AuthError("authenticate first: send {op: auth, user, secret} or connect with a token")
            self._dispatch(session, req)
        except WsError as exc:
            self._reply_error(session, exc, rid)
        return True

    def _dispatch(self, session: ClientSession, req: protocol.Request) -> None:
        p: Principal = session.principal
        if isinstance(req, protocol.Subscribe):
            target = self.mapper.subscribe(req.topic)
            self._check(session, "subscribe", req.topic, target.robot_id, target.subject, req.id)
            try:
                sub, created = session.subscribe(req, target.subject, latest_only=target.frames)
            except OverflowError as exc:
                raise ProtocolError(str(exc), "subscribe", "topic", req.id) from None
            if created:
                self.hub.link(session, sub)
            else:  # new options (throttle_rate): the subject feeding it may change (overview.py)
                self.hub.retune(sub)
        elif isinstance(req, protocol.Unsubscribe):
            removed = session.unsubscribe(req.topic, req.id)
            if removed is not None:
                self.hub.unlink(session, removed)
        elif isinstance(req, protocol.Advertise):
            target = self.mapper.publish(req.topic)
            self._check(session, "publish", req.topic, target.robot_id, target.subject, req.id, "advertise")
            self._load_type(req.type, req.id)
            if len(session.advertised) >= self.session_limits.max_subscriptions and req.topic not in session.advertised:
                raise ProtocolError("too many advertised topics", "advertise", "topic", req.id)
            session.advertised[req.topic] = req.type
        elif isinstance(req, protocol.Unadvertise):
            session.advertised.pop(req.topic, None)
        elif isinstance(req, protocol.Publish):
            self._publish(session, p, req)
        elif isinstance(req, protocol.CallService):
            self._call(session, p, req)
        elif isinstance(req, protocol.SetLevel):
            session.status_level = req.level

    def _publish(self, session: ClientSession, p: Principal, req: protocol.Publish) -> None:
        type_name = session.advertised.get(req.topic) or req.type
        if not type_name:
            raise ProtocolError("advertise the topic (or give 'type') before publishing", "publish", "topic", req.id)
        target = self.mapper.publish(req.topic)
        self._check(session, "publish", req.topic, target.robot_id, target.subject, req.id, type_name=type_name)
        cls = self._load_type(type_name, req.id)
        try:
            msg = self.codec.from_dict(cls, json_bytes_fields(self.codec.registry, cls, req.msg, req.id))
        except BridgeError as exc:
            raise MessageError(str(exc), req.id) from None
        self.send_command(session, req.topic, type_name, msg, req.id)

    def send_command(self, session: ClientSession, name: str, type_name: str, msg: Any, rid: str | None) -> None:
        """Publish a client's ROS message to the command subject of ``name`` (role checked, audited);
        the rosbridge and the Foxglove paths both end here."""
        target = self.mapper.publish(name)
        self._check(session, "publish", name, target.robot_id, target.subject, rid, type_name=type_name)
        try:
            body = self.codec.encode(msg, target.subject)
        except BridgeError as exc:
            raise MessageError(str(exc), rid) from None
        cls = type(msg)
        env = self._envelope_factory(target.robot_id).make(
            type_name_of(cls), self.codec.registry.type_hash(cls), target.ros_name
        )
        headers = env.headers()
        headers[H_USER] = session.user
        self.nats.publish(target.subject, body, headers)
        self.counters.commands += 1
        self._audit(session, "publish", name, target.robot_id, target.subject, type_name)

    def _call(self, session: ClientSession, p: Principal, req: protocol.CallService) -> None:
        target = self.mapper.service(req.service)
        self._check(session, "call", req.service, target.robot_id, target.subject, req.id, "call_service", req.type)
        args = req.args
        if target.as_user:  # audited as who is logged in, whatever the page sent
            args = {**(args if isinstance(args, dict) else {}), "user": p.user}
        try:
            body = msgpack.packb(args, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"args cannot be encoded: {exc}", "call_service", "args", req.id) from None
        self.counters.service_calls += 1
        self._audit(session, "call_service", req.service, target.robot_id, target.subject, req.type)

        def reply(result: Any, reason: str) -> None:
            if result is None:
                session.send_control(protocol.service_response(req.service, req.id, reason, False))
                return
            rheaders, data = result
            error = (rheaders or {}).get(H_ERROR)
            if error:
                session.send_control(protocol.service_response(req.service, req.id, error[:500], False))
                return
            try:
                values = msgpack.unpackb(data, raw=False, strict_map_key=True) if data else {}
            except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                values, ok = "service reply is not msgpack", False
            else:
                ok = True
                if target.api:
                    values, ok = api_values(values)
                    if not ok:
                        self._count_error("fleet_service_error")
            session.send_control(protocol.service_response(req.service, req.id, values, ok))

        self.call_raw(target, body, p.user, req.type, reply)

    def call_raw(self, target: Target, body: bytes, user: str, type_name: str,
                 reply: Callable[[Any, str], None]) -> None:  # fmt: skip
        """Send one msgpack service request (already checked and audited) with the platform's headers."""
        headers = {H_CONTENT_TYPE: CONTENT_TYPE, H_MSG_ID: uuid.uuid4().hex, H_USER: user}
        if target.robot_id:
            headers[H_ROBOT] = target.robot_id
        if type_name:
            headers[H_TYPE] = type_name[:200]
        self.nats.request(target.subject, body, headers, self.limits.service_timeout_s, reply)

    def _auth(self, session: ClientSession, req: protocol.Auth) -> bool:
        """The ``auth`` op, under the same login limiter as the upgrade token; False closes the connection
        (a blocked address or user, or ``max_auth_failures`` on this connection)."""
        if session.principal is not None:
            raise ProtocolError("already authenticated; open a new connection to change user", "auth", "", req.id)
        wait = self.logins.retry_after(session.address, req.user)
        if wait > 0:
            self._refuse_auth(session, req, AuthError(f"too many failed logins; retry in {wait:.0f} s", req.user[:64]))
            return False
        try:
            principal = self.access.authenticate(req.user, req.secret)
        except AuthBusyError as exc:
            self._refuse_auth(session, req, exc)
            return False
        except AuthError as exc:
            session.auth_failures += 1
            self.logins.failed(session.address, req.user)
            self._refuse_auth(session, req, exc)
            return session.auth_failures < self.limits.max_auth_failures
        self.logins.succeeded(session.address, principal.user)
        self._set_principal(session, principal)
        self.auditor.record(robot=self.agent_id, session=session.session_id, user=principal.user,
                            role=principal.role.name, client=session.client, op="auth", target="")  # fmt: skip
        if LEVEL_ORDER["info"] >= LEVEL_ORDER[session.status_level]:
            session.send_control(protocol.status("info", f"authenticated as {principal.user}", req.id))
        return True

    def _refuse_auth(self, session: ClientSession, req: protocol.Auth, exc: AuthError) -> None:
        self.auditor.record(
            robot=self.agent_id, session=session.session_id, user=exc.user, role="", client=session.client,
            op="auth", target="", allowed=False, reason=exc.reason,
        )  # fmt: skip
        self._reply_error(session, exc, req.id)

    # ------------------------------------------------------------------ helpers
    def _set_principal(self, session: ClientSession, principal: Principal) -> None:
        session.principal = principal
        session.user = principal.user
        session.role = principal.role.name

    def _check(self, session: ClientSession, action: str, name: str, robot: str, subject: str,
               rid: str | None, op: str = "", type_name: str = "") -> None:  # fmt: skip
        p: Principal = session.principal
        if p.role.allows(action, subject):
            return
        op = op or action
        if action != "subscribe":  # refused commands are audited; refused reads only counted
            self._audit(session, op, name, robot, subject, type_name, allowed=False, reason="role")
        self.access.check(p, action, subject, rid)

    def _audit(self, session: ClientSession, op: str, name: str, robot: str, subject: str, type_name: str,
               allowed: bool = True, reason: str = "") -> None:  # fmt: skip
        self.auditor.record(robot=robot, session=session.session_id, user=session.user, role=session.role,
                            client=session.client, op=op, target=name, subject=subject, type_name=type_name,
                            allowed=allowed, reason=reason)  # fmt: skip

    def _load_type(self, type_name: str, rid: str | None) -> type:
        try:
            return self.codec.registry.load(type_name)
        except BridgeError as exc:
            raise MessageError(str(exc), rid) from None

    def _envelope_factory(self, robot_id: str) -> EnvelopeFactory:
        with self._lock:
            factory = self._envelopes.get(robot_id)
            if factory is None:
                if len(self._envelopes) >= MAX_ENVELOPE_FACTORIES:
                    self._envelopes.clear()  # sequence numbers restart; Rp-Origin tells receivers
                factory = EnvelopeFactory(robot_id, self._origin)
                self._envelopes[robot_id] = factory
            return factory

    def _count_error(self, kind: str) -> None:
        with self._lock:
            self.counters.errors[kind] = self.counters.errors.get(kind, 0) + 1

    def _reply_error(self, session: ClientSession, exc: WsError, rid: str | None) -> None:
        self._count_error(exc.kind)
        session.note_refusal(exc.kind, str(exc))
        if LEVEL_ORDER[exc.level] >= LEVEL_ORDER[session.status_level]:
            session.send_control(protocol.status(exc.level, str(exc), exc.request_id or rid))


def api_values(reply: Any) -> tuple[Any, bool]:
    """(values, ok) of a fleet service's reply ``{ok: true, result}`` / ``{ok: false, code, error, field?}``
    (the jobs API's shape, also used by fleet_registry): the result, or the reason as text."""
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        return "fleet service reply is not {ok, result} / {ok: false, code, error}", False
    if reply["ok"]:
        return reply.get("result"), True
    reason = str(reply.get("error") or "failed")[:500]
    code, field_name = reply.get("code"), reply.get("field")
    if field_name:
        reason = f"{field_name}: {reason}"
    return (f"{code}: {reason}" if code else reason), False


def json_bytes_fields(registry: TypeRegistry, cls: type, data: Any, rid: str | None, path: str = "") -> Any:
    """rosbridge JSON carries ``uint8[]``/``byte[]`` as base64 strings: decode them to bytes (in place
    of a copy) so the codec, which takes bytes or lists of ints, validates them like any other field."""
    if not isinstance(data, dict):
        return data  # the codec reports the wrong type with its path
    out = dict(data)
    for f in registry.layout(cls):
        value = out.get(f.name)
        if value is None:
            continue
        if f.is_bytes and isinstance(value, str):
            try:
                out[f.name] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise MessageError(f"{path}{f.name}: not valid base64 (uint8[] as text must be base64)", rid) from None
        elif isinstance(f.elem, type):
            if not f.seq:
                out[f.name] = json_bytes_fields(registry, f.elem, value, rid, f"{path}{f.name}.")
            elif isinstance(value, list):
                out[f.name] = [json_bytes_fields(registry, f.elem, v, rid, f"{path}{f.name}[{i}].")
                               for i, v in enumerate(value)]  # fmt: skip
    return out
