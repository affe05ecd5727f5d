"""ROS 2 message definitions for MCAP ``ros2msg`` schemas, read from the installed ``.msg`` files.

An MCAP ROS 2 channel's schema is the message's ``.msg`` text followed by every type it uses, each after
a ``====...`` line and ``MSG: pkg/Type`` (the layout ``ros2 bag`` writes). The text comes from the
``.msg`` files in the ament index (``<prefix>/share/<pkg>/msg/<Type>.msg``): the definitions the running
nodes were built from, including our own interface packages, not a copy bundled with a library.
rosbags parses them and renders the concatenated text, so no ``.msg`` grammar is hand-written here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore
from rosbags.typesys.base import Nodetype

from robot_platform.messaging.errors import UnknownTypeError
from robot_platform.messaging.rostypes import TYPE_RE

MAX_TYPES_PER_MESSAGE = 256  # nested types walked for one schema: a bound against a cyclic/odd install


def normalize(type_name: str) -> str:
    """``pkg/Type`` or ``pkg/msg/Type`` -> ``pkg/msg/Type``; UnknownTypeError for anything else."""
    match = TYPE_RE.fullmatch(type_name or "")
    if not match:
        raise UnknownTypeError(str(type_name), "not of the form 'pkg/msg/Type'")
    pkg, _, name = match.groups()
    return f"{pkg}/msg/{name}"


class MessageDefinitions:
    """Caches the schema text of each message type; UnknownTypeError if a ``.msg`` file is missing."""

    def __init__(self, ament_prefix_path: str | None = None) -> None:
        prefixes = ament_prefix_path if ament_prefix_path is not None else os.environ.get("AMENT_PREFIX_PATH", "")
        self._prefixes = [Path(p) for p in prefixes.split(os.pathsep) if p]
        self._store = get_typestore(Stores.EMPTY)  # builtin_interfaces Time/Duration only
        self._texts: dict[str, str] = {}

    def text(self, type_name: str) -> str:
        """The concatenated ``.msg`` definition of ``type_name`` (``pkg/msg/Type``)."""
        name = normalize(type_name)
        text = self._texts.get(name)
        if text is None:
            self._load(name)
            text = self._store.generate_msgdef(name, ros_version=2)[0]
            self._texts[name] = text
        return text

    def add_text(self, type_name: str, text: str) -> None:
        """Use ``text`` as the schema of ``type_name`` (a schema copied from another MCAP file, e.g. a
        robot's capture, whose type this host may not have installed). Not used for :meth:`serialize`."""
        self._texts.setdefault(normalize(type_name), text)

    def serialize(self, type_name: str, values: dict[str, Any]) -> bytes:
        """CDR of a message given as a dict of its fields (nested messages as dicts, sequences of messages
        as lists of dicts; a missing field is its zero value), for messages that arrive as msgpack maps
        (alerts, log records) rather than as CDR. UnknownTypeError if a field does not fit its type."""
        name = normalize(type_name)
        self.text(name)  # loads the definitions into the store
        try:
            return bytes(self._store.serialize_cdr(self._build(name, values), name))
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
            raise UnknownTypeError(name, f"values do not fit the message: {type(exc).__name__}: {exc}") from None

    def _build(self, name: str, values: Any) -> Any:
        if not isinstance(values, dict):
            raise TypeError(f"{name} must be given as a map")
        _consts, fields = self._store.fielddefs[name]
        kwargs = {fname: self._value(field, values.get(fname)) for fname, field in fields}
        return self._store.types[name](**kwargs)

    def _value(self, field: tuple[Any, Any], value: Any) -> Any:
        kind, detail = field
        if kind == Nodetype.NAME:
            return self._build(str(detail), value if value is not None else {})
        if kind == Nodetype.BASE:
            base = detail[0]
            if value is None:
                return "" if base in ("string", "wstring") else (False if base == "bool" else 0)
            if base in ("string", "wstring"):
                return str(value)
            return bool(value) if base == "bool" else (float(value) if base in ("float32", "float64") else int(value))
        if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE) and detail[0][0] == Nodetype.NAME:
            return [self._value(detail[0], item) for item in (value or [])]
        raise TypeError(f"field kind {kind} (a primitive array) is not supported here")

    def _load(self, type_name: str) -> None:
        """Parse ``type_name`` and every type it refers to that the store lacks, then register them all."""
        found: dict[str, Any] = {}
        pending = [type_name]
        while pending:
            name = pending.pop()
            if name in found or name in self._store.fielddefs:
                continue
            if len(found) >= MAX_TYPES_PER_MESSAGE:
                raise UnknownTypeError(type_name, f"uses more than {MAX_TYPES_PER_MESSAGE} message types")
            try:
                parsed = get_types_from_msg(self._read(name), name)
            except TypesysError as exc:
                raise UnknownTypeError(name, f"its .msg file does not parse: {exc}") from None
            found.update(parsed)
            for _consts, fields in parsed.values():
                pending.extend(_referenced(field) for _, field in fields if _referenced(field))
        try:
            self._store.register(found)
        except TypesysError as exc:
            raise UnknownTypeError(type_name, f"definitions do not fit together: {exc}") from None

    def _read(self, type_name: str) -> str:
        pkg, _, name = type_name.split("/")
        for prefix in self._prefixes:
            path = prefix / "share" / pkg / "msg" / f"{name}.msg"
            if path.is_file():
                return path.read_text(encoding="utf-8")
        raise UnknownTypeError(type_name, f"no {pkg}/msg/{name}.msg under AMENT_PREFIX_PATH")


def _referenced(field: tuple[Any, Any]) -> str:
    """The message type a parsed field refers to (directly or as array/sequence element), or ''."""
    kind, detail = field
    if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        kind, detail = detail[0]
    return str(detail) if kind == Nodetype.NAME else ""
