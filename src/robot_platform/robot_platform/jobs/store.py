"""Durable store of jobs and executions: SQLite (stdlib ``sqlite3``), WAL journal, ``synchronous=FULL``.

Why SQLite rather than a JSON journal with fsync: the service's state changes are multi-row (an abort
cancels every not-yet-started execution of a job at once; a device update changes an execution and may
release the next ones), and SQLite commits such a change atomically and durably (fsync on commit with
``synchronous=FULL``), so a crash or power loss leaves the store before or after the change, never in
between. It also answers the device-side queries (the pending executions of one thing, oldest first) from
an index instead of a replayed log, needs no compaction, and is in the standard library. One writer (the
service, under its lock); the file can be inspected with ``sqlite3`` for support.

Not thread-safe by itself: the service serializes access.

Active/standby (jobs/ha.py): every committed row is also handed to :attr:`JobStore.on_change` as
``(key, row)`` (:func:`row_key`), which the active instance replicates into an R3 KV bucket; a standby that
takes over rebuilds this file from the bucket with :meth:`JobStore.replace_all`. SQLite stays the working
store (queries, atomic multi-row changes); the bucket is the copy that survives the machine.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

from robot_platform.jobs.errors import JobStoreError
from robot_platform.jobs.model import Execution, Job, JobSpec, RetryConfig, RolloutConfig
from robot_platform.mqtt.jobs_protocol import ExecStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    reason_code TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    completed_at REAL,
    rest_started_at REAL
);
CREATE TABLE IF NOT EXISTS executions (
    job_id TEXT NOT NULL REFERENCES jobs(job_id),
    thing TEXT NOT NULL,
    status TEXT NOT NULL,
    canary INTEGER NOT NULL,
    status_details TEXT NOT NULL,
    queued_at REAL,
    started_at REAL,
    last_updated_at REAL NOT NULL,
    version INTEGER NOT NULL,
    execution_number INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    attempt INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (job_id, thing)
);
CREATE INDEX IF NOT EXISTS executions_by_thing ON executions (thing, status, queued_at);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status);
"""
EXEC_COLUMNS = (
    "job_id, thing, status, canary, status_details, queued_at, started_at, last_updated_at, version, "
    "execution_number, reason, attempt"
)
# A constant (no data is ever formatted into SQL; values are always bound parameters).
SELECT_EXEC = "SELECT " + EXEC_COLUMNS + " FROM executions "  # noqa: S608
INSERT_EXEC = "INSERT INTO executions (" + EXEC_COLUMNS + ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"  # noqa: S608


class JobStore:
    """Jobs and executions in one SQLite file (see the module docstring for why)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(executions)")}
            if "attempt" not in columns:  # a store written before retries existed
                self._db.execute("ALTER TABLE executions ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1")
        except (OSError, sqlite3.Error) as exc:
            raise JobStoreError(str(self.path), str(exc)) from exc
        self._depth = 0
        self.on_change: Callable[[list[tuple[str, bytes]]], None] | None = None
        self._dirty_jobs: set[str] = set()
        self._dirty_execs: set[tuple[str, str]] = set()

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together (nested use joins the outer transaction)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise JobStoreError(str(self.path), str(exc)) from exc
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._dirty_jobs.clear()
            self._dirty_execs.clear()
            raise
        else:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                self._dirty_jobs.clear()
                self._dirty_execs.clear()
                raise JobStoreError(str(self.path), str(exc)) from exc
        finally:
            self._depth = 0
        self._changed()

    # ---- replication (jobs/ha.py) ----------------------------------------------------------------------
    def _changed(self) -> None:
        """Hand the rows written since the last commit to :attr:`on_change` (after the commit only)."""
        if self._depth:
            return
        jobs, execs = sorted(self._dirty_jobs), sorted(self._dirty_execs)
        self._dirty_jobs.clear()
        self._dirty_execs.clear()
        if self.on_change is None or not (jobs or execs):
            return
        items = [
            (row_key(JOB, j), _row_bytes(self._db.execute("SELECT * FROM jobs WHERE job_id=?", (j,)))) for j in jobs
        ]
        items += [
            (row_key(EXEC, j, t), _row_bytes(self._db.execute(SELECT_EXEC + "WHERE job_id=? AND thing=?", (j, t))))
            for j, t in execs
        ]
        self.on_change(items)

    def all_rows(self) -> list[tuple[str, bytes]]:
        """Every row as ``(key, row)``, jobs first (to seed an empty replica)."""
        items = [(row_key(JOB, r[0]), _dump(r)) for r in self._db.execute("SELECT * FROM jobs")]
        items += [(row_key(EXEC, r[0], r[1]), _dump(r)) for r in self._db.execute(SELECT_EXEC)]
        return items

    def replace_all(self, items: list[tuple[str, bytes]]) -> None:
        """Make the store exactly ``items`` (rows from :meth:`all_rows` / :attr:`on_change`), atomically."""
        jobs = [json.loads(v) for k, v in items if k.startswith(JOB + ".")]
        execs = [json.loads(v) for k, v in items if k.startswith(EXEC + ".")]
        with self.transaction():
            self._db.execute("DELETE FROM executions")
            self._db.execute("DELETE FROM jobs")
            self._db.executemany("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", jobs)
            self._db.executemany(INSERT_EXEC, execs)
        self._dirty_jobs.clear()
        self._dirty_execs.clear()

    # ---- jobs -------------------------------------------------------------------------------------
    def insert_job(self, job: Job, executions: list[Execution]) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.spec.job_id,
                    json.dumps(_spec_dict(job.spec)),
                    job.status,
                    job.reason_code,
                    job.reason,
                    job.created_at,
                    job.updated_at,
                    job.completed_at,
                    job.rest_started_at,
                ),
            )
            self._dirty_jobs.add(job.spec.job_id)
            (number,) = self._db.execute("SELECT COALESCE(MAX(execution_number), 0) FROM executions").fetchone()
            for i, ex in enumerate(executions, start=1):
                ex.execution_number = number + i
                self.save_execution(ex, insert=True)

    def save_job(self, job: Job) -> None:
        self._dirty_jobs.add(job.spec.job_id)
        self._db.execute(
            "UPDATE jobs SET status=?, reason_code=?, reason=?, updated_at=?, completed_at=?, rest_started_at=? "
            "WHERE job_id=?",
            (
                job.status,
                job.reason_code,
                job.reason,
                job.updated_at,
                job.completed_at,
                job.rest_started_at,
                job.spec.job_id,
            ),
        )

    def job(self, job_id: str) -> Job | None:
        row = self._db.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return _job(row) if row else None

    def jobs(self, status: str = "", limit: int = 100) -> list[Job]:
        if status:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE status=? ORDER BY created_at DESC LIMIT ?", (status, limit)
            )
        else:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,))
        return [_job(row) for row in rows]

    # ---- executions --------------------------------------------------------------------------------
    def save_execution(self, ex: Execution, insert: bool = False) -> None:
        values = (
            ex.job_id,
            ex.thing,
            ex.status.value,
            int(ex.canary),
            json.dumps(ex.status_details),
            ex.queued_at,
            ex.started_at,
            ex.last_updated_at,
            ex.version,
            ex.execution_number,
            ex.reason,
            ex.attempt,
        )
        verb = "INSERT" if insert else "REPLACE"
        self._db.execute(f"{verb} INTO executions ({EXEC_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", values)
        self._dirty_execs.add((ex.job_id, ex.thing))
        self._changed()

    def next_execution_number(self) -> int:
        """Execution numbers are unique in the store (a retry gets a new one, as in IoT Jobs)."""
        (number,) = self._db.execute("SELECT COALESCE(MAX(execution_number), 0) FROM executions").fetchone()
        return int(number) + 1

    def execution(self, job_id: str, thing: str) -> Execution | None:
        row = self._db.execute(SELECT_EXEC + "WHERE job_id=? AND thing=?", (job_id, thing)).fetchone()
        return _execution(row) if row else None

    def executions(self, job_id: str) -> list[Execution]:
        rows = self._db.execute(SELECT_EXEC + "WHERE job_id=? ORDER BY execution_number", (job_id,))
        return [_execution(row) for row in rows]

    def pending(self, thing: str) -> list[Execution]:
        """The thing's IN_PROGRESS then QUEUED executions, each group oldest first (AWS order)."""
        rows = self._db.execute(
            SELECT_EXEC + "WHERE thing=? AND status IN ('IN_PROGRESS', 'QUEUED') "
            "ORDER BY status='QUEUED', queued_at, execution_number",
            (thing,),
        )
        return [_execution(row) for row in rows]

    def with_status(self, status: ExecStatus) -> list[Execution]:
        rows = self._db.execute(SELECT_EXEC + "WHERE status=?", (status.value,))
        return [_execution(row) for row in rows]


JOB, EXEC = "job", "exec"


def row_key(kind: str, *ids: str) -> str:
    """KV key of a row: ``job.<job_id>`` or ``exec.<job_id>.<thing>``, each id base64url (any text fits)."""
    return ".".join([kind, *(base64.urlsafe_b64encode(i.encode()).decode().rstrip("=") or "_" for i in ids)])


def _dump(row: tuple) -> bytes:
    return json.dumps(list(row)).encode()


def _row_bytes(cursor: sqlite3.Cursor) -> bytes:
    return _dump(cursor.fetchone())


def _spec_dict(spec: JobSpec) -> dict[str, object]:
    data = asdict(spec)
    data["targets"] = list(spec.targets)
    return data


def _job(row: tuple) -> Job:
    _job_id, spec_text, status, reason_code, reason, created, updated, completed, rest_started = row
    raw = json.loads(spec_text)
    spec = JobSpec(
        job_id=raw["job_id"],
        document=raw["document"],
        targets=tuple(raw["targets"]),
        rollout=RolloutConfig(**raw["rollout"]),
        timeout_s=raw["timeout_s"],
        description=raw.get("description", ""),
        retry=RetryConfig(**raw.get("retry", {})),  # jobs stored before retries existed have none
    )
    return Job(spec, status, reason_code, reason, created, updated, completed, rest_started)


def _execution(row: tuple) -> Execution:
    job_id, thing, status, canary, details, queued, started, updated, version, number, reason, attempt = row
    return Execution(
        job_id=job_id,
        thing=thing,
        status=ExecStatus(status),
        canary=bool(canary),
        status_details=json.loads(details),
        queued_at=queued,
        started_at=started,
        last_updated_at=updated,
        version=version,
        execution_number=number,
        reason=reason,
        attempt=attempt,
    )
