"""The Foxglove WebSocket protocol over ws_agent's sessions: same logins, roles, audit, queues as rosbridge.

Why inside ws_agent and not the ``foxglove-sdk`` server: the SDK's server (Rust, own port) has no hook to
refuse a connection by credentials, Host or Origin, nor a subscription or a publish by role, and keeps its
own per-client buffers; here a Foxglove client goes through the same upgrade admission (http_api.py), the
same :class:`~.gateway.Gateway` checks and audit lines, the same hub and bounded latest-wins queues
(client_session.py) and the same stall cut (connections.py) as a roslibjs client. Only the wire differs.

Messages: a NATS message (msgpack of the ROS message) becomes CDR once, shared by every Foxglove client
(:meth:`.outgoing.Outgoing.derived`), and each client gets its 13-byte header in front. Publishing: a
client advertises a channel with a topic and schemaName; only the bridge's allowlisted commands (``in``)
of that type are accepted, and each message still needs the role's ``publish`` rule (viewers are refused,
audited). Services: the bridge's ``services`` whose call the role allows, CDR request -> NATS request ->
CDR response. A client without credentials is refused (the protocol has no login op): connect with
``?token=user:secret`` or an Authorization header, or configure ``anonymous_role``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import msgpack
from rclpy.serialization import deserialize_message, serialize_message

from robot_platform.messaging.errors import BridgeError
from robot_platform.ws import foxglove_protocol as fp
from robot_platform.ws import protocol
from robot_platform.ws.access import Principal
from robot_platform.ws.cdr import CdrEncoder, CdrUnsupported
from robot_platform.ws.client_session import ClientSession
from robot_platform.ws.errors import AccessDeniedError, FoxgloveProtocolError, MessageError, TopicError, WsError
from robot_platform.ws.foxglove_catalog import Catalog, Channel, Service
from robot_platform.ws.gateway import H_ERROR, Gateway, json_bytes_fields
from robot_platform.ws.outgoing import Frame, Outgoing, Pending

SERVER_NAME = "robot_platform ws_agent"
MAX_CLIENT_CHANNELS = 64
MAX_REFUSED_ITEMS = 8  # refused items of one message; the rest of it is refused untried (CPU per frame bounded)


class FoxgloveSession(ClientSession):
    """A :class:`ClientSession` whose publishes are Foxglove message-data frames (CDR)."""

    def __init__(self, *args: Any, to_cdr: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.to_cdr = to_cdr
        self.sub_ids: dict[str, int] = {}  # topic -> the client's subscription id
        self.topics_by_sub: dict[int, str] = {}
        self.client_channels: dict[int, tuple[str, str]] = {}  # client channel id -> (topic, encoding)
        self.client_channel_types: dict[int, str] = {}

    def render_wire(self, batch: list[Frame | Pending]) -> list[bytes]:
        wire: list[bytes] = []
        for item in batch:
            if not isinstance(item, Pending):
                wire.append(protocol.ws_frame(item))
                continue
            sub_id = self.sub_ids.get(item.topic)
            if sub_id is None:
                continue  # unsubscribed after it was queued
            try:
                stamp, payload = item.out.derived("cdr", self.to_cdr)
            except ValueError:
                self._count_render_error(item.topic)
                continue
            wire.append(protocol.ws_frame(fp.message_data_header(sub_id, stamp) + payload))
        return wire


class FoxgloveGateway:
    """Opens Foxglove sessions and handles their frames; the server calls it like a :class:`Gateway`."""

    def __init__(self, gateway: Gateway, catalog: Catalog, agent_id: str) -> None:
        self.gw, self.catalog, self.agent_id = gateway, catalog, agent_id
        self._sessions: dict[str, FoxgloveSession] = {}
        self._lock = threading.Lock()
        self._server_session = uuid.uuid4().hex
        self.cdr_errors = 0
        self.cdr_fallbacks = 0
        self._cdr = CdrEncoder(gateway.codec.registry)

    # ------------------------------------------------------------------ lifecycle
    def open(self, principal: Principal | None, client: str, address: str = "") -> FoxgloveSession:
        session = FoxgloveSession(self.gw._next_session_id(), limits=self.gw.session_limits, to_cdr=self._to_cdr)
        self.gw.setup_session(session, principal, client, address)
        if principal is not None:
            session.send_control(fp.server_info(SERVER_NAME, self._server_session, {"robot_id": self.agent_id}))
            channels, services = self.catalog.snapshot()
            self._announce(session, channels, services)
        with self._lock:
            self._sessions[session.session_id] = session
        return session

    def close(self, session: ClientSession) -> None:
        with self._lock:
            self._sessions.pop(session.session_id, None)
        self.gw.close(session)

    def add_robot(self, robot_id: str) -> None:
        """A robot's channels are new (fleet mode: first health message seen): tell every client."""
        channels, services = self.catalog.add_robot(robot_id)
        if not channels and not services:
            return
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            if session.principal is not None:
                self._announce(session, channels, services)

    def _announce(self, session: FoxgloveSession, channels: list[Channel], services: list[Service]) -> None:
        role = session.principal.role
        visible = [c for c in channels if role.allows("subscribe", self.gw.mapper.subscribe(c.name).subject)]
        if visible:
            session.send_control(fp.advertise([fp.channel(c.id, c.name, c.type_name, c.schema) for c in visible]))
        callable_ = [s for s in services if role.allows("call", self.gw.mapper.service(s.name).subject)]
        if callable_:
            session.send_control(fp.advertise_services([
                fp.service(s.id, s.name, s.type_name, (f"{s.type_name}_Request", s.request),
                           (f"{s.type_name}_Response", s.response)) for s in callable_]))  # fmt: skip

    # ------------------------------------------------------------------ frames
    def handle(self, session: ClientSession, frame: str | bytes) -> bool:
        assert isinstance(session, FoxgloveSession)
        self.gw.counters.frames += 1
        try:
            if not session.inbound_limiter.take(time.monotonic()):
                raise FoxgloveProtocolError("too many messages; slow down", "", "")
            if session.principal is None:
                raise FoxgloveProtocolError("log in first: connect with ?token=user:secret", "", "")
            req = fp.parse(frame, self.gw.limits.max_frame_bytes)
            if isinstance(req, fp.Subscribe):
                self._each(session, req.subscriptions, lambda item: self._subscribe(session, *item))
            elif isinstance(req, fp.Unsubscribe):
                for sub_id in req.subscription_ids:
                    self._unsubscribe(session, sub_id)
            elif isinstance(req, fp.Advertise):
                self._each(session, req.channels, lambda ch: self._client_advertise(session, ch))
            elif isinstance(req, fp.Unadvertise):
                for cid in req.channel_ids:
                    session.client_channels.pop(cid, None)
                    session.client_channel_types.pop(cid, None)
            elif isinstance(req, fp.MessageData):
                self._publish(session, req)
            elif isinstance(req, fp.ServiceRequest):
                self._call(session, req)
        except WsError as exc:
            self._refused(session, exc)
        return True

    def _each(self, session: FoxgloveSession, items: Any, act: Any) -> None:
        """The items of one message (subscriptions, channels): a refused item does not stop the others, but
        the client gets ONE status per message (how many were refused, the first reason), and after a refusal
        by role the rest are not tried, so one message costs at most one audited refusal, as one rosbridge
        message does (a viewer advertising 1,024 channels in a frame would otherwise write 1,024 audits);
        after MAX_REFUSED_ITEMS refusals neither (1,024 duplicate subscription ids cost 8 checks, not 1,024)."""
        refused: list[WsError] = []
        skipped = 0
        for n, item in enumerate(items):
            try:
                act(item)
            except AccessDeniedError as exc:
                refused.append(exc)
                skipped = len(items) - n - 1
                break
            except WsError as exc:
                refused.append(exc)
                if len(refused) >= MAX_REFUSED_ITEMS:
                    skipped = len(items) - n - 1
                    break
        if not refused:
            return
        for exc in refused:  # the items tried; the skipped rest is in the status text, not in the counters
            self.gw._count_error(exc.kind)
        first = refused[0]
        text = str(first)
        if len(refused) + skipped > 1:
            text = f"{len(refused) + skipped} of {len(items)} items refused; the first: {first}"
        session.note_refusal(first.kind, text)
        session.send_control(fp.status("error", text))

    def _refused(self, session: FoxgloveSession, exc: WsError) -> None:
        self.gw._count_error(exc.kind)
        session.note_refusal(exc.kind, str(exc))
        session.send_control(fp.status("error", str(exc)))

    def _call_refused(self, session: FoxgloveSession, req: fp.ServiceRequest, kind: str, reason: str) -> None:
        """A call the client got wrong (unknown service, not cdr, bad CDR, role): counted like any refusal."""
        self.gw._count_error(kind)
        session.note_refusal(kind, f"service call {req.service_id}: {reason}")
        session.send_control(fp.service_failure(req.service_id, req.call_id, reason))

    def _subscribe(self, session: FoxgloveSession, sub_id: int, channel_id: int) -> None:
        channel = self.catalog.channels.get(channel_id)
        if channel is None:
            raise FoxgloveProtocolError(f"no channel {channel_id}", "subscribe", "channelId")
        if sub_id in session.topics_by_sub or channel.name in session.sub_ids:
            raise FoxgloveProtocolError(
                f"subscription {sub_id} or channel {channel_id} already subscribed", "subscribe", "id"
            )
        target = self.gw.mapper.subscribe(channel.name)
        self.gw._check(session, "subscribe", channel.name, target.robot_id, target.subject, None)
        try:
            sub, created = session.subscribe(protocol.Subscribe(topic=channel.name, id=str(sub_id)), target.subject)
        except OverflowError as exc:
            raise FoxgloveProtocolError(str(exc), "subscribe", "subscriptions") from None
        session.sub_ids[channel.name] = sub_id
        session.topics_by_sub[sub_id] = channel.name
        if created:
            self.gw.hub.link(session, sub)

    def _unsubscribe(self, session: FoxgloveSession, sub_id: int) -> None:
        topic = session.topics_by_sub.pop(sub_id, None)
        if topic is None:
            return
        session.sub_ids.pop(topic, None)
        removed = session.unsubscribe(topic, None)
        if removed is not None:
            self.gw.hub.unlink(session, removed)

    def _client_advertise(self, session: FoxgloveSession, ch: fp.ClientChannel) -> None:
        if ch.encoding not in fp.CLIENT_ENCODINGS:
            raise FoxgloveProtocolError(
                f"encoding must be one of {', '.join(fp.CLIENT_ENCODINGS)}", "advertise", "encoding"
            )
        target = self.gw.mapper.publish(ch.topic)
        allowed_type = self.catalog.command_type(target.ros_name)
        if allowed_type is None:
            raise TopicError(ch.topic, "not an allowlisted command (the bridge's 'in' list)")
        if _short(ch.schema_name) != _short(allowed_type):
            raise TopicError(ch.topic, f"takes {allowed_type}, not {ch.schema_name}")
        self.gw._check(session, "publish", ch.topic, target.robot_id, target.subject, None, "advertise", allowed_type)
        if len(session.client_channels) >= MAX_CLIENT_CHANNELS and ch.id not in session.client_channels:
            raise FoxgloveProtocolError("too many advertised channels", "advertise", "channels")
        session.client_channels[ch.id] = (ch.topic, ch.encoding)
        session.client_channel_types[ch.id] = allowed_type

    def _publish(self, session: FoxgloveSession, req: fp.MessageData) -> None:
        advertised = session.client_channels.get(req.channel_id)
        if advertised is None:
            raise FoxgloveProtocolError(f"channel {req.channel_id} was not advertised", "messageData", "channelId")
        topic, encoding = advertised
        type_name = session.client_channel_types[req.channel_id]
        cls = self.gw._load_type(type_name, None)
        try:
            if encoding == "cdr":
                msg = deserialize_message(req.payload, cls)
            else:
                data = json.loads(req.payload)
                msg = self.gw.codec.from_dict(cls, json_bytes_fields(self.gw.codec.registry, cls, data, None))
        except BridgeError as exc:
            raise MessageError(str(exc)) from None
        except Exception as exc:  # rclpy raises plain exceptions for bad CDR; json ValueError
            raise MessageError(f"{topic}: payload is not {encoding} of {type_name}: {type(exc).__name__}") from None
        self.gw.send_command(session, topic, type_name, msg, None)

    def _call(self, session: FoxgloveSession, req: fp.ServiceRequest) -> None:
        svc = self.catalog.services.get(req.service_id)
        fail = session.send_control
        if svc is None:
            self._call_refused(session, req, "protocol", "no such service")
            return
        if req.encoding != fp.MESSAGE_ENCODING:
            self._call_refused(session, req, "protocol", "requests must be cdr")
            return
        target = self.gw.mapper.service(svc.name)
        try:
            self.gw._check(
                session, "call", svc.name, target.robot_id, target.subject, None, "call_service", svc.type_name
            )
            srv = self.gw.codec.registry.load_service(svc.type_name)
            request = deserialize_message(req.payload, srv.Request)
            body = msgpack.packb(self.gw.codec.to_dict(request), use_bin_type=True)
        except WsError as exc:
            self._call_refused(session, req, exc.kind, str(exc))
            return
        except Exception as exc:  # bad CDR
            self._call_refused(session, req, "invalid_message",
                               f"request is not cdr of {svc.type_name}: {type(exc).__name__}")  # fmt: skip
            return
        self.gw.counters.service_calls += 1
        self.gw._audit(session, "call_service", svc.name, target.robot_id, target.subject, svc.type_name)

        def reply(result: Any, reason: str) -> None:
            if result is None:
                fail(fp.service_failure(svc.id, req.call_id, reason))
                return
            rheaders, data = result
            if (rheaders or {}).get(H_ERROR):
                fail(fp.service_failure(svc.id, req.call_id, rheaders[H_ERROR][:500]))
                return
            try:
                values = msgpack.unpackb(data, raw=False, strict_map_key=True) if data else {}
                payload = serialize_message(self.gw.codec.from_dict(srv.Response, values, allow_non_finite=True))
            except Exception as exc:
                fail(fp.service_failure(svc.id, req.call_id, f"bad service reply: {type(exc).__name__}"))
                return
            session.send_control(fp.service_response(svc.id, req.call_id, payload))

        self.gw.call_raw(target, body, session.user, svc.type_name, reply)

    # ------------------------------------------------------------------ CDR, once per message
    def _to_cdr(self, out: Outgoing) -> tuple[int, bytes]:
        """(receive time, CDR) of one message: packed from its dict (cdr.py), or through rclpy when the
        fast encoder declines (which then validates and names what is wrong)."""
        try:
            cls = self.gw.codec.registry.load(out.type_name)
            try:
                return time.time_ns(), self._cdr.encode(cls, out.msg())
            except CdrUnsupported:
                self.cdr_fallbacks += 1
            return time.time_ns(), serialize_message(self.gw.codec.from_dict(cls, out.msg(), allow_non_finite=True))
        except Exception as exc:
            self.cdr_errors += 1
            raise ValueError(f"{out.subject}: no CDR for {out.type_name}: {exc}") from None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            clients = len(self._sessions)
        return {"clients": clients, "channels": len(self.catalog.channels), "services": len(self.catalog.services),
                "robots": len(self.catalog.robots()), "cdr_errors": self.cdr_errors,
                "cdr_fallbacks": self.cdr_fallbacks, "skipped_robots": self.catalog.skipped_robots}  # fmt: skip


def _short(type_name: str) -> str:
    """``pkg/msg/Type`` and ``pkg/Type`` name the same type."""
    parts = type_name.split("/")
    return f"{parts[0]}/{parts[-1]}"
