"""Centralised logs: ROS log records on NATS and the query filter (the streams: messaging/streams.py).

Flow: robot_agent subscribes to ``/rosout`` (rcl_interfaces/msg/Log) and publishes each record on its
robot's *local* nats-server as ``robots.<id>.logs.<level>`` (level = debug|info|warn|error|fatal, so a
query for ``--level warn`` filters on the server). Stream ``LOGS_<id>`` on the robot (its own JetStream
domain) stores them with size and age limits (oldest discarded first), link or no link; stream
``FLEET_LOGS`` on the hub *sources* every ``LOGS_<id>`` over the leaf link (``$JS.<id>.API``), so records
logged while the link is down arrive once it is back, exactly once (sourcing resumes from its last
sequence; ``Nats-Msg-Id`` dedups re-publishes within the duplicate window).

Body: msgpack of the ROS message's fields (``stamp {sec, nanosec}``, ``level``, ``name``, ``msg``,
``file``, ``function``, ``line``), headers: the platform envelope (messaging/envelope.py) with
``Ros-Type: rcl_interfaces/msg/Log``, ``Ros-Topic: /rosout`` and ``Robot-Id``, so ``robot-platform echo
'robots.r1.logs.>'`` and any non-ROS client decode it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgpack

from robot_platform.messaging import subjects
from robot_platform.messaging.envelope import H_ROBOT
from robot_platform.ops.errors import LogRecordError

LOG_TYPE = "rcl_interfaces/msg/Log"
ROSOUT = "/rosout"
LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40, "fatal": 50}
LEVEL_ALIASES = {"warning": "warn", "critical": "fatal"}
MAX_MSG_CHARS = 8192  # longer messages are cut (and say so) to keep records small


def level_name(level: int) -> str:
    """rcl level number -> name (a number between two levels counts as the lower one)."""
    name = "debug"
    for candidate, number in LEVELS.items():
        if level >= number:
            name = candidate
    return name


def parse_level(text: str) -> str:
    """User input (``warn``, ``WARNING``, ``30``) -> canonical level name; ValueError if unknown."""
    key = text.strip().lower()
    key = LEVEL_ALIASES.get(key, key)
    if key.isdigit():
        return level_name(int(key))
    if key not in LEVELS:
        raise ValueError(f"unknown log level {text!r}; use one of {', '.join(LEVELS)}")
    return key


def log_subject(robot_id: str, level: str) -> str:
    return f"{subjects.ROOT}.{subjects.check_robot_id(robot_id)}.logs.{level}"


def level_subjects(robot_id: str, min_level: str) -> list[str]:
    """Subjects of one robot (``*`` = all robots) at ``min_level`` or above."""
    robot = "*" if robot_id == "*" else subjects.check_robot_id(robot_id)
    floor = LEVELS[parse_level(min_level)]
    return [f"{subjects.ROOT}.{robot}.logs.{name}" for name, n in LEVELS.items() if n >= floor]


def encode_record(
    stamp_sec: int, stamp_nanosec: int, level: int, name: str, msg: str, file: str, function: str, line: int
) -> bytes:
    """msgpack body of one rcl_interfaces/msg/Log (the field names of the ROS message)."""
    if len(msg) > MAX_MSG_CHARS:
        msg = msg[:MAX_MSG_CHARS] + f"... [{len(msg) - MAX_MSG_CHARS} chars cut]"
    return msgpack.packb({
        "stamp": {"sec": int(stamp_sec), "nanosec": int(stamp_nanosec)}, "level": int(level), "name": name,
        "msg": msg, "file": file, "function": function, "line": int(line),
    })  # fmt: skip


@dataclass(frozen=True)
class LogEntry:
    """One decoded record, as the query shows it."""

    robot_id: str
    time: float  # seconds since the epoch (the record's ROS stamp)
    level: str
    node: str
    msg: str
    file: str = ""
    line: int = 0
    function: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The entry as the console gets it (``fleet.logs.query`` results, ``/robots/<id>/logs`` messages)."""
        return {
            "robot": self.robot_id, "stamp": self.time, "level": self.level, "node": self.node, "msg": self.msg,
            "file": self.file, "function": self.function, "line": self.line,
        }  # fmt: skip

    def format(self) -> str:
        when = datetime.fromtimestamp(self.time, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
        return f"{when} {self.robot_id} {self.level.upper():5} [{self.node}] {self.msg}"


def decode_entry(subject: str, headers: dict[str, str] | None, data: bytes) -> LogEntry:
    """Decode one record from a ``robots.<id>.logs.<level>`` message; LogRecordError if malformed."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] != subjects.ROOT or parts[2] != "logs":
        raise LogRecordError(subject, "not a robots.<id>.logs.<level> subject")
    try:
        body: Any = msgpack.unpackb(data, raw=False)
        stamp = body["stamp"]
        entry = LogEntry(
            robot_id=(headers or {}).get(H_ROBOT, parts[1]),
            time=int(stamp["sec"]) + int(stamp["nanosec"]) * 1e-9,
            level=level_name(int(body["level"])),
            node=str(body["name"]),
            msg=str(body["msg"]),
            file=str(body.get("file", "")),
            line=int(body.get("line", 0)),
            function=str(body.get("function", "")),
        )
    except (ValueError, TypeError, KeyError, AttributeError, msgpack.UnpackException) as exc:
        raise LogRecordError(subject, f"{type(exc).__name__}: {exc}") from None
    if entry.robot_id != parts[1]:
        raise LogRecordError(subject, f"Robot-Id header {entry.robot_id!r} does not match the subject")
    return entry


@dataclass(frozen=True)
class LogFilter:
    """What ``robot-platform logs`` keeps: node (exact or glob-free substring), text (regex), time window."""

    node: str = ""
    grep: re.Pattern[str] | None = None
    since: float | None = None
    until: float | None = None

    def matches(self, entry: LogEntry) -> bool:
        if self.node and self.node != entry.node and self.node not in entry.node:
            return False
        if self.since is not None and entry.time < self.since:
            return False
        if self.until is not None and entry.time > self.until:
            return False
        return self.grep is None or self.grep.search(entry.msg) is not None


DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_time(text: str, now: float | None = None) -> float:
    """``10m`` / ``2h`` (that long ago), an epoch number, or an ISO 8601 time -> epoch seconds."""
    now = time.time() if now is None else now
    text = text.strip()
    match = DURATION_RE.fullmatch(text)
    if match:
        return now - float(match.group(1)) * UNIT_S[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time {text!r}: use 10m/2h/1d ago, epoch seconds or ISO 8601") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
