"""Allow/deny glob patterns over ROS topic names, for picking topics to bridge while running.

Pattern syntax (on fully qualified names): ``*`` matches within one name token (never ``/``), ``**``
matches any number of tokens (``/robot/**`` matches ``/robot/a`` and ``/robot/a/b``), ``?`` one
character. Deny wins over allow; an empty allow list allows nothing (least privilege).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from robot_platform.exceptions import ConfigError


def compile_glob(pattern: str) -> re.Pattern[str]:
    """Regex of one topic glob; ConfigError if it is not an absolute pattern."""
    if not isinstance(pattern, str) or not pattern.startswith("/"):
        raise ConfigError("pattern", pattern, "topic patterns start with '/' (e.g. /sensors/*)")
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("/**", i) and (i + 3 == len(pattern) or pattern[i + 3] == "/"):
            out.append("(?:/[^/]+)*")
            i += 3
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$")


class TopicFilter:
    """Decides whether a discovered topic is bridged: matches an allow pattern and no deny pattern."""

    def __init__(self, allow: Iterable[str], deny: Iterable[str] = ()) -> None:
        self.allow = [p for p in allow if p]
        self.deny = [p for p in deny if p]
        self._allow = [compile_glob(p) for p in self.allow]
        self._deny = [compile_glob(p) for p in self.deny]

    def __call__(self, topic: str) -> bool:
        if any(r.fullmatch(topic) for r in self._deny):
            return False
        return any(r.fullmatch(topic) for r in self._allow)
