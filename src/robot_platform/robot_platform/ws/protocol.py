"""rosbridge v2 protocol: parse and validate client messages, build server messages, fragment them.

Only the ops a browser needs are accepted (``subscribe``, ``unsubscribe``, ``advertise``, ``publish``,
``unadvertise``, ``call_service``, ``set_level``, ``auth``); anything else is a :class:`ProtocolError`
that the session answers with a ``status`` message (``{"op": "status", "level": "error", "msg": ...,
"id": ...}``) to that client only. Parsing is strict about types (a ``throttle_rate`` must be an
integer, a ``topic`` a string...) because a client message must never change connection state in a way
the client did not clearly ask for (the rosbridge counter-example in STYLE.md).

Frames from clients are JSON text (what roslibjs sends) or, on the binary fast path, a msgpack map of
the same shape. Outgoing ``publish`` messages have three encodings, chosen per subscription with the
rosbridge ``compression`` field:

    none     JSON text frame; ``uint8[]`` fields as base64 strings (rosbridge semantics), non-finite
             floats as null (JSON has no NaN/inf)
    msgpack  binary frame: a msgpack map {op, topic, msg} whose ``msg`` is the NATS body as is
             (no decode/re-encode on the agent: the cheapest path; bytes stay binary)
    cbor     binary frame: CBOR of {op, topic, msg} (what unmodified roslibjs decodes with
             ``compression: 'cbor'``); bytes stay binary, NaN/inf kept

Topic name <-> subject mapping lives in :mod:`.topics`.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
import msgpack

from robot_platform.ws.errors import FrameTooLargeError, ProtocolError

OPS = ("subscribe", "unsubscribe", "advertise", "publish", "unadvertise", "call_service", "set_level", "auth")
COMPRESSIONS = ("none", "msgpack", "cbor")
LEVELS = ("info", "warning", "error", "none")  # set_level values, most verbose first
MAX_THROTTLE_MS = 3_600_000
MAX_ID_CHARS = 256
MAX_NAME_CHARS = 256
JSON_SEPARATORS = (",", ":")


# ---------------------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class Subscribe:
    topic: str
    id: str | None = None
    type: str = ""
    throttle_rate: int = 0  # ms between messages on this topic to this client; 0 = no limit
    queue_length: int = 0  # 0 = the agent's default (latest-wins depth)
    fragment_size: int = 0  # 0 = never fragment
    compression: str = "none"


@dataclass(frozen=True)
class Unsubscribe:
    topic: str
    id: str | None = None


@dataclass(frozen=True)
class Advertise:
    topic: str
    type: str
    id: str | None = None


@dataclass(frozen=True)
class Publish:
    topic: str
    msg: dict[str, Any]
    id: str | None = None
    type: str = ""  # not in rosbridge's publish; accepted so a client may publish without advertising


@dataclass(frozen=True)
class Unadvertise:
    topic: str
    id: str | None = None


@dataclass(frozen=True)
class CallService:
    service: str
    args: dict[str, Any]
    id: str | None = None
    type: str = ""


@dataclass(frozen=True)
class SetLevel:
    level: str
    id: str | None = None


@dataclass(frozen=True)
class Auth:
    """``{"op": "auth", "user": u, "secret": s}``; the rosauth shape ``{client: u, mac: s}`` also works."""

    user: str
    secret: str = field(repr=False)
    id: str | None = None


Request = Subscribe | Unsubscribe | Advertise | Publish | Unadvertise | CallService | SetLevel | Auth


def decode_frame(frame: str | bytes, max_bytes: int) -> dict[str, Any]:
    """The message dict of one client frame (JSON text or msgpack binary); ProtocolError otherwise."""
    size = len(frame)  # characters for text: a lower bound of the bytes, checked again below
    if size > max_bytes:
        raise FrameTooLargeError(size, max_bytes)
    try:
        data = json.loads(frame) if isinstance(frame, str) else msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except (ValueError, TypeError, RecursionError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        kind = "JSON" if isinstance(frame, str) else "msgpack"
        raise ProtocolError(f"frame is not valid {kind}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"top level must be an object, got {type(data).__name__}")
    return data


def parse(data: dict[str, Any]) -> Request:
    """Validate a decoded client message and return its typed request."""
    rid = _id(data)
    op = data.get("op")
    if not isinstance(op, str) or op not in OPS:
        shown = op if isinstance(op, str) and len(op) <= 40 else type(op).__name__
        raise ProtocolError(f"unknown op {shown!r}; supported: {', '.join(OPS)}", request_id=rid)
    g = _Getter(data, op, rid)
    if op == "subscribe":
        compression = g.text("compression", default="none")
        if compression not in COMPRESSIONS:
            raise ProtocolError(
                f"compression {compression[:40]!r} not supported; use one of {', '.join(COMPRESSIONS)}",
                op,
                "compression",
                rid,
            )
        return Subscribe(
            topic=g.name("topic"),
            id=rid,
            type=g.text("type", default=""),
            throttle_rate=g.integer("throttle_rate", 0, MAX_THROTTLE_MS),
            queue_length=g.integer("queue_length", 0, 1_000_000),
            fragment_size=g.integer("fragment_size", 0, 1 << 31, allow_none=True),
            compression=compression,
        )
    if op == "unsubscribe":
        return Unsubscribe(topic=g.name("topic"), id=rid)
    if op == "advertise":
        return Advertise(topic=g.name("topic"), type=g.text("type"), id=rid)
    if op == "publish":
        return Publish(topic=g.name("topic"), msg=g.mapping("msg"), id=rid, type=g.text("type", default=""))
    if op == "unadvertise":
        return Unadvertise(topic=g.name("topic"), id=rid)
    if op == "call_service":
        return CallService(service=g.name("service"), args=g.mapping("args", default={}), id=rid,
                           type=g.text("type", default=""))  # fmt: skip
    if op == "set_level":
        level = g.text("level")
        if level not in LEVELS:
            raise ProtocolError(f"level must be one of {', '.join(LEVELS)}", op, "level", rid)
        return SetLevel(level=level, id=rid)
    user = g.text("user", default="") or g.text("client", default="")
    secret = g.text("secret", default="") or g.text("mac", default="")
    if not user or not secret:
        raise ProtocolError("auth needs 'user' and 'secret' (or rosauth 'client' and 'mac')", op, "", rid)
    return Auth(user=user, secret=secret, id=rid)


def _id(data: dict[str, Any]) -> str | None:
    rid = data.get("id")
    if rid is None:
        return None
    if isinstance(rid, bool) or not isinstance(rid, str | int):
        raise ProtocolError("id must be a string", str(data.get("op", ""))[:40], "id")
    rid = str(rid)
    if len(rid) > MAX_ID_CHARS:
        raise ProtocolError(f"id longer than {MAX_ID_CHARS} characters", str(data.get("op", ""))[:40], "id")
    return rid


class _Getter:
    """Typed field access with errors naming the op and the field."""

    _MISSING = object()

    def __init__(self, data: dict[str, Any], op: str, rid: str | None) -> None:
        self.data, self.op, self.rid = data, op, rid

    def _get(self, key: str, default: Any) -> Any:
        value = self.data.get(key, self._MISSING)
        if value is self._MISSING:
            if default is self._MISSING:
                raise ProtocolError("required field missing", self.op, key, self.rid)
            return default
        return value

    def text(self, key: str, default: Any = _MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise ProtocolError(f"must be a string, got {type(value).__name__}", self.op, key, self.rid)
        return value

    def name(self, key: str) -> str:
        value = self.text(key)
        if not value or len(value) > MAX_NAME_CHARS:
            raise ProtocolError(f"must be 1-{MAX_NAME_CHARS} characters", self.op, key, self.rid)
        return value

    def integer(self, key: str, low: int, high: int, allow_none: bool = False) -> int:
        value = self._get(key, 0)
        if value is None and allow_none:  # roslibjs sends fragment_size: null when unset
            return 0
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON from browsers may carry 100.0
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(f"must be an integer, got {type(value).__name__}", self.op, key, self.rid)
        if not low <= value <= high:
            raise ProtocolError(f"{value} outside [{low}, {high}]", self.op, key, self.rid)
        return value

    def mapping(self, key: str, default: Any = _MISSING) -> dict[str, Any]:
        value = self._get(key, default)
        if not isinstance(value, dict):
            raise ProtocolError(f"must be an object, got {type(value).__name__}", self.op, key, self.rid)
        return value


# ---------------------------------------------------------------------------------------- responses
def dumps(message: dict[str, Any]) -> str:
    """Compact JSON of a server message; bytes as base64, NaN/inf as null (valid for JSON.parse)."""
    try:
        return json.dumps(message, separators=JSON_SEPARATORS, allow_nan=False, default=_json_default)
    except ValueError:  # a non-finite float somewhere: rare, so the fast path above stays fast
        return json.dumps(_finite(message), separators=JSON_SEPARATORS, allow_nan=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def status(level: str, msg: str, request_id: str | None = None) -> str:
    """rosbridge ``status`` message (JSON text)."""
    out: dict[str, Any] = {"op": "status", "level": level, "msg": msg}
    if request_id is not None:
        out["id"] = request_id
    return dumps(out)


def service_response(service: str, request_id: str | None, values: Any, result: bool) -> str:
    out: dict[str, Any] = {"op": "service_response", "service": service, "values": values, "result": result}
    if request_id is not None:
        out["id"] = request_id
    return dumps(out)


def _publish(topic: str, msg: Any, robot: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"op": "publish", "topic": topic, "msg": msg}
    if robot is not None:
        out["robot"] = robot  # fleet wildcard subscriptions (/robots/*/...): which robot sent it
    return out


def publish_json(topic: str, msg: dict[str, Any], robot: str | None = None) -> str:
    return dumps(_publish(topic, msg, robot))


_MSGPACK_PREFIX = msgpack.packb("op") + msgpack.packb("publish") + msgpack.packb("topic")
_MSGPACK_MSG_KEY = msgpack.packb("msg")
_MSGPACK_ROBOT_KEY = msgpack.packb("robot")


def publish_msgpack(topic: str, body: bytes, robot: str | None = None) -> bytes:
    """msgpack frame {op, topic, [robot,] msg} built around the NATS body without decoding it."""
    if robot is None:
        return b"\x83" + _MSGPACK_PREFIX + msgpack.packb(topic) + _MSGPACK_MSG_KEY + body
    return (
        b"\x84"
        + _MSGPACK_PREFIX
        + msgpack.packb(topic)
        + _MSGPACK_ROBOT_KEY
        + msgpack.packb(robot)
        + (_MSGPACK_MSG_KEY + body)
    )


def publish_cbor(topic: str, msg: dict[str, Any], robot: str | None = None) -> bytes:
    return cbor2.dumps(_publish(topic, msg, robot))


def fragment(frame: str, fragment_size: int, message_id: str) -> list[str]:
    """Split a JSON frame into rosbridge ``fragment`` messages of at most ``fragment_size`` data chars.

    A frame that fits is returned as is (one element). ``fragment_size`` < 1 means no fragmenting.
    """
    if fragment_size < 1 or len(frame) <= fragment_size:
        return [frame]
    chunks = [frame[i : i + fragment_size] for i in range(0, len(frame), fragment_size)]
    total = len(chunks)
    return [
        dumps({"op": "fragment", "id": message_id, "data": chunk, "num": num, "total": total})
        for num, chunk in enumerate(chunks)
    ]


def defragment(fragments: list[dict[str, Any]]) -> str:
    """Join fragments (any order) back into the frame; for tests and Python clients."""
    ordered = sorted(fragments, key=lambda f: f["num"])
    if [f["num"] for f in ordered] != list(range(ordered[0]["total"])):
        raise ProtocolError("fragments missing or repeated", "fragment")
    return "".join(f["data"] for f in ordered)


def ws_frame(frame: str | bytes) -> bytes:
    """One complete, unmasked, unfragmented server WebSocket frame (RFC 6455 5.2) carrying ``frame``.

    Text for ``str``, binary for ``bytes``. Built here rather than per client by wsproto so that a
    message fanned out to many clients is framed once (see :meth:`Outgoing.wire`).
    """
    if isinstance(frame, str):
        payload, first = frame.encode(), 0x81
    else:
        payload, first = frame, 0x82
    n = len(payload)
    if n < 126:
        header = bytes((first, n))
    elif n < 65536:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload
