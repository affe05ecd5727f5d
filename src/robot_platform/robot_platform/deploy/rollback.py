"""Rollbacks: switch a package back to an installed version and check its health.

Two entries, one path: the ``rollback`` service calls :meth:`Rollbacks.rollback` and waits (it gives
up at once if a deployment holds the package's lane); a rollback job (IoT job ``operation: rollback``)
is accepted or rejected by :meth:`Rollbacks.submit` and runs the same method on a thread of its own,
waiting longer for the lane. Nothing is downloaded: the target version is already installed.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from robot_platform.deploy.activation import Activator
from robot_platform.deploy.errors import DeployError, RequestError, StoreError
from robot_platform.deploy.job_book import JobBook
from robot_platform.deploy.jobs import (
    Decision,
    DeployRequest,
    RollbackRequest,
    State,
    Status,
    validate_rollback,
)
from robot_platform.deploy.lanes import PackageLanes
from robot_platform.deploy.manifest import load_manifest
from robot_platform.deploy.store import PackageStore

log = logging.getLogger(__name__)

SERVICE_LANE_WAIT_S = 0.1  # the rollback service answers "busy" rather than wait for a deployment
ROLLBACK_JOB_LANE_WAIT_S = 120.0  # a rollback job waits this long for a deployment of its package to end


@dataclass(frozen=True)
class RollbackResult:
    success: bool
    active_version: str
    message: str
    refused: bool = False  # nothing was changed (and no status emitted): unknown version, busy, nothing to go to


class Rollbacks:
    """Runs rollbacks (service and jobs) under the package's lane; see the module docstring."""

    def __init__(
        self,
        robot_id: str,
        store: PackageStore,
        activator: Activator,
        lanes: PackageLanes,
        book: JobBook,
        stopping: Callable[[], bool],
    ) -> None:
        self.robot_id = robot_id
        self.store = store
        self.activator = activator
        self.lanes = lanes
        self.book = book
        self._stopping = stopping
        self._lock = threading.Lock()
        self._jobs: dict[str, threading.Thread] = {}  # rollback jobs running, by job id

    def target(self, package: str, to_version: str) -> tuple[str, str, str]:
        """``(current, target, problem)``: where a rollback would go, or why it cannot (nothing changed)."""
        try:
            current = self.store.active_version(package)
            if not current and not self.store.installed_versions(package):
                return "", "", f"{package} is not installed on this robot"
            target = to_version or self.store.previous_version(package)
            if not target:
                return current, "", f"{package} has no earlier version to roll back to"
            if self.store.install_record(package, target) is None:
                return current, target, f"{package} {target} is not installed"
        except StoreError as exc:
            return "", "", exc.reason
        return current, target, ""

    def rollback(
        self, package: str, to_version: str = "", job_id: str = "", lane_wait_s: float = SERVICE_LANE_WAIT_S
    ) -> RollbackResult:
        """Switch ``package`` to ``to_version`` (default: the previous active one) and check its health.

        A rollback that cannot start (unknown package or version, nothing to roll back to, package busy
        for longer than ``lane_wait_s``) returns ``refused=True`` and emits no status.
        """
        job_id = job_id or uuid.uuid4().hex
        current, target, problem = self.target(package, to_version)
        if problem:
            return RollbackResult(False, current, problem, refused=True)
        lane = self.lanes.lane(package)
        if not self.lanes.acquire(lane, lane_wait_s):
            return RollbackResult(False, current, f"a deployment of {package} is in progress; retry later", True)
        try:
            current, target, problem = self.target(package, to_version)  # may have changed meanwhile
            if problem:
                return RollbackResult(False, current, problem, refused=True)
            status = Status(self.robot_id, job_id, package, target, current, State.IN_PROGRESS)
            request = DeployRequest(job_id, package, target, "", "", "", "")
            if target == current:
                self.book.finish(request, status, State.SUCCEEDED, "")
                return RollbackResult(True, current, f"{package} {target} is already active")
            journal = self.store.begin(job_id, package, target)
            version_dir = self.store.version_dir(package, target)
            try:
                self.activator.activate_and_check(journal, status, version_dir, load_manifest(version_dir))
                self.store.commit(journal)
            except DeployError as exc:
                self.activator.roll_back(journal, status, True)
                active = self.store.active_version(package)
                self.book.finish(
                    request, status, State.FAILED, f"rollback to {target} failed: {exc.reason}; on {active}"
                )
                return RollbackResult(False, active, f"rollback to {target} failed ({exc.reason}); on {active}")
            self.book.finish(request, status, State.SUCCEEDED)
            return RollbackResult(True, target, f"{package} rolled back from {current} to {target}")
        except StoreError as exc:  # begin(): an unfinished transaction of this package
            return RollbackResult(False, current, exc.reason, refused=True)
        finally:
            lane.lock.release()

    def submit(self, raw: RollbackRequest) -> Decision:
        """A rollback job: accept or reject at once, run it in the background.

        Same path as the ``rollback`` service (:meth:`rollback`), with the job id on every status
        (IN_PROGRESS steps, then SUCCEEDED or FAILED). Refused before any change -> REJECTED with the
        reason (unknown package or version, nothing to roll back to). A repeated job id answers with that
        job's state instead of rolling back twice (a job picked up again after a restart or a lost update).
        """
        try:
            request = validate_rollback(raw)
        except RequestError as exc:
            return self.book.reject(raw.as_record(), exc.reason, store=False)
        record = request.as_record()
        with self._lock:
            if request.job_id in self._jobs:
                return Decision(True, request.job_id, State.IN_PROGRESS, "duplicate job id; rollback in progress")
            stored = self.book.log.load(request.job_id)
            if stored is not None:
                previous, status = stored
                if previous is None or previous.package_name != request.package_name or previous.sha256:
                    return Decision(
                        False,
                        request.job_id,
                        State.REJECTED,
                        f"job id {request.job_id} was already used for a different request",
                    )
                return self.book.answer(request.job_id, status)
            if self._stopping():
                return self.book.reject(record, "deploy_service is shutting down", store=False)
        _current, _target, problem = self.target(request.package_name, request.to_version)
        if problem:
            return self.book.reject(record, problem)
        worker = threading.Thread(
            target=self._run_job, args=(request,), name=f"rollback-{request.package_name}", daemon=True
        )
        with self._lock:
            self._jobs[request.job_id] = worker
        worker.start()
        return Decision(True, request.job_id, State.IN_PROGRESS, "accepted")

    def join(self, timeout_s: float) -> None:
        """Wait for the rollback jobs running (shutdown); each within ``timeout_s``."""
        with self._lock:
            workers = list(self._jobs.values())
        for worker in workers:
            worker.join(timeout=timeout_s)

    def _run_job(self, request: RollbackRequest) -> None:
        try:
            result = self.rollback(
                request.package_name, request.to_version, request.job_id, lane_wait_s=ROLLBACK_JOB_LANE_WAIT_S
            )
            if result.refused:
                self.book.reject(request.as_record(), result.message)
        finally:
            with self._lock:
                self._jobs.pop(request.job_id, None)
