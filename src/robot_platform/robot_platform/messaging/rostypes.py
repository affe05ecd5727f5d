"""ROS message types at run time: load a class from "pkg/msg/Type", describe its fields, find its hash.

Field layouts come from the generated class's ``SLOT_TYPES`` (rosidl_parser definitions) and
``get_fields_and_field_types()``: no ``str(msg)`` parsing (the rosbridge counter-example) and no
dependency on ``rosidl_runtime_py`` (not shipped as a wheel here). Layouts are compiled once per type
and cached in a :class:`TypeRegistry` that the owner (node, CLI, test) holds: no module-level state.

Type hash: the ``RIHS01_...`` hash that ROS 2 Jazzy computes at build time (REP-2011) and installs in
``share/<pkg>/msg/<Type>.json``; found through ``AMENT_PREFIX_PATH``. When that file is missing (a type
built by an older generator), a stable ``RPL01_<sha256>`` of the recursive field layout is used instead,
so two sides still detect a layout mismatch.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosidl_parser import definition as d

from robot_platform.messaging.errors import UnknownTypeError

TYPE_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)/(?:(msg)/)?([A-Z][A-Za-z0-9]*)$")
SERVICE_TYPE_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)/(?:srv/)?([A-Z][A-Za-z0-9]*)$")

INT_RANGES: dict[str, tuple[int, int]] = {
    "int8": (-(2**7), 2**7 - 1),
    "uint8": (0, 2**8 - 1),
    "char": (0, 2**8 - 1),  # ROS 2 maps the .msg "char" to an unsigned 8-bit integer
    "int16": (-(2**15), 2**15 - 1),
    "short": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "unsigned short": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "long": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "unsigned long": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "long long": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
    "unsigned long long": (0, 2**64 - 1),
}
FLOAT32_MAX = 3.4028234663852886e38
FLOAT_TYPES = {"float": "f", "double": "d", "long double": "d"}
# array.array type codes rclpy uses for unbounded/bounded sequences of basic numeric types.
ARRAY_TYPECODES = {
    "int8": "b", "uint8": "B", "char": "B", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "int64": "q", "uint64": "Q", "float": "f", "double": "d",
    "short": "h", "unsigned short": "H", "long": "i", "unsigned long": "I", "long long": "q",
    "unsigned long long": "Q",
}  # fmt: skip
NUMPY_DTYPES = {
    "int8": "int8", "uint8": "uint8", "char": "uint8", "int16": "int16", "uint16": "uint16",
    "int32": "int32", "uint32": "uint32", "int64": "int64", "uint64": "uint64", "float": "float32",
    "double": "float64",
}  # fmt: skip


@dataclass(frozen=True)
class Scalar:
    """A non-nested element type. ``kind``: bool, int, float, octet, string, wstring."""

    kind: str
    typename: str  # rosidl name: "double", "uint8", "string"...
    low: int | float | None = None
    high: int | float | None = None
    max_len: int | None = None  # bounded strings


@dataclass(frozen=True)
class Field:
    """One field of a message. ``elem`` is a Scalar or a message class; ``seq`` tells array-ness."""

    name: str
    elem: Any  # Scalar | type (nested ROS message class)
    seq: str  # "" (single value), "array" (fixed size), "bounded", "unbounded"
    size: int | None = None  # fixed size for "array", maximum for "bounded"

    @property
    def is_bytes(self) -> bool:
        """uint8[] / byte[] fields travel as msgpack bin (Python bytes), not as lists of ints."""
        return bool(self.seq) and isinstance(self.elem, Scalar) and self.elem.typename in ("uint8", "octet")


def type_name_of(cls: type) -> str:
    """'pkg/msg/Type' of a generated message class (module is pkg.msg._type); a service's request or
    response class (module pkg.srv._type) gives 'pkg/srv/Type_Request' / 'pkg/srv/Type_Response'."""
    parts = cls.__module__.split(".")
    kind = "srv" if len(parts) > 1 and parts[1] == "srv" else "msg"
    return f"{parts[0]}/{kind}/{cls.__name__}"


def service_type_name_of(srv: type) -> str:
    """'pkg/srv/Type' of a generated service class."""
    return f"{srv.__module__.split('.')[0]}/srv/{srv.__name__}"


def _scalar(t: d.AbstractType) -> Scalar:
    if isinstance(t, d.BasicType):
        name = t.typename
        if name == "boolean":
            return Scalar("bool", name)
        if name == "octet":
            return Scalar("octet", name, 0, 255)
        if name in FLOAT_TYPES:
            high = FLOAT32_MAX if name == "float" else None
            return Scalar("float", name, None if high is None else -high, high)
        if name in INT_RANGES:
            low, high = INT_RANGES[name]
            return Scalar("int", name, low, high)
        if name == "wchar":
            return Scalar("wstring", name, max_len=1)
        raise UnknownTypeError(name, "unsupported basic type")
    if isinstance(t, d.BoundedString):
        return Scalar("string", "string", max_len=t.maximum_size)
    if isinstance(t, d.UnboundedString):
        return Scalar("string", "string")
    if isinstance(t, d.BoundedWString):
        return Scalar("wstring", "wstring", max_len=t.maximum_size)
    if isinstance(t, d.UnboundedWString):
        return Scalar("wstring", "wstring")
    raise UnknownTypeError(str(t), "unsupported element type")


def _check_interface_package(type_name: str, pkg: str, kind: str) -> None:
    """UnknownTypeError unless ``pkg`` is a rosidl-generated interface package with a ``kind`` (msg/srv)
    module, found without running any code: a type name can come from a sender's Ros-Type header (the
    fleet mirror), and importing ``<any module>.msg`` would run that module's top-level code."""
    try:
        spec = importlib.util.find_spec(pkg)  # a top-level name: locates, imports nothing
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        root = Path(location)
        if (root / kind / "__init__.py").is_file() and any(root.glob(f"{pkg}_s__rosidl_typesupport_c*")):
            return
    raise UnknownTypeError(type_name, f"{pkg} is not an installed ROS interface package with {kind}/")


class TypeRegistry:
    """Loads message classes by name and caches their compiled field layouts and hashes."""

    def __init__(self, ament_prefix_path: str | None = None) -> None:
        prefixes = ament_prefix_path if ament_prefix_path is not None else os.environ.get("AMENT_PREFIX_PATH")
        self._prefixes = [Path(p) for p in (prefixes or "").split(os.pathsep) if p]
        self._classes: dict[str, type] = {}
        self._layouts: dict[type, tuple[Field, ...]] = {}
        self._hashes: dict[type, str] = {}

    def load(self, type_name: str) -> type:
        """Message class for 'pkg/msg/Type' (or 'pkg/Type'); UnknownTypeError if it cannot be imported."""
        cls = self._classes.get(type_name)
        if cls is not None:
            return cls
        match = TYPE_RE.fullmatch(type_name or "")
        if not match:
            raise UnknownTypeError(str(type_name), "not of the form 'pkg/msg/Type'")
        pkg, _, name = match.groups()
        _check_interface_package(type_name, pkg, "msg")
        try:
            module = importlib.import_module(f"{pkg}.msg")
        except ImportError as exc:
            raise UnknownTypeError(type_name, f"cannot import {pkg}.msg ({exc})") from None
        cls = getattr(module, name, None)
        if not isinstance(cls, type) or not hasattr(cls, "get_fields_and_field_types"):
            raise UnknownTypeError(type_name, f"{pkg}.msg has no message type {name}")
        self._classes[type_name] = cls
        return cls

    def load_service(self, type_name: str) -> type:
        """Service class for 'pkg/srv/Type' (or 'pkg/Type'), with ``.Request`` and ``.Response``;
        UnknownTypeError if it cannot be imported."""
        key = f"srv:{type_name}"
        cls = self._classes.get(key)
        if cls is not None:
            return cls
        match = SERVICE_TYPE_RE.fullmatch(type_name or "")
        if not match:
            raise UnknownTypeError(str(type_name), "not of the form 'pkg/srv/Type'")
        pkg, name = match.groups()
        _check_interface_package(type_name, pkg, "srv")
        try:
            module = importlib.import_module(f"{pkg}.srv")
        except ImportError as exc:
            raise UnknownTypeError(type_name, f"cannot import {pkg}.srv ({exc})") from None
        cls = getattr(module, name, None)
        if not isinstance(cls, type) or not hasattr(cls, "Request") or not hasattr(cls, "Response"):
            raise UnknownTypeError(type_name, f"{pkg}.srv has no service type {name}")
        self._classes[key] = cls
        return cls

    def layout(self, cls: type) -> tuple[Field, ...]:
        """Compiled fields of a message class, in declaration order."""
        fields = self._layouts.get(cls)
        if fields is not None:
            return fields
        names = list(cls.get_fields_and_field_types())
        out = []
        for name, slot in zip(names, cls.SLOT_TYPES, strict=True):
            seq, size, elem_t = "", None, slot
            if isinstance(slot, d.Array):
                seq, size, elem_t = "array", slot.size, slot.value_type
            elif isinstance(slot, d.BoundedSequence):
                seq, size, elem_t = "bounded", slot.maximum_size, slot.value_type
            elif isinstance(slot, d.UnboundedSequence):
                seq, elem_t = "unbounded", slot.value_type
            if isinstance(elem_t, d.NamespacedType):
                elem: Any = self.load("/".join([*elem_t.namespaces, elem_t.name]))
            else:
                elem = _scalar(elem_t)
            out.append(Field(name, elem, seq, size))
        fields = tuple(out)
        self._layouts[cls] = fields
        return fields

    def type_hash(self, cls: type) -> str:
        """RIHS01 hash from the installed type description, else an RPL01 layout hash (see module doc)."""
        cached = self._hashes.get(cls)
        if cached is not None:
            return cached
        name = type_name_of(cls)
        pkg, kind, short = name.split("/")
        if kind == "srv":  # Type_Request / Type_Response are described in share/<pkg>/srv/Type.json
            short = short.rsplit("_", 1)[0]
        value = None
        for prefix in self._prefixes:
            path = prefix / "share" / pkg / kind / f"{short}.json"
            if path.is_file():
                try:
                    doc = json.loads(path.read_text(encoding="utf-8"))
                    value = next(
                        (h["hash_string"] for h in doc.get("type_hashes", []) if h.get("type_name") == name),
                        None,
                    )
                except (OSError, ValueError, TypeError, KeyError):
                    value = None
                if value:
                    break
        if not value:
            value = "RPL01_" + hashlib.sha256(self._layout_text(cls).encode()).hexdigest()
        self._hashes[cls] = value
        return value

    def _layout_text(self, cls: type) -> str:
        parts = []
        for f in self.layout(cls):
            elem = self._layout_text(f.elem) if isinstance(f.elem, type) else f"{f.elem.kind}:{f.elem.typename}"
            parts.append(f"{f.name}:{elem}:{f.seq}:{f.size}:{getattr(f.elem, 'max_len', None)}")
        return f"{type_name_of(cls)}{{{';'.join(parts)}}}"
