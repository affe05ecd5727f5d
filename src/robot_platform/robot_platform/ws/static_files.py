"""The web UI's files (touch panel, console) from one directory: no listing, no traversal, bounded size.

``/`` is ``index.html``; ``<dir>/`` is ``<dir>/index.html`` (the pages' own URLs). A path that leaves the
directory (``..``, absolute, symlink out), names a hidden file or is not a regular file is "not found".
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

MAX_FILE_BYTES = 32 * 1024 * 1024
DEFAULT_TYPE = "application/octet-stream"
TEXT_TYPES = ("text/", "application/javascript", "application/json", "image/svg+xml")


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str


class StaticFiles:
    """Reads files under ``root``; :meth:`get` returns None for anything not servable."""

    def __init__(self, root: Path | None) -> None:
        self.root = root.resolve() if root is not None else None

    def resolve(self, url_path: str) -> Path | None:
        if self.root is None or not self.root.is_dir():
            return None
        rel = unquote(url_path).lstrip("/")
        if rel == "" or rel.endswith("/"):
            rel += "index.html"
        parts = rel.split("/")
        if any(p in ("", ".", "..") or p.startswith(".") or "\\" in p or "\0" in p for p in parts):
            return None
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path

    def get(self, url_path: str) -> StaticFile | None:
        path = self.resolve(url_path)
        if path is None:
            return None
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                return None
            body = path.read_bytes()
        except OSError:
            return None
        ctype = mimetypes.guess_type(path.name)[0] or DEFAULT_TYPE
        if ctype.startswith(TEXT_TYPES):
            ctype += "; charset=utf-8"
        return StaticFile(body, ctype)
