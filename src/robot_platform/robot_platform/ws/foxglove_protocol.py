"""Foxglove WebSocket protocol (``foxglove.websocket.v1``): parse client messages, build server messages.

Pure functions, no sockets (the spec: github.com/foxglove/ws-protocol, docs/spec.md). Text frames are
JSON ops; binary frames start with a one-byte opcode, integers little-endian:

    server  0x01 message data      subscriptionId u32, receive timestamp u64 (ns), payload (CDR)
            0x03 service response  serviceId u32, callId u32, encoding length u32, encoding, payload
    client  0x01 message data      channelId u32 (a channel the client advertised), payload
            0x02 service request   serviceId u32, callId u32, encoding length u32, encoding, payload

Parsing is strict (ids are non-negative 32-bit integers, lists have bounded length): a bad client
message is a :class:`~.errors.ProtocolError` answered with a ``status`` of level error, never a
change of state the client did not ask for.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from robot_platform.ws.errors import FoxgloveProtocolError, FrameTooLargeError

SUBPROTOCOL = "foxglove.websocket.v1"
SCHEMA_ENCODING = "ros2msg"
MESSAGE_ENCODING = "cdr"
CLIENT_ENCODINGS = ("cdr", "json")  # what a client may publish in
CAPABILITIES = ("clientPublish", "services")
OP_MESSAGE_DATA = 0x01
OP_SERVICE_RESPONSE = 0x03
CLIENT_OP_MESSAGE_DATA = 0x01
CLIENT_OP_SERVICE_REQUEST = 0x02
INFO, WARNING, ERROR = 0, 1, 2
LEVELS = {"info": INFO, "warning": WARNING, "error": ERROR}
MAX_ITEMS = 1024  # subscriptions / channels in one client message
MAX_U32 = 0xFFFFFFFF
MAX_ENCODING_CHARS = 32
_HEAD = struct.Struct("<BIQ")
_SERVICE = struct.Struct("<BIII")


@dataclass(frozen=True)
class Subscribe:
    subscriptions: tuple[tuple[int, int], ...]  # (subscription id, channel id)


@dataclass(frozen=True)
class Unsubscribe:
    subscription_ids: tuple[int, ...]


@dataclass(frozen=True)
class ClientChannel:
    id: int
    topic: str
    encoding: str
    schema_name: str


@dataclass(frozen=True)
class Advertise:
    channels: tuple[ClientChannel, ...]


@dataclass(frozen=True)
class Unadvertise:
    channel_ids: tuple[int, ...]


@dataclass(frozen=True)
class MessageData:
    channel_id: int
    payload: bytes


@dataclass(frozen=True)
class ServiceRequest:
    service_id: int
    call_id: int
    encoding: str
    payload: bytes


Request = Subscribe | Unsubscribe | Advertise | Unadvertise | MessageData | ServiceRequest


def parse(frame: str | bytes, max_bytes: int) -> Request:
    """One client frame; ProtocolError / FrameTooLargeError when it is not a message we accept."""
    if len(frame) > max_bytes:
        raise FrameTooLargeError(len(frame), max_bytes)
    if isinstance(frame, bytes):
        return _parse_binary(frame)
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested beyond the parser's stack
        raise FoxgloveProtocolError("not JSON (or nested too deeply)", "", "") from None
    if not isinstance(data, dict):
        raise FoxgloveProtocolError("a message must be a JSON object", "", "")
    op = data.get("op")
    if op == "subscribe":
        subs = _items(data, "subscriptions", op)
        return Subscribe(tuple((_u32(s, "id", op), _u32(s, "channelId", op)) for s in subs))
    if op == "unsubscribe":
        return Unsubscribe(tuple(_u32_value(v, "subscriptionIds", op) for v in _items(data, "subscriptionIds", op)))
    if op == "advertise":
        return Advertise(tuple(_client_channel(c) for c in _items(data, "channels", op)))
    if op == "unadvertise":
        return Unadvertise(tuple(_u32_value(v, "channelIds", op) for v in _items(data, "channelIds", op)))
    raise FoxgloveProtocolError(f"unsupported op {str(op)[:40]!r}", str(op)[:40] if op else "", "op")


def _parse_binary(frame: bytes) -> Request:
    if not frame:
        raise FoxgloveProtocolError("empty binary message", "", "")
    if frame[0] == CLIENT_OP_MESSAGE_DATA:
        if len(frame) < 5:
            raise FoxgloveProtocolError("message data shorter than its header", "messageData", "")
        return MessageData(int.from_bytes(frame[1:5], "little"), frame[5:])
    if frame[0] == CLIENT_OP_SERVICE_REQUEST:
        if len(frame) < _SERVICE.size:
            raise FoxgloveProtocolError("service call shorter than its header", "serviceCallRequest", "")
        _op, service_id, call_id, n = _SERVICE.unpack_from(frame)
        if n > MAX_ENCODING_CHARS or len(frame) < _SERVICE.size + n:
            raise FoxgloveProtocolError("bad encoding length", "serviceCallRequest", "encoding")
        encoding = frame[_SERVICE.size : _SERVICE.size + n].decode("ascii", "replace")
        return ServiceRequest(service_id, call_id, encoding, frame[_SERVICE.size + n :])
    raise FoxgloveProtocolError(f"unsupported binary opcode {frame[0]}", "", "op")


def _items(data: dict[str, Any], key: str, op: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        raise FoxgloveProtocolError(f"'{key}' must be a list of at most {MAX_ITEMS} items", op, key)
    return value


def _u32_value(value: Any, key: str, op: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_U32:
        raise FoxgloveProtocolError(f"'{key}' must hold 32-bit unsigned integers", op, key)
    return value


def _u32(item: Any, key: str, op: str) -> int:
    if not isinstance(item, dict):
        raise FoxgloveProtocolError("items must be objects", op, key)
    return _u32_value(item.get(key), key, op)


def _text(item: dict[str, Any], key: str, limit: int = 256) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise FoxgloveProtocolError(
            f"'{key}' must be a non-empty string of at most {limit} characters", "advertise", key
        )
    return value


def _client_channel(item: Any) -> ClientChannel:
    cid = _u32(item, "id", "advertise")
    return ClientChannel(cid, _text(item, "topic"), _text(item, "encoding", MAX_ENCODING_CHARS),
                         _text(item, "schemaName"))  # fmt: skip


# ---------------------------------------------------------------------------------------- server messages
def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def server_info(name: str, session_id: str, metadata: dict[str, str]) -> str:
    return dumps({"op": "serverInfo", "name": name, "capabilities": list(CAPABILITIES),
                  "supportedEncodings": list(CLIENT_ENCODINGS), "metadata": metadata,
                  "sessionId": session_id})  # fmt: skip


def status(level: str, message: str, status_id: str | None = None) -> str:
    body: dict[str, Any] = {"op": "status", "level": LEVELS[level], "message": message}
    if status_id:
        body["id"] = status_id
    return dumps(body)


def channel(channel_id: int, topic: str, schema_name: str, schema: str) -> dict[str, Any]:
    return {"id": channel_id, "topic": topic, "encoding": MESSAGE_ENCODING, "schemaName": schema_name,
            "schema": schema, "schemaEncoding": SCHEMA_ENCODING}  # fmt: skip


def advertise(channels: list[dict[str, Any]]) -> str:
    return dumps({"op": "advertise", "channels": channels})


def service(service_id: int, name: str, type_name: str, request: tuple[str, str],
            response: tuple[str, str]) -> dict[str, Any]:  # fmt: skip
    """``request``/``response``: (schema name, definition). Both the current ``request``/``response``
    objects and the older ``requestSchema``/``responseSchema`` strings, so older clients decode too."""

    def definition(part: tuple[str, str]) -> dict[str, str]:
        return {"encoding": MESSAGE_ENCODING, "schemaName": part[0], "schemaEncoding": SCHEMA_ENCODING,
                "schema": part[1]}  # fmt: skip

    return {"id": service_id, "name": name, "type": type_name, "request": definition(request),
            "response": definition(response), "requestSchema": request[1], "responseSchema": response[1]}  # fmt: skip


def advertise_services(services: list[dict[str, Any]]) -> str:
    return dumps({"op": "advertiseServices", "services": services})


def service_failure(service_id: int, call_id: int, message: str) -> str:
    return dumps({"op": "serviceCallFailure", "serviceId": service_id, "callId": call_id, "message": message})


def message_data_header(subscription_id: int, timestamp_ns: int) -> bytes:
    return _HEAD.pack(OP_MESSAGE_DATA, subscription_id, timestamp_ns)


def service_response(service_id: int, call_id: int, payload: bytes) -> bytes:
    encoding = MESSAGE_ENCODING.encode()
    return _SERVICE.pack(OP_SERVICE_RESPONSE, service_id, call_id, len(encoding)) + encoding + payload
