"""ROS message <-> plain dict <-> msgpack, with validation on the way in.

The dict has the shape ``ros2 topic echo`` shows: field names as keys, nested messages as nested
dicts (``builtin_interfaces/Time`` is ``{"sec": .., "nanosec": ..}``), arrays as lists, and
``uint8[]`` / ``byte[]`` as ``bytes`` (msgpack bin, so a camera frame is not a list of 900k ints).
Decoding validates everything a remote publisher could get wrong, because rclpy on Jazzy does not
check field values by default (``ROS_PYTHON_CHECK_FIELDS`` is off): unknown fields, wrong value types,
out-of-range integers and float32 values, wrong fixed-array sizes, over-long bounded arrays/strings.
Missing fields keep the type's default, as in ROS.

Non-finite floats (NaN, +inf, -inf) are refused by default (``NonFiniteError``, counted as
``out_of_range``): a NaN velocity reaches a motor driver as garbage, and no JSON client can even mean it.
A caller that must carry them (telemetry mirrored from robots, where ``LaserScan.ranges`` holds inf by
REP-117; or a command a site has opted in) passes ``allow_non_finite=True``.
"""

from __future__ import annotations

import array
import math
import operator
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from robot_platform.messaging.errors import (
    CodecError,
    FieldRangeError,
    FieldTypeError,
    MalformedPayloadError,
    NonFiniteError,
    PayloadTooLargeError,
    UnknownFieldError,
)
from robot_platform.messaging.rostypes import ARRAY_TYPECODES, NUMPY_DTYPES, Field, Scalar, TypeRegistry, type_name_of

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024  # nats-server's default max_payload


def check_payload_size(subject: str, data: bytes, limit: int) -> None:
    """PayloadTooLargeError if ``data`` is over ``limit`` bytes: the platform's one payload-size check
    (the codec's, and a relay's that never decodes, like ws_agent's hub)."""
    if len(data) > limit:
        raise PayloadTooLargeError(subject, len(data), limit)


class Codec:
    """Converts messages of any installed ROS type; one instance per node (holds the type caches)."""

    def __init__(self, registry: TypeRegistry | None = None, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES):
        self.registry = registry or TypeRegistry()
        self.max_payload_bytes = max_payload_bytes
        self._field_maps: dict[type, dict[str, tuple[Field, str, str]]] = {}
        self._to_dict_fns: dict[type, Callable[[Any], dict[str, Any]]] = {}

    # ---------------------------------------------------------------- ROS -> dict -> msgpack
    def to_dict(self, msg: Any) -> dict[str, Any]:
        """Plain dict of a ROS message (see module doc for the shape)."""
        fn = self._to_dict_fns.get(type(msg))
        if fn is None:
            fn = self._compile_to_dict(type(msg))
        return fn(msg)

    def _compile_to_dict(self, cls: type) -> Callable[[Any], dict[str, Any]]:
        """Build (once per type) a converter with every per-field decision taken in advance.

        This is the hot path of the bridge (every outgoing message): fields are read in one
        ``attrgetter`` call on rclpy's ``_<field>`` slots when the class has them (the properties only
        return those slots), and only fields that need converting get a converter.
        """
        fields = self.registry.layout(cls)
        names = [f.name for f in fields]
        slots = set(getattr(cls, "__slots__", ()))
        attrs = [f"_{n}" if f"_{n}" in slots else n for n in names]
        convs: list[Callable[[Any], Any] | None] = []
        for f in fields:
            elem = f.elem
            if not f.seq:
                if isinstance(elem, type):
                    convs.append(self._nested(elem))
                elif elem.kind == "octet":
                    convs.append(_octet_to_int)
                else:
                    convs.append(None)
            elif f.is_bytes:
                convs.append(_as_bytes)
            elif isinstance(elem, type):
                sub = self._nested(elem)
                convs.append(lambda v, sub=sub: [sub(x) for x in v])
            else:
                convs.append(_to_list)
        getter = operator.attrgetter(*attrs) if len(attrs) > 1 else None
        pairs = list(zip(names, convs, strict=True))

        if not attrs:

            def empty(_msg: Any) -> dict[str, Any]:
                return {}

            fn: Callable[[Any], dict[str, Any]] = empty
        elif getter is None:
            name, conv = pairs[0]
            attr = attrs[0]

            def single(msg: Any) -> dict[str, Any]:
                value = getattr(msg, attr)
                return {name: conv(value) if conv else value}

            fn = single
        else:

            def many(msg: Any) -> dict[str, Any]:
                return {
                    name: conv(value) if conv else value
                    for (name, conv), value in zip(pairs, getter(msg))  # noqa: B905 - same length by construction
                }

            fn = many
        self._to_dict_fns[cls] = fn
        return fn

    def _nested(self, cls: type) -> Callable[[Any], dict[str, Any]]:
        """Converter of a nested type (ROS types cannot nest themselves, so eager compiling ends)."""
        fn = self._to_dict_fns.get(cls)
        return fn if fn is not None else self._compile_to_dict(cls)

    def check_size(self, subject: str, data: bytes) -> None:
        """PayloadTooLargeError if ``data`` is over ``max_payload_bytes`` (checked before any decoding,
        also by those that only relay or look at headers: bridge core, mirror, services)."""
        check_payload_size(subject, data, self.max_payload_bytes)

    def encode(self, msg: Any, subject: str = "") -> bytes:
        """msgpack body of a ROS message; PayloadTooLargeError if over ``max_payload_bytes``."""
        body = pack(self.to_dict(msg))
        self.check_size(subject, body)
        return body

    # ---------------------------------------------------------------- msgpack -> dict -> ROS
    def decode(self, cls: type, payload: bytes, subject: str = "", *, allow_non_finite: bool = False) -> Any:
        """ROS message from a msgpack body; MalformedPayloadError / CodecError / PayloadTooLargeError."""
        self.check_size(subject, payload)
        return self.from_dict(cls, unpack(payload, subject), allow_non_finite=allow_non_finite)

    def from_dict(self, cls: type, data: Any, path: str = "", *, allow_non_finite: bool = False) -> Any:
        """Validated ROS message of class ``cls`` built from ``data``.

        NaN/inf in a float field raise NonFiniteError unless ``allow_non_finite`` (see module doc).
        """
        if not isinstance(data, dict):
            raise FieldTypeError(type_name_of(cls), path.rstrip("."), "map", data)
        fmap = self._field_map(cls)
        msg = cls()
        for key, value in data.items():
            entry = fmap.get(key) if isinstance(key, str) else None
            if entry is None:
                raise UnknownFieldError(type_name_of(cls), f"{path}{key}", list(fmap))
            field, attr, tn = entry
            # Values are fully validated and already of rclpy's storage type (numpy / array.array), so
            # they go straight into the ``_<field>`` slot: the property setter would copy arrays again.
            setattr(msg, attr, self._value(tn, field, value, f"{path}{key}", allow_non_finite))
        return msg

    def _field_map(self, cls: type) -> dict[str, tuple[Field, str, str]]:
        fmap = self._field_maps.get(cls)
        if fmap is None:
            slots = set(getattr(cls, "__slots__", ()))
            tn = type_name_of(cls)
            fmap = {
                f.name: (f, f"_{f.name}" if f"_{f.name}" in slots else f.name, tn) for f in self.registry.layout(cls)
            }
            self._field_maps[cls] = fmap
        return fmap

    def _value(self, tn: str, f: Field, value: Any, path: str, allow_non_finite: bool) -> Any:
        if not f.seq:
            if isinstance(f.elem, type):
                return self.from_dict(f.elem, value, path + ".", allow_non_finite=allow_non_finite)
            return _scalar(tn, f.elem, value, path, allow_non_finite)
        if f.is_bytes:
            return _bytes_field(tn, f, value, path)
        if not isinstance(value, list | tuple):
            raise FieldTypeError(tn, path, "array", value)
        _check_len(tn, f, len(value), path)
        elem = f.elem
        if isinstance(elem, type):
            return [
                self.from_dict(elem, v, f"{path}[{i}].", allow_non_finite=allow_non_finite) for i, v in enumerate(value)
            ]
        if elem.kind in ("int", "float"):
            return _numeric_seq(tn, f, value, path, allow_non_finite)
        return [_scalar(tn, elem, v, f"{path}[{i}]", allow_non_finite) for i, v in enumerate(value)]


def pack(data: dict[str, Any]) -> bytes:
    """msgpack of a message dict (bytes as bin, str as str, floats as float64)."""
    return msgpack.packb(data, use_bin_type=True)


def unpack(payload: bytes, subject: str = "") -> dict[str, Any]:
    """Dict from a msgpack body; MalformedPayloadError unless it is one complete msgpack map."""
    try:
        data = msgpack.unpackb(payload, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise MalformedPayloadError(subject, f"{type(exc).__name__}: {exc or 'invalid msgpack'}") from None
    if not isinstance(data, dict):
        raise MalformedPayloadError(subject, f"top level is {type(data).__name__}, not a map")
    return data


def _octet_to_int(value: Any) -> int:
    return value[0] if isinstance(value, bytes | bytearray) else int(value)


def _to_list(value: Any) -> list[Any]:
    return value.tolist() if hasattr(value, "tolist") else list(value)


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, array.array | np.ndarray):
        return value.tobytes()
    if value and isinstance(value[0], bytes):  # rclpy keeps byte[] as a list of 1-byte bytes
        return b"".join(value)
    return bytes(value)


def _check_len(tn: str, f: Field, n: int, path: str) -> None:
    if f.seq == "array" and n != f.size:
        raise FieldRangeError(tn, path, f"length {n}", f.size, f.size)
    if f.seq == "bounded" and f.size is not None and n > f.size:
        raise FieldRangeError(tn, path, f"length {n}", 0, f.size)


def _scalar(tn: str, s: Scalar, v: Any, path: str, allow_non_finite: bool = False) -> Any:
    kind = s.kind
    if kind == "float":
        if isinstance(v, bool) or not isinstance(v, float | int):
            raise FieldTypeError(tn, path, f"float ({s.typename})", v)
        try:
            f = float(v)
        except OverflowError:
            raise FieldRangeError(tn, path, v, s.low, s.high) from None
        if not math.isfinite(f):
            if not allow_non_finite:
                raise NonFiniteError(tn, path, f)
        elif s.high is not None and abs(f) > s.high:
            raise FieldRangeError(tn, path, v, s.low, s.high)
        return f
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise FieldTypeError(tn, path, f"integer ({s.typename})", v)
        if not s.low <= v <= s.high:  # type: ignore[operator]
            raise FieldRangeError(tn, path, v, s.low, s.high)
        return v
    if kind == "bool":
        if not isinstance(v, bool):
            raise FieldTypeError(tn, path, "bool", v)
        return v
    if kind in ("string", "wstring"):
        if not isinstance(v, str):
            raise FieldTypeError(tn, path, kind, v)
        if s.max_len is not None and len(v) > s.max_len:
            raise FieldRangeError(tn, path, f"length {len(v)}", 0, s.max_len)
        return v
    if kind == "octet":
        if isinstance(v, bytes) and len(v) == 1:
            return v
        if isinstance(v, int) and not isinstance(v, bool):
            if not 0 <= v <= 255:
                raise FieldRangeError(tn, path, v, 0, 255)
            return bytes([v])
        raise FieldTypeError(tn, path, "byte (int 0..255)", v)
    raise CodecError(tn, path, f"unsupported kind {kind}")


def _bytes_field(tn: str, f: Field, value: Any, path: str) -> Any:
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255:
                if isinstance(v, int) and not isinstance(v, bool):
                    raise FieldRangeError(tn, f"{path}[{i}]", v, 0, 255)
                raise FieldTypeError(tn, f"{path}[{i}]", "integer (uint8)", v)
        raw = bytes(value)
    else:
        raise FieldTypeError(tn, path, "bytes", value)
    _check_len(tn, f, len(raw), path)
    if f.seq == "array":
        return (
            np.frombuffer(raw, dtype=np.uint8).copy()
            if f.elem.typename == "uint8"
            else list(raw[i : i + 1] for i in range(len(raw)))
        )
    return array.array("B", raw) if f.elem.typename == "uint8" else raw


def _numeric_seq(
    tn: str, f: Field, value: list[Any] | tuple[Any, ...], path: str, allow_non_finite: bool = False
) -> Any:
    s: Scalar = f.elem
    if s.kind == "float":
        if not all(type(v) is float for v in value):  # fast path is exact floats (what msgpack gives)
            value = [_scalar(tn, s, v, f"{path}[{i}]", allow_non_finite) for i, v in enumerate(value)]
        if value and (s.high is not None or not allow_non_finite):
            arr = np.asarray(value, dtype=np.float64)
            is_finite = np.isfinite(arr)
            if not allow_non_finite and not is_finite.all():
                i = int(np.argmin(is_finite))
                raise NonFiniteError(tn, f"{path}[{i}]", value[i])
            finite = arr[is_finite]
            if s.high is not None and finite.size and float(np.abs(finite).max()) > s.high:
                i = int(np.argmax(np.where(np.isfinite(arr), np.abs(arr), 0.0)))
                raise FieldRangeError(tn, f"{path}[{i}]", value[i], s.low, s.high)
    else:
        if not all(type(v) is int for v in value):
            for i, v in enumerate(value):
                _scalar(tn, s, v, f"{path}[{i}]")
        if value and (min(value) < s.low or max(value) > s.high):  # type: ignore[operator]
            i = next(i for i, v in enumerate(value) if not s.low <= v <= s.high)  # type: ignore[operator]
            raise FieldRangeError(tn, f"{path}[{i}]", value[i], s.low, s.high)
    if f.seq == "array":
        return np.array(value, dtype=NUMPY_DTYPES[s.typename])
    return array.array(ARRAY_TYPECODES[s.typename], value)
