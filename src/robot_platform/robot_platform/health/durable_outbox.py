"""Durable, bounded FIFO of alerts waiting for JetStream's acknowledgement (SQLite in WAL mode).

Why on disk: alerts raised while the NATS link is down are exactly the ones an operator needs later,
and a SIGTERM or crash during the outage must not lose them. Each alert is committed (WAL, fsync) when
it is queued and deleted only once JetStream acknowledged it, so a restart replays what is left, in
order, with the original headers. The ``Nats-Msg-Id`` header travels with each entry: an alert that
was stored by JetStream but whose ack was lost before the crash is sent again with the same id and
dropped by the stream's duplicate window (exactly once).

Policies:
    bound       ``max_items`` entries; queuing one more deletes the oldest (drop-oldest, counted, logged).
    corruption  a file SQLite cannot read is renamed ``<name>.corrupt-<UTC time>`` (with its -wal/-shm),
                logged with both paths, counted, and a fresh queue starts: the node keeps running.
    one owner   an exclusive lock file guards the queue; a second process for the same robot and
                directory gets a memory-only queue (warned) instead of sending the first one's alerts.
    I/O errors  a write that fails (disk full, directory gone) switches to a memory-only queue holding
                what could still be read; logged and counted, never raised into the tick.

``path=None`` gives the same queue in memory (no durability). Thread-safe; no rclpy here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack

from robot_platform.health.state_lock import StateFileBusy, lock_state_file

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DROP_LOG_EVERY = 100  # log the first drop and then every n-th (a long outage must not flood the log)
MEMORY = ":memory:"
SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    body BLOB NOT NULL,
    headers BLOB NOT NULL,
    queued_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class OutMsg:
    """A message ready for NATS: subject, msgpack body, headers (incl. Nats-Msg-Id)."""

    subject: str
    body: bytes
    headers: dict[str, str]


class OutboxSchemaError(sqlite3.DatabaseError):
    """The file is an SQLite database but not one of our queues (treated like a corrupt file)."""


class DurableOutbox:
    """Bounded FIFO of :class:`OutMsg`, persisted in ``path`` (``None``: memory only).

    Counters (read them for metrics and logs): ``dropped`` (drop-oldest), ``corrupt`` (files moved
    aside, unreadable rows skipped), ``store_errors`` (I/O failures that switched to memory),
    ``replayed`` (entries found at open).
    """

    def __init__(self, path: str | Path | None, max_items: int) -> None:
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self.max_items = max_items
        self.path = Path(path).expanduser() if path is not None else None
        self.dropped = self.corrupt = self.store_errors = 0
        self.corrupt_files: list[Path] = []
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._count = 0
        self._db = self._open()
        self.replayed = self._count

    @property
    def durable(self) -> bool:
        """True while alerts are kept on disk."""
        return self.path is not None

    # ---- open / recover ---------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self.path is not None and not self._take_lock(self.path):
            self.path = None
        if self.path is None:
            return self._connect(MEMORY)
        try:
            return self._connect(str(self.path))
        except sqlite3.OperationalError as exc:  # cannot open or write (permissions, disk): not corrupt
            self._memory_mode(f"cannot open {self.path}: {exc}")
            return self._connect(MEMORY)
        except sqlite3.DatabaseError as exc:  # not a database, malformed, or not our schema
            self._move_aside(self.path, exc)
        try:
            return self._connect(str(self.path))
        except sqlite3.Error as exc:  # e.g. the directory is not writable: keep alerts in memory
            self._memory_mode(f"cannot create {self.path}: {exc}")
            return self._connect(MEMORY)

    def _take_lock(self, path: Path) -> bool:
        try:
            self._lock_fd = lock_state_file(path)
        except StateFileBusy:
            log.warning(
                "alert outbox %s is in use by another process (same robot_id and state_dir?); "
                "alerts are kept in memory only: give each health_monitor_tree its own state_dir",
                path,
            )
            return False
        except OSError as exc:
            self.store_errors += 1
            log.error("alert outbox: cannot use %s (%s); alerts are kept in memory only", path, exc)
            return False
        return True

    def _connect(self, target: str) -> sqlite3.Connection:
        db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        try:
            if target != MEMORY:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")  # every commit reaches the disk: a crash keeps it
                check = db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {check}")
            db.executescript(SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise OutboxSchemaError(f"schema version {row[0]!r}, expected {SCHEMA_VERSION}")
            self._count = int(db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0])
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _move_aside(self, path: Path, exc: Exception) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{path}{suffix}", f"{target}{suffix}")
        self.corrupt += 1
        self.corrupt_files.append(target)
        log.error(
            "alert outbox %s is unreadable (%s): moved aside to %s, starting an empty outbox "
            "(alerts queued in it before are not replayed; inspect the file with sqlite3)",
            path,
            exc,
            target,
        )

    def _memory_mode(self, reason: str) -> None:
        self.store_errors += 1
        self.path = None
        log.error("alert outbox: %s; alerts are kept in memory only until restart", reason)

    def _fail_over(self, exc: sqlite3.Error) -> None:
        """A disk operation failed: continue in memory with what can still be read."""
        rows: list[tuple[str, bytes, bytes, float]] = []
        with contextlib.suppress(sqlite3.Error):
            rows = self._db.execute("SELECT subject, body, headers, queued_at FROM alerts ORDER BY seq").fetchall()
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        self._memory_mode(f"write to {self.path} failed ({exc})")
        self._db = self._connect(MEMORY)
        self._db.executemany("INSERT INTO alerts (subject, body, headers, queued_at) VALUES (?, ?, ?, ?)", rows)
        self._count = len(rows)

    # ---- queue API ----------------------------------------------------------------------------------

    def append(self, msg: OutMsg) -> int:
        """Queue ``msg`` (committed before returning); returns how many oldest entries were dropped."""
        headers = msgpack.packb(msg.headers, use_bin_type=True)
        with self._lock:
            try:
                return self._append(msg, headers)
            except sqlite3.Error as exc:
                self._fail_over(exc)
                return self._append(msg, headers)

    def _append(self, msg: OutMsg, headers: bytes) -> int:
        excess = max(0, self._count + 1 - self.max_items)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if excess:
                db.execute("DELETE FROM alerts WHERE seq IN (SELECT seq FROM alerts ORDER BY seq LIMIT ?)", (excess,))
            db.execute(
                "INSERT INTO alerts (subject, body, headers, queued_at) VALUES (?, ?, ?, ?)",
                (msg.subject, msg.body, headers, time.time()),
            )
            db.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        self._count += 1 - excess
        if excess:
            before = self.dropped
            self.dropped += excess
            if before == 0 or before // DROP_LOG_EVERY != self.dropped // DROP_LOG_EVERY:
                log.warning(
                    "alert outbox full (%d): dropped the oldest alert(s), %d dropped so far",
                    self.max_items,
                    self.dropped,
                )
        return excess

    def peek(self) -> tuple[int, OutMsg] | None:
        """The oldest entry as ``(seq, msg)``, or None; an unreadable row is removed and counted."""
        with self._lock:
            while True:
                try:
                    row = self._db.execute(
                        "SELECT seq, subject, body, headers FROM alerts ORDER BY seq LIMIT 1"
                    ).fetchone()
                except sqlite3.Error as exc:
                    self._fail_over(exc)
                    continue
                if row is None:
                    return None
                seq, subject, body, raw = row
                try:
                    headers = msgpack.unpackb(raw, raw=False)
                    if not isinstance(headers, dict) or not isinstance(subject, str) or not isinstance(body, bytes):
                        raise ValueError("unexpected row types")
                    return seq, OutMsg(subject, body, {str(k): str(v) for k, v in headers.items()})
                except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
                    self.corrupt += 1
                    log.error("alert outbox: entry %d is unreadable (%s): removed", seq, exc)
                    self._remove(seq)

    def remove(self, seq: int) -> None:
        """Forget entry ``seq`` (JetStream acknowledged it); removing a missing entry is a no-op."""
        with self._lock:
            self._remove(seq)

    def _remove(self, seq: int) -> None:
        try:
            deleted = self._db.execute("DELETE FROM alerts WHERE seq = ?", (seq,)).rowcount
        except sqlite3.Error as exc:
            self._fail_over(exc)
            return  # the memory copy renumbered the entries: the caller peeks again and the stream dedups
        self._count -= max(0, deleted)

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def close(self) -> None:
        """Close the database (everything is committed already) and release the lock file."""
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing the descriptor releases the flock
                self._lock_fd = None
