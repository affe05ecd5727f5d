"""The record of deployment jobs: which are in flight, how each ended (on disk), and every status change.

One place for what every job path shares (deployments, rollbacks, rejections, recovery), so a job's
status is announced, stored and answered for a repeated job id the same way whichever path ran it.

Threads: called from the engine's request threads and its worker threads; the in-flight table and the
generation counter are guarded by the book's own lock, which is never held while calling out.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from robot_platform.deploy.errors import CanceledError, StoreError
from robot_platform.deploy.jobs import Decision, DeployRequest, JobLog, State, Status, Step

log = logging.getLogger(__name__)

StatusCallback = Callable[[Status], None]


class JobBook:
    """Announces statuses through ``on_status``, keeps final ones in a :class:`JobLog`, tracks jobs in flight.

    ``generation`` is bumped whenever a job ends (active versions may have changed), so a poller knows
    when to re-read the function triggers.
    """

    def __init__(self, robot_id: str, directory: Path, on_status: StatusCallback, stopping: Callable[[], bool]) -> None:
        self.robot_id = robot_id
        self.on_status = on_status
        self.log = JobLog(directory)
        self.rejected_count = 0
        self.generation = 0
        self._stopping = stopping
        self._lock = threading.Lock()
        self._active: dict[str, tuple[DeployRequest, Status]] = {}

    # ---- in flight ----------------------------------------------------------------------------------
    def add(self, request: DeployRequest, status: Status) -> None:
        with self._lock:
            self._active[request.job_id] = (request, status)

    def status_of(self, job_id: str) -> Status:
        """The live status of a job in flight (KeyError when it is not)."""
        with self._lock:
            return self._active[job_id][1]

    def duplicate(self, request: DeployRequest) -> Decision | None:
        """Idempotency: the same job id answers with its current state (in flight or stored)."""
        with self._lock:
            known = self._active.get(request.job_id)
        if known is None:
            stored = self.log.load(request.job_id)
            known = (stored[0], stored[1]) if stored and stored[0] is not None else None
        if known is None:
            return None
        previous, status = known
        if previous.identity() != request.identity():
            return Decision(
                False,
                request.job_id,
                State.REJECTED,
                f"job id {request.job_id} was already used for a different request",
            )
        return self.answer(request.job_id, status)

    @staticmethod
    def answer(job_id: str, status: Status) -> Decision:
        """The answer to a repeated job id: that job's state (accepted unless it was rejected)."""
        message = f"duplicate job id; job is {status.state.name}" + (f": {status.reason}" if status.reason else "")
        return Decision(status.state != State.REJECTED, job_id, status.state, message)

    # ---- status changes -----------------------------------------------------------------------------
    def emit(self, status: Status) -> None:
        status.stamp = time.time()
        try:
            self.on_status(replace(status))
        except Exception:  # a broken sink must not stop a deployment half-way; logged with traceback
            log.exception("status callback failed")

    def progress(self, status: Status, step: str, progress: float | None = None) -> None:
        """A step starts (or advances); raises :class:`CanceledError` on shutdown, except for a rollback."""
        if self._stopping() and step != Step.ROLLBACK:
            raise CanceledError()
        status.state = State.IN_PROGRESS
        status.step = step
        status.progress = Step.PROGRESS[step] if progress is None else progress
        self.emit(status)

    def finish(self, request: DeployRequest, status: Status, state: State, reason: str = "") -> None:
        """A job ended: store its final status, take it off the in-flight table, announce it."""
        status.state = state
        status.step = ""
        status.reason = reason
        status.progress = 1.0
        with contextlib.suppress(OSError):
            self.log.save(request, status)
        with self._lock:
            self._active.pop(request.job_id, None)
            self.generation += 1
        if state != State.SUCCEEDED:
            log.warning(
                "deployment %s of %s %s: %s %s",
                request.job_id,
                request.package_name,
                request.version,
                state.name,
                reason,
            )
        self.emit(status)

    def reject(self, request: DeployRequest, reason: str, store: bool = True) -> Decision:
        """Refused before any change: counted, stored under its job id (if it has one), announced."""
        self.rejected_count += 1
        job_id = request.job_id or uuid.uuid4().hex
        log.warning("deployment %s of %s %s rejected: %s", job_id, request.package_name, request.version, reason)
        status = Status(
            self.robot_id, job_id, request.package_name, request.version, "", State.REJECTED, "", 0.0, reason
        )
        if store and request.job_id:
            with contextlib.suppress(OSError, StoreError):
                self.log.save(request if request.job_id == job_id else None, status)
        self.emit(status)
        return Decision(False, job_id, State.REJECTED, reason)
