"""ROS 2 message definitions as Foxglove wants them (schemaEncoding ``ros2msg``), from installed .msg files.

Why the .msg text and not a description rebuilt from the Python classes: it keeps constants and field
defaults, and it is exactly what ``ros2 bag``/MCAP and the Foxglove bridge ship, so every panel that
decodes their data decodes ours. The text is the type's own .msg followed by each type it depends on
(depth first, each once), separated by a line of 80 ``=`` and ``MSG: pkg/Type`` (the format that
``@foxglove/rosmsg``'s ``parse(text, {ros2: true})`` reads). Files are found under
``<prefix>/share/<pkg>/msg/<Type>.msg`` of every AMENT_PREFIX_PATH entry (apt ROS and the PyPI wheels
install them there). A service's request and response are the halves of its .srv around ``---``.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from robot_platform.exceptions import ConfigError

PRIMITIVES = frozenset(
    [
        "bool",
        "byte",
        "char",
        "float32",
        "float64",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "string",
        "wstring",
    ]
)
SEPARATOR = "=" * 80
NAME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)/(?:(msg|srv)/)?([A-Za-z][A-Za-z0-9_]*)$")
MAX_DEPENDENCIES = 200  # a definition graph larger than this is refused (a loop or a broken share dir)


class SchemaError(ConfigError):
    """A type's definition cannot be found or parsed."""

    def __init__(self, type_name: str, reason: str) -> None:
        super().__init__("schema", type_name, reason)


def _split(type_name: str, kind: str) -> tuple[str, str]:
    match = NAME_RE.fullmatch(type_name or "")
    if not match or (match.group(2) and match.group(2) != kind):
        raise SchemaError(type_name, f"not of the form 'pkg/{kind}/Type'")
    return match.group(1), match.group(3)


def _field_type(line: str, pkg: str) -> str | None:
    """The non-primitive type named by one definition line (``pkg/msg/Type``), None for anything else."""
    text = line.split("#", 1)[0].strip()
    parts = text.split()
    if len(parts) < 2 or "=" in parts[1]:  # blank, comment, or a constant (``int8 A=1``)
        return None
    base = re.sub(r"\[.*\]$", "", parts[0]).split("<=", 1)[0]
    if base in PRIMITIVES:
        return None
    if "/" in base:
        dep_pkg, name = _split(base, "msg")
        return f"{dep_pkg}/msg/{name}"
    return f"{pkg}/msg/{base}"


class SchemaStore:
    """Finds and caches definitions; thread-safe (sessions of several worker threads ask at once)."""

    def __init__(self, ament_prefix_path: str | None = None) -> None:
        prefixes = ament_prefix_path if ament_prefix_path is not None else os.environ.get("AMENT_PREFIX_PATH", "")
        self._prefixes = [Path(p) for p in prefixes.split(os.pathsep) if p]
        self._texts: dict[str, str] = {}
        self._defs: dict[str, str] = {}
        self._lock = threading.Lock()

    def _file(self, pkg: str, kind: str, name: str) -> str:
        key = f"{pkg}/{kind}/{name}"
        text = self._texts.get(key)
        if text is None:
            for prefix in self._prefixes:
                path = prefix / "share" / pkg / kind / f"{name}.{kind}"
                if path.is_file():
                    text = path.read_text(encoding="utf-8")
                    break
            else:
                raise SchemaError(key, f"no share/{pkg}/{kind}/{name}.{kind} under AMENT_PREFIX_PATH")
            self._texts[key] = text
        return text

    def _with_dependencies(self, own: str, pkg: str) -> str:
        """``own`` followed by the definitions of every type it uses, each once (depth first)."""
        out, seen = [own.rstrip("\n")], set()
        stack = [(own, pkg)]
        while stack:
            text, text_pkg = stack.pop()
            deps = [d for d in (_field_type(line, text_pkg) for line in text.splitlines()) if d]
            for dep in reversed(deps):
                if dep in seen:
                    continue
                seen.add(dep)
                if len(seen) > MAX_DEPENDENCIES:
                    raise SchemaError(dep, f"more than {MAX_DEPENDENCIES} nested types")
                dep_pkg, name = _split(dep, "msg")
                dep_text = self._file(dep_pkg, "msg", name)
                # named as the .msg files name their fields (pkg/Type): @foxglove/rosmsg matches exactly
                out.append(f"{SEPARATOR}\nMSG: {dep_pkg}/{name}\n{dep_text.rstrip(chr(10))}")
                stack.append((dep_text, dep_pkg))
        return "\n".join(out) + "\n"

    def message(self, type_name: str) -> str:
        """The ros2msg definition of ``pkg/msg/Type`` with its dependencies; SchemaError if missing."""
        with self._lock:
            done = self._defs.get(type_name)
            if done is None:
                pkg, name = _split(type_name, "msg")
                done = self._with_dependencies(self._file(pkg, "msg", name), pkg)
                self._defs[type_name] = done
            return done

    def service(self, type_name: str) -> tuple[str, str]:
        """(request, response) ros2msg definitions of ``pkg/srv/Type``; SchemaError if missing."""
        with self._lock:
            pkg, name = _split(type_name, "srv")
            text = self._file(pkg, "srv", name)
            request, sep, response = text.partition("\n---")
            if not sep:
                raise SchemaError(type_name, "no '---' between request and response")
            return self._with_dependencies(request, pkg), self._with_dependencies(response.lstrip("-"), pkg)
