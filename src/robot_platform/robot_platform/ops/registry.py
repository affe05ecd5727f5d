"""The fleet registry: what robots announce, and the control side's view of who is online.

A robot announces itself on ``robots.<id>.presence`` at start and then every ``announce_period_s``
(:class:`Announcement`: id, site, software and package versions, host, uptime, capabilities, the
reverse-SSH port it holds on the bastion). The control side folds announcements into
:class:`RobotRecord` s (first/last seen, online/offline) with :class:`Registry`, and keeps them in a
JetStream key-value bucket (``FLEET_REGISTRY``, one key per robot) so the registry survives restarts of
the control server and any client (CLI, console) reads the same state.

Trust: the subject's robot id is authenticated by NATS (a robot's user may publish only
``robots.<own id>.>``, see site_setup/nats_config.py), so an announcement whose body names another robot is
rejected; so is one from a robot outside the configured fleet.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from robot_platform.messaging import subjects
from robot_platform.messaging.errors import SubjectError
from robot_platform.ops.errors import AnnouncementError

BUCKET = "FLEET_REGISTRY"
LIST_SUBJECT = "fleet.registry.list"  # request/reply: {} -> {robots: [record dict, ...]}
EVENTS_SUBJECT = "fleet.registry.events"  # published: one record dict per change
RECORD_TYPE = "robot_platform/fleet/RegistryRecord"
VOLATILE_FIELDS = ("uptime_s", "sent_at")  # change with every announcement: not a "change" of the record
ANNOUNCE_PERIOD_S = 5.0
OFFLINE_AFTER_S = 15.0
MAX_ANNOUNCEMENT_BYTES = 16 * 1024
MAX_LIST_ITEMS = 64
MAX_TEXT = 128
ONLINE = "online"
OFFLINE = "offline"


@dataclass(frozen=True)
class Announcement:
    """One presence message of a robot (JSON on the wire: readable with any NATS tool)."""

    robot_id: str
    site: str = ""
    software_version: str = ""
    packages: dict[str, str] = field(default_factory=dict)
    host: str = ""
    uptime_s: float = 0.0
    capabilities: tuple[str, ...] = ()
    ssh_port: int = 0  # port the robot's reverse tunnel listens on at the bastion (0: no tunnel)
    sent_at: float = 0.0  # robot's wall clock, seconds since the epoch

    def encode(self) -> bytes:
        body = asdict(self)
        body["capabilities"] = list(self.capabilities)
        return json.dumps(body, sort_keys=True).encode()


def _text(value: Any, key: str, subject: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise AnnouncementError(subject, f"{key} must be a string of at most {MAX_TEXT} characters")
    return value


def decode_announcement(subject: str, data: bytes) -> Announcement:
    """Validate one presence message; AnnouncementError if malformed or not from the subject's robot."""
    if len(data) > MAX_ANNOUNCEMENT_BYTES:
        raise AnnouncementError(subject, f"larger than {MAX_ANNOUNCEMENT_BYTES} bytes")
    try:
        parsed = subjects.parse(subject)
    except SubjectError as exc:
        raise AnnouncementError(subject, str(exc)) from None
    if parsed.kind != "presence" or parsed.rest:
        raise AnnouncementError(subject, "not a robots.<id>.presence subject")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise AnnouncementError(subject, "body is not JSON") from None
    if not isinstance(body, dict):
        raise AnnouncementError(subject, "body must be a JSON object")
    if body.get("robot_id") != parsed.robot_id:
        raise AnnouncementError(subject, f"body names robot {body.get('robot_id')!r}, subject {parsed.robot_id!r}")
    packages = body.get("packages", {})
    capabilities = body.get("capabilities", [])
    if not isinstance(packages, dict) or len(packages) > MAX_LIST_ITEMS:
        raise AnnouncementError(subject, f"packages must be an object of at most {MAX_LIST_ITEMS} entries")
    if not isinstance(capabilities, list) or len(capabilities) > MAX_LIST_ITEMS:
        raise AnnouncementError(subject, f"capabilities must be a list of at most {MAX_LIST_ITEMS} names")
    numbers = {k: body.get(k, 0) for k in ("uptime_s", "sent_at", "ssh_port")}
    for key, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise AnnouncementError(subject, f"{key} must be a non-negative number")
    if not isinstance(numbers["ssh_port"], int) or numbers["ssh_port"] > 65535:
        raise AnnouncementError(subject, "ssh_port must be an integer port")
    return Announcement(
        robot_id=parsed.robot_id,
        site=_text(body.get("site", ""), "site", subject),
        software_version=_text(body.get("software_version", ""), "software_version", subject),
        packages={_text(k, "package", subject): _text(v, "version", subject) for k, v in packages.items()},
        host=_text(body.get("host", ""), "host", subject),
        uptime_s=float(numbers["uptime_s"]),
        capabilities=tuple(_text(c, "capability", subject) for c in capabilities),
        ssh_port=int(numbers["ssh_port"]),
        sent_at=float(numbers["sent_at"]),
    )


def deployed_versions(install_root: Path) -> dict[str, str]:
    """Active version of every package deploy_service installed under ``install_root`` (its ``current``
    symlinks), so the registry shows what runs on the robot; empty when nothing is installed."""
    if not install_root.is_dir():
        return {}
    out = {}
    for package in sorted(install_root.iterdir())[:MAX_LIST_ITEMS]:
        try:
            version = Path(os.readlink(package / "current")).name
        except OSError:
            continue
        out[package.name] = version
    return out


def package_versions(names: list[str]) -> dict[str, str]:
    """Installed versions of Python distributions (``"-"`` when one is not installed)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return versions


@dataclass
class RobotRecord:
    """The registry's entry for one robot (the value of its key in the bucket, as JSON)."""

    robot_id: str
    status: str
    first_seen: float
    last_seen: float  # control server's wall clock when the last announcement arrived
    announcements: int
    last: dict[str, Any]  # the last Announcement, as sent

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    def to_dict(self) -> dict[str, Any]:
        """What ``fleet.registry.list`` and ``fleet.registry.events`` carry (the bucket's JSON, as a dict)."""
        return asdict(self)

    @classmethod
    def decode(cls, data: bytes) -> RobotRecord:
        body = json.loads(data)
        return cls(
            robot_id=str(body["robot_id"]),
            status=str(body["status"]),
            first_seen=float(body["first_seen"]),
            last_seen=float(body["last_seen"]),
            announcements=int(body["announcements"]),
            last=dict(body.get("last", {})),
        )

    def effective_status(self, now: float, offline_after_s: float) -> str:
        """Offline if nothing was heard for ``offline_after_s``, whatever the stored status says."""
        return OFFLINE if now - self.last_seen > offline_after_s else self.status


class Registry:
    """Folds announcements into records and finds robots gone silent (pure logic, no I/O)."""

    def __init__(self, offline_after_s: float = OFFLINE_AFTER_S, fleet: list[str] | None = None) -> None:
        if offline_after_s <= 0:
            raise ValueError("offline_after_s must be > 0")
        self.offline_after_s = offline_after_s
        self.fleet = set(fleet or [])
        self.records: dict[str, RobotRecord] = {}
        self.rejected = 0

    def load(self, record: RobotRecord) -> None:
        self.records[record.robot_id] = record

    def apply(self, announcement: Announcement, now: float | None = None) -> tuple[RobotRecord, bool]:
        """Record one announcement; returns the record and whether the robot (re)appeared."""
        now = time.time() if now is None else now
        if self.fleet and announcement.robot_id not in self.fleet:
            self.rejected += 1
            raise AnnouncementError(subjects.presence(announcement.robot_id), "robot is not in the fleet")
        record = self.records.get(announcement.robot_id)
        body = json.loads(announcement.encode())
        if record is None:
            record = RobotRecord(announcement.robot_id, ONLINE, now, now, 1, body)
            self.records[announcement.robot_id] = record
            return record, True
        appeared = record.status != ONLINE
        record.status = ONLINE
        record.last_seen = now
        record.announcements += 1
        record.last = body
        return record, appeared

    def sweep(self, now: float | None = None) -> list[RobotRecord]:
        """Mark robots silent for longer than the timeout offline; returns those that just went offline."""
        now = time.time() if now is None else now
        gone = []
        for record in self.records.values():
            if record.status == ONLINE and now - record.last_seen > self.offline_after_s:
                record.status = OFFLINE
                gone.append(record)
        return gone


class EventThrottle:
    """Which record updates ``fleet.registry.events`` publishes (pure logic, bounded by the fleet's size).

    Published at once: a robot's first record, a status change (online/offline), and an announcement
    whose content changed (site, versions, host, capabilities...; not uptime or the robot's clock).
    A record whose only news is ``last_seen`` / uptime is re-published at most every ``refresh_s``
    (the registry uses ``offline_after_s / 2``), so a console's "last seen" stays fresh at bounded cost.
    """

    def __init__(self, refresh_s: float) -> None:
        if refresh_s <= 0:
            raise ValueError("refresh_s must be > 0")
        self.refresh_s = refresh_s
        self._sent: dict[str, tuple[tuple[str, str], float]] = {}
        self.suppressed = 0

    @staticmethod
    def _signature(record: RobotRecord) -> tuple[str, str]:
        content = {k: v for k, v in record.last.items() if k not in VOLATILE_FIELDS}
        return record.status, json.dumps(content, sort_keys=True)

    def should_publish(self, record: RobotRecord, now: float) -> bool:
        signature = self._signature(record)
        previous = self._sent.get(record.robot_id)
        if previous is not None and previous[0] == signature and now - previous[1] < self.refresh_s:
            self.suppressed += 1
            return False
        self._sent[record.robot_id] = (signature, now)
        return True


def format_table(records: list[RobotRecord], now: float, offline_after_s: float) -> str:
    """Human-readable listing for ``robot-platform robots``."""
    header = ("ROBOT", "STATUS", "SITE", "VERSION", "HOST", "UPTIME", "LAST SEEN", "CAPABILITIES", "PACKAGES")
    rows = [header]
    for r in sorted(records, key=lambda rec: rec.robot_id):
        last = r.last
        rows.append((
            r.robot_id, r.effective_status(now, offline_after_s), str(last.get("site", "")),
            str(last.get("software_version", "")), str(last.get("host", "")),
            _duration(float(last.get("uptime_s", 0.0))), f"{_duration(max(0.0, now - r.last_seen))} ago",
            ",".join(last.get("capabilities", [])),
            ",".join(f"{name}={version}" for name, version in sorted((last.get("packages") or {}).items())),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
