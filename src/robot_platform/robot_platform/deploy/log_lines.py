"""Lines of a process's output, from bytes to log records: splitting, cleaning, and the level each names.

Pure functions and small stateful parsers, no I/O: :class:`LineSplitter` turns pipe reads into lines
(a line past ``max_bytes`` is cut and says so), :func:`clean_line` makes one printable, and
:class:`LevelParser` gives it a level (the ones ``rcl_interfaces/msg/Log`` knows), from the markers
common loggers write (ROS console, Python logging and warnings, glog, logfmt and JSON, tracebacks).
Used by :class:`~.app_logs.OutputReader`.
"""

from __future__ import annotations

import re

# rcl_interfaces/msg/Log levels
DEBUG, INFO, WARN, ERROR, FATAL = 10, 20, 30, 40, 50
LEVEL_NAMES = {"debug": DEBUG, "info": INFO, "warn": WARN, "error": ERROR, "fatal": FATAL}

MAX_LINE_BYTES = 4096
HEAD_CHARS = 80  # where a level marker is looked for

_WORDS = {
    "trace": DEBUG, "debug": DEBUG, "dbg": DEBUG, "info": INFO, "notice": INFO, "warn": WARN, "warning": WARN,
    "err": ERROR, "error": ERROR, "crit": FATAL, "critical": FATAL, "fatal": FATAL, "panic": FATAL,
}  # fmt: skip
_WORD = "|".join(sorted(_WORDS, key=len, reverse=True))
_MARKERS = (
    re.compile(rf"[\[<(]\s*({_WORD})\s*[\]>)]", re.IGNORECASE),  # [WARN] (ROS console), <error>, (info)
    re.compile(rf"\b(?:level|lvl|severity)\"?\s*[=:]\s*\"?({_WORD})\b", re.IGNORECASE),  # logfmt, JSON
    re.compile(rf"^\s*({_WORD})\s*:", re.IGNORECASE),  # "warning: ...", "Error: ..."
    re.compile(rf"(?<![\w-])({_WORD.upper()})(?![\w-])"),  # WARNING:root:..., "12:00:01 ERROR name ..."
)
_PY_WARNING = re.compile(r"\b[A-Z]\w*Warning: ")  # warnings module: "x.py:3: DeprecationWarning: ..."
_GLOG = re.compile(r"^([DIWEF])\d{4} \d\d:\d\d:\d\d")  # glog/absl: "W1125 20:01:02.123456 ..."
_GLOG_LEVELS = {"D": DEBUG, "I": INFO, "W": WARN, "E": ERROR, "F": FATAL}
_TRACEBACK = re.compile(r"^Traceback \(most recent call last\):")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Warning)(:\s|:?$)")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROL = {c: "\ufffd" for c in (*range(0, 9), *range(11, 32), 127)}


def clean_line(raw: bytes) -> str:
    """Bytes of one line -> printable text: UTF-8 (invalid bytes replaced), no colour codes or controls.

    A carriage return redraws a terminal line (progress bars): the text after the last one is kept.
    """
    text = raw.decode("utf-8", errors="replace").rstrip("\r")
    if "\r" in text:
        text = text.rsplit("\r", 1)[1]
    return _ANSI.sub("", text).translate(_CONTROL).rstrip()


def marked_level(text: str) -> int | None:
    """The level a line names, if it names one: the earliest marker in its first ``HEAD_CHARS`` chars.

    Recognised: ROS console ``[WARN] [stamp] [node]: ...``, Python logging ``WARNING:name:msg`` and
    ``<time> ERROR name: msg``, ``warning: ...``, ``level=warn`` / ``"level": "error"``, glog ``W1125 ...``,
    the ``warnings`` module (``...: DeprecationWarning: ...``), tracebacks and ``SomeError: ...`` lines.
    """
    if _TRACEBACK.match(text):
        return ERROR
    match = _EXCEPTION.match(text)
    if match:
        return WARN if match.group(1) == "Warning" else ERROR
    match = _GLOG.match(text)
    if match:
        return _GLOG_LEVELS[match.group(1)]
    head = text[:HEAD_CHARS]
    found = [(m.start(), _WORDS[m.group(1).lower()]) for p in _MARKERS if (m := p.search(head))]
    if found:
        return min(found)[1]
    if _PY_WARNING.search(head):
        return WARN
    return None


class LevelParser:
    """Levels of one stream's lines. Stateful: an indented line without a marker (a traceback frame, the
    rest of a multi-line message) keeps the level of the line it continues."""

    def __init__(self, default: int) -> None:
        self.default = default
        self._previous = default
        self._in_traceback = False

    def level(self, text: str) -> int:
        indented = text[:1] in (" ", "\t")
        if self._in_traceback and indented:
            return self._previous
        self._in_traceback = bool(_TRACEBACK.match(text))
        level = marked_level(text)
        if level is None:
            level = self._previous if indented else self.default
        self._previous = level
        return level


class LineSplitter:
    """Bytes in, complete lines out; a line past ``max_bytes`` is cut there (the rest until its newline is
    dropped) and reported as truncated."""

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._skipping = False  # inside the rest of a line that was cut

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        """``(line, truncated)`` for every line completed (or cut) by ``data``."""
        out: list[tuple[bytes, bool]] = []
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if not self._skipping and len(self._buffer) > self.max_bytes:
                    out.append((bytes(self._buffer[: self.max_bytes]), True))
                    self._skipping = True
                if self._skipping:
                    self._buffer.clear()
                return out
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._skipping:
                self._skipping = False
                continue
            if len(line) > self.max_bytes:
                out.append((line[: self.max_bytes], True))
            else:
                out.append((line, False))

    def flush(self) -> list[tuple[bytes, bool]]:
        """The last line if the stream ended without a newline."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        skipping, self._skipping = self._skipping, False
        return [(rest, False)] if rest and not skipping else []
