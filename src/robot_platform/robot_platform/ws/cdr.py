"""CDR (XCDR1, little-endian) straight from the bridge's message dict, without building an rclpy message.

Why: the Foxglove path turns every NATS message (a msgpack map) into CDR once for all its clients. Going
through rclpy (``Codec.from_dict`` then ``serialize_message``) costs about 4x the JSON encoding of the
rosbridge path (bench/RESULTS.md); packing the dict with ``struct`` from the type's field layout
(:meth:`TypeRegistry.layout`) is several times cheaper. The output is byte-identical to
``rclpy.serialization.serialize_message`` (unit test over the bridged types). Anything this encoder does
not handle (wstring fields, a value of the wrong kind, a missing field) raises :class:`CdrUnsupported`,
and the caller falls back to the rclpy path, which validates and reports the error properly.

Layout rules: a 4-byte encapsulation header (CDR_LE), then each primitive aligned to its size (8 at most)
counted from the end of the header; strings as uint32 length including the NUL, bytes, NUL; sequences as
a uint32 count then the elements; fixed arrays as the elements only.
"""

from __future__ import annotations

import struct
from typing import Any

from robot_platform.messaging.rostypes import TypeRegistry

HEADER = b"\x00\x01\x00\x00"
_U32 = struct.Struct("<I")
_FORMATS = {
    "boolean": ("?", 1), "octet": ("B", 1), "uint8": ("B", 1), "char": ("B", 1), "int8": ("b", 1),
    "int16": ("h", 2), "uint16": ("H", 2), "int32": ("i", 4), "uint32": ("I", 4), "int64": ("q", 8),
    "uint64": ("Q", 8), "float": ("f", 4), "double": ("d", 8),
}  # fmt: skip


class CdrUnsupported(ValueError):
    """This encoder cannot encode the value (the caller uses the rclpy path instead)."""


def _align(buf: bytearray, size: int) -> None:
    pad = -(len(buf) - 4) % size
    if pad:
        buf.extend(bytes(pad))


def _string(buf: bytearray, value: Any) -> None:
    if not isinstance(value, str):
        raise CdrUnsupported("string field holds no string")
    data = value.encode()
    _align(buf, 4)
    buf += _U32.pack(len(data) + 1)
    buf += data
    buf.append(0)


class CdrEncoder:
    """Encodes message dicts of any type the registry knows; stateless apart from the registry's caches."""

    def __init__(self, registry: TypeRegistry) -> None:
        self.registry = registry

    def encode(self, cls: type, data: dict[str, Any]) -> bytes:
        buf = bytearray(HEADER)
        try:
            self._write(buf, cls, data)
        except (KeyError, TypeError, struct.error, AttributeError) as exc:
            raise CdrUnsupported(f"{type(exc).__name__}: {exc}") from None
        return bytes(buf)

    def _write(self, buf: bytearray, cls: type, data: dict[str, Any]) -> None:
        if not isinstance(data, dict):
            raise CdrUnsupported("nested message is not a map")
        for f in self.registry.layout(cls):
            value = data[f.name]
            if f.seq and f.seq != "array":
                _align(buf, 4)
                buf += _U32.pack(len(value))
            elif f.seq and len(value) != f.size:
                raise CdrUnsupported(f"{f.name}: fixed array of {f.size} holds {len(value)}")
            if isinstance(f.elem, type):
                for item in value if f.seq else (value,):
                    self._write(buf, f.elem, item)
                continue
            kind = f.elem.kind
            if kind == "string":
                for item in value if f.seq else (value,):
                    _string(buf, item)
                continue
            if kind == "wstring":
                raise CdrUnsupported("wstring")
            code, size = _FORMATS[f.elem.typename]
            if not f.seq:
                _align(buf, size)
                buf += struct.pack("<" + code, value)
            elif isinstance(value, (bytes, bytearray)) and size == 1:
                buf += value
            elif value:
                _align(buf, size)
                buf += struct.pack(f"<{len(value)}{code}", *value)
