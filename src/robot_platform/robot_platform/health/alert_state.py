"""The active alerts of health_monitor_tree, kept on disk so alert identity survives a restart.

Why: consumers (operator console, touch panel, stream readers) track alerts by ``alert_id``. A process
that starts every check at OK would never clear the alerts its predecessor raised (ghosts) and would
raise a still-present fault again under a new id (duplicates). The monitor saves what it has *published*
as active (check name -> alert id, code, severity, raise stamp, acknowledgement, message) whenever that
changes, and the next process loads it and takes the alerts over (see :meth:`HealthMonitor.restore`).

Storage: one small JSON document, ``<state_dir>/active_alerts.json``, rewritten whole: temp file in the
same directory, fsync, ``os.replace`` (atomic on POSIX), fsync of the directory. Why not a second table
in the NATS outbox's SQLite file: the outbox exists only when NATS output is on and durable, while
alert identity matters for every sink (ROS, MQTT too); the document is tiny (one entry per faulted
check), always replaced as a whole, and readable with ``cat`` during an incident.

Policies (like the outbox's):
    bound       at most ``max_alerts`` entries and ``MAX_FILE_BYTES``; messages cut to MESSAGE_MAX chars.
                Extra entries are dropped (counted, logged) - newest raise stamps kept.
    corruption  a file that is not our JSON document (or belongs to another robot) is renamed
                ``<name>.corrupt-<UTC time>``, logged with both paths and counted; the node starts with no
                restored alerts. A single malformed entry is skipped and counted.
    one owner   an exclusive lock file; a second process on the same directory neither loads nor saves.
    I/O errors  a failed save is logged and counted and retried on the next change; never raised.

Plain Python (no rclpy).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from robot_platform.health.state_lock import StateFileBusy, lock_state_file

log = logging.getLogger(__name__)

STATE_FILE = "active_alerts.json"
STATE_VERSION = 1
ALERTS_MAX = 256  # more checks than any tree we ship; the bound only guards against a runaway file
MESSAGE_MAX = 1000
NOTE_MAX = 256  # an acknowledgement note or a silence reason
MAX_FILE_BYTES = 1_000_000


@dataclass(frozen=True)
class SavedSilence:
    """An operator's silence of a check, so a restart (robot reboot) does not end it early."""

    check: str
    until: float  # wall clock (s since the epoch) when it ends
    by: str
    at: float  # wall clock of the silence request
    reason: str = ""  # the operator's reason (maintenance, ...)

    @classmethod
    def from_dict(cls, raw: Any) -> SavedSilence:
        """Validate one entry; raises ValueError naming what is wrong."""
        if not isinstance(raw, dict):
            raise ValueError("silence entry is not an object")
        if not isinstance(raw.get("check"), str) or not raw["check"] or not isinstance(raw.get("by"), str):
            raise ValueError("silence entry needs a check and who set it")
        for key in ("until", "at"):
            if isinstance(raw.get(key), bool) or not isinstance(raw.get(key), (int, float)):
                raise ValueError(f"silence {key} must be a number")
        reason = raw.get("reason", "")
        if not isinstance(reason, str):
            raise ValueError("silence reason must be a string")
        return cls(raw["check"], float(raw["until"]), raw["by"], float(raw["at"]), reason[:NOTE_MAX])


@dataclass(frozen=True)
class SavedAlert:
    """One published, still active alert as the next process needs it."""

    check: str
    alert_id: str
    code: str
    severity: int
    raised_stamp: float  # wall clock (s since the epoch) of the raise
    message: str = ""
    acknowledged_by: str = ""
    acknowledged_at: float | None = None

    @classmethod
    def from_dict(cls, raw: Any) -> SavedAlert:
        """Validate one entry of the file; raises ValueError naming what is wrong."""
        if not isinstance(raw, dict):
            raise ValueError("entry is not an object")
        for key in ("check", "alert_id", "code"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise ValueError(f"{key} missing or not a non-empty string")
        severity = raw.get("severity")
        if not isinstance(severity, int) or isinstance(severity, bool) or not 0 <= severity <= 3:
            raise ValueError(f"severity {severity!r} is not 0..3")
        stamp = raw.get("raised_stamp")
        if not isinstance(stamp, (int, float)) or isinstance(stamp, bool):
            raise ValueError("raised_stamp is not a number")
        ack_at = raw.get("acknowledged_at")
        if ack_at is not None and (not isinstance(ack_at, (int, float)) or isinstance(ack_at, bool)):
            raise ValueError("acknowledged_at is not a number")
        message, ack_by = raw.get("message", ""), raw.get("acknowledged_by", "")
        if not isinstance(message, str) or not isinstance(ack_by, str):
            raise ValueError("message / acknowledged_by not strings")
        return cls(
            raw["check"], raw["alert_id"], raw["code"], severity, float(stamp), message[:MESSAGE_MAX], ack_by,
            None if ack_at is None else float(ack_at),
        )  # fmt: skip


class AlertStateStore:
    """Load once at start, then :meth:`save` the active alerts whenever they change.

    ``directory=None`` keeps nothing (persistence disabled). Counters: ``corrupt`` (files moved aside,
    entries skipped), ``dropped`` (entries beyond the bound), ``store_errors`` (failed saves, lock or
    directory problems), ``saves``.
    """

    def __init__(self, directory: str | Path | None, robot_id: str, max_alerts: int = ALERTS_MAX) -> None:
        if max_alerts < 1:
            raise ValueError("max_alerts must be >= 1")
        self.robot_id = robot_id
        self.max_alerts = max_alerts
        self.path = Path(directory).expanduser() / STATE_FILE if directory is not None else None
        self.corrupt = self.dropped = self.store_errors = self.saves = 0
        self.corrupt_files: list[Path] = []
        self._last: list[SavedAlert] | None = None
        self.silences: list[SavedSilence] = []  # running silences read by load()
        self._last_silences: list[SavedSilence] = []
        self._lock_fd: int | None = None
        if self.path is not None and not self._take_lock(self.path):
            self.path = None

    @property
    def durable(self) -> bool:
        return self.path is not None

    def _take_lock(self, path: Path) -> bool:
        try:
            self._lock_fd = lock_state_file(path)
        except StateFileBusy:
            self.store_errors += 1
            log.warning(
                "active alert state %s is in use by another process (same state_dir?); not loading or saving it: "
                "give each health_monitor_tree its own state_dir",
                path,
            )
            return False
        except OSError as exc:
            self.store_errors += 1
            log.error("active alert state: cannot use %s (%s); alert ids will not survive a restart", path, exc)
            return False
        return True

    # ---- load ---------------------------------------------------------------------------------------

    def load(self) -> list[SavedAlert]:
        """The alerts the previous process left active (empty if none, disabled, or unreadable)."""
        if self.path is None:
            return []
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.store_errors += 1
            log.error("active alert state %s unreadable (%s): starting without restored alerts", self.path, exc)
            return []
        try:
            if len(raw) > MAX_FILE_BYTES:
                raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
                raise ValueError(f"not a version {STATE_VERSION} alert state document")
            if doc.get("robot_id") != self.robot_id:
                raise ValueError(f"written for robot {doc.get('robot_id')!r}, this is {self.robot_id!r}")
            entries = doc.get("alerts")
            if not isinstance(entries, list):
                raise ValueError("'alerts' is not a list")
        except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
            self._move_aside(self.path, exc)
            return []
        alerts: dict[str, SavedAlert] = {}
        for i, entry in enumerate(entries):
            try:
                alert = SavedAlert.from_dict(entry)
            except ValueError as exc:
                self.corrupt += 1
                log.error("active alert state %s: entry %d skipped (%s)", self.path, i, exc)
                continue
            alerts[alert.check] = alert  # one alert per check; a repeated name keeps the last entry
        out = self._bounded(list(alerts.values()))
        self._last = out
        self.silences = self._read_silences(doc.get("silences", []))
        self._last_silences = self.silences
        return out

    def _read_silences(self, entries: Any) -> list[SavedSilence]:
        """The saved silences (the monitor skips those that ended meanwhile); bad entries skipped, counted."""
        if not isinstance(entries, list):
            self.corrupt += 1
            log.error("active alert state %s: 'silences' is not a list; ignored", self.path)
            return []
        out = []
        for i, entry in enumerate(entries[: self.max_alerts]):
            try:
                silence = SavedSilence.from_dict(entry)
            except ValueError as exc:
                self.corrupt += 1
                log.error("active alert state %s: silence %d skipped (%s)", self.path, i, exc)
                continue
            out.append(silence)
        return out

    def _bounded(self, alerts: list[SavedAlert]) -> list[SavedAlert]:
        if len(alerts) <= self.max_alerts:
            return alerts
        alerts = sorted(alerts, key=lambda a: a.raised_stamp, reverse=True)
        excess = len(alerts) - self.max_alerts
        self.dropped += excess
        log.warning("active alert state: %d alert(s) beyond the bound of %d dropped (oldest)", excess, self.max_alerts)
        return alerts[: self.max_alerts]

    def _move_aside(self, path: Path, exc: Exception) -> None:
        target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        try:
            os.replace(path, target)
        except OSError as err:
            self.store_errors += 1
            log.error("active alert state %s is unreadable (%s) and cannot be moved aside (%s)", path, exc, err)
            return
        self.corrupt += 1
        self.corrupt_files.append(target)
        log.error(
            "active alert state %s is unreadable (%s): moved aside to %s, starting without restored alerts "
            "(alerts it listed will not be cleared automatically; inspect the file)",
            path,
            exc,
            target,
        )

    # ---- save ---------------------------------------------------------------------------------------

    def save(self, alerts: Mapping[str, SavedAlert] | list[SavedAlert],
             silences: list[SavedSilence] | None = None) -> bool:  # fmt: skip
        """Write ``alerts`` (and the running ``silences``; None keeps the last ones) atomically if they
        differ from the last saved/loaded state; True if written."""
        if self.path is None:
            return False
        items = list(alerts.values()) if isinstance(alerts, Mapping) else list(alerts)
        items = sorted(self._bounded(items), key=lambda a: a.check)
        quiet = sorted(silences if silences is not None else self._last_silences, key=lambda q: q.check)
        quiet = quiet[: self.max_alerts]
        if items == self._last and quiet == self._last_silences:
            return False
        doc = {
            "version": STATE_VERSION,
            "robot_id": self.robot_id,
            "saved_at": time.time(),
            "alerts": [{**asdict(a), "message": a.message[:MESSAGE_MAX]} for a in items],
            "silences": [asdict(q) for q in quiet],
        }
        data = json.dumps(doc, indent=1, sort_keys=True).encode()
        tmp = ""
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{STATE_FILE}.", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            tmp = ""
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the rename itself reaches the disk
            finally:
                os.close(dir_fd)
        except OSError as exc:
            self.store_errors += 1
            log.error("active alert state: saving %s failed (%s); retried on the next change", self.path, exc)
            return False
        finally:
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        self._last, self._last_silences = items, quiet
        self.saves += 1
        return True

    def close(self) -> None:
        """Release the lock (everything is saved already)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
