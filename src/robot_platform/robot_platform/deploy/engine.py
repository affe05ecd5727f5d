"""The deployment job engine: accept or reject at once, then work asynchronously, roll back on failure.

Lifecycle: ``__init__`` holds config and collaborators; :meth:`DeployEngine.start` recovers the store
(crash journal) and restarts the active apps; :meth:`submit` / :meth:`rollback` / :meth:`invoke` serve
requests from any thread; :meth:`shutdown` cancels queued work, stops apps and joins workers.

Concurrency: one *lane* per package, a worker thread that runs that package's jobs one after another
(bounded queue, overflow rejected and counted); different packages deploy in parallel. A lane's lock
is held while a job or a rollback changes that package, so nothing else touches it meanwhile.

Status: ``on_status`` is called (from worker threads) for every state and step change; it must not
block for long (the node publishes to ROS and queues for NATS).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from robot_platform.deploy.activation import Activator
from robot_platform.deploy.app_logs import LineSink, ReaderConfig
from robot_platform.deploy.apps import AppSupervisor
from robot_platform.deploy.errors import (
    DeployError,
    IntegrityError,
    LimitExceededError,
    ManifestError,
    RequestError,
    SignatureError,
    StepTimeoutError,
    StoreError,
    UnsafeArchiveError,
)
from robot_platform.deploy.jobs import (
    Decision,
    DeployRequest,
    JobLog,
    RollbackRequest,
    State,
    Status,
    Step,
    validate_request,
    validate_rollback,
)
from robot_platform.deploy.manifest import KIND_APP, KIND_FUNCTION, Trigger, load_manifest
from robot_platform.deploy.package import TrustStore, verify_archive
from robot_platform.deploy.runner import InvocationResult, invoke_function, run_step
from robot_platform.deploy.safe_extract import ExtractLimits, safe_extract
from robot_platform.deploy.store import Journal, PackageStore

log = logging.getLogger(__name__)

StatusCallback = Callable[[Status], None]
# Errors that mean "refused before any change": reported as REJECTED rather than FAILED.
REJECTING_ERRORS = (IntegrityError, SignatureError, UnsafeArchiveError, LimitExceededError, ManifestError, RequestError)
INVOCATIONS_KEPT = 20
LANE_POLL_S = 0.5
ROLLBACK_JOB_LANE_WAIT_S = 120.0  # a rollback job waits this long for a deployment of its package to end


class Fetcher(Protocol):
    def download(
        self,
        uri: str,
        dest: Path,
        max_bytes: int,
        progress: Callable[[int, int], None] | None = ...,
        cancelled: Callable[[], bool] = ...,
    ) -> int: ...


@dataclass(frozen=True)
class EngineConfig:
    """Engine settings (node parameters)."""

    robot_id: str
    default_bucket: str = ""
    max_archive_bytes: int = 256 * 1024 * 1024
    extract_limits: ExtractLimits = field(default_factory=ExtractLimits)
    max_queued_per_package: int = 4
    install_step_timeout_s: float = 300.0
    keep_archives: bool = False


@dataclass(frozen=True)
class RollbackResult:
    success: bool
    active_version: str
    message: str
    refused: bool = False  # nothing was changed (and no status emitted): unknown version, busy, nothing to go to


@dataclass(frozen=True)
class PackageInfo:
    name: str
    kind: str
    active_version: str
    versions: tuple[str, ...]
    activated_at: float
    running: bool


class _Canceled(DeployError):
    def __init__(self) -> None:
        super().__init__("canceled: deploy_service is shutting down")


@dataclass
class _Lane:
    """Serializes the work on one package."""

    queue: collections.deque[DeployRequest] = field(default_factory=collections.deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    worker: threading.Thread | None = None


class DeployEngine:
    """Deploys, rolls back, lists and invokes packages. See the module docstring for the lifecycle."""

    def __init__(
        self,
        config: EngineConfig,
        store: PackageStore,
        fetcher: Fetcher,
        trust: TrustStore,
        on_status: StatusCallback,
        supervisor: AppSupervisor | None = None,
        log_sink: LineSink | None = None,
        log_config: ReaderConfig | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.fetcher = fetcher
        self.trust = trust
        self.on_status = on_status
        self.apps = supervisor or AppSupervisor()
        self.jobs = JobLog(store.root / ".jobs")
        self.cache = store.root / ".cache"
        self.cache.mkdir(exist_ok=True)
        self.rejected_count = 0
        self.invocations: dict[str, collections.deque[InvocationResult]] = {}
        self._lock = threading.Lock()
        self._lanes: dict[str, _Lane] = {}
        self._active: dict[str, tuple[DeployRequest, Status]] = {}
        self._rollbacks: dict[str, threading.Thread] = {}  # rollback jobs running, by job id
        self._stopping = threading.Event()
        # Output lines of apps and function invocations become log records through log_sink (non-blocking).
        self.log_sink = log_sink
        self.log_config = log_config
        self.activator = Activator(store, self.apps, self._progress, self._stopping.is_set, log_sink, log_config)
        self.generation = 0  # bumped whenever a job or rollback ends: active versions may have changed

    # ---- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> list[Status]:
        """Recover from a crash, then start every active app. Returns the statuses of recovered jobs."""
        reports = []
        self.activator.stop_strays()  # before recovery deletes the directories they run in
        for rec in self.store.recover():
            reason = (
                f"interrupted at {rec.phase} by a restart; {rec.package} is on "
                f"{rec.active_version or 'no version'} again"
            )
            status = Status(
                self.config.robot_id,
                rec.job_id,
                rec.package,
                rec.version,
                rec.previous_version,
                State.FAILED,
                "",
                1.0,
                reason,
            )
            prior = self.jobs.load(rec.job_id)
            self.jobs.save(prior[0] if prior else None, status)
            self._emit(status)
            reports.append(status)
        self.activator.restore_all()
        return reports

    def shutdown(self) -> None:
        """Cancel queued jobs, let running ones roll back, stop every app."""
        self._stopping.set()
        with self._lock:
            lanes = list(self._lanes.values())
            dropped = [(r, self._active[r.job_id][1]) for lane in lanes for r in lane.queue]
            for lane in lanes:
                lane.queue.clear()
        for request, status in dropped:
            self._finish(request, status, State.CANCELED, "canceled: deploy_service is shutting down")
        for lane in lanes:
            if lane.worker is not None:
                lane.worker.join(timeout=30.0)
        with self._lock:
            rollbacks = list(self._rollbacks.values())
        for worker in rollbacks:
            worker.join(timeout=30.0)
        self.apps.shutdown()

    # ---- requests -----------------------------------------------------------------------------------
    def submit(self, raw: DeployRequest) -> Decision:
        """Accept (QUEUED or IN_PROGRESS) or reject at once; never blocks on I/O beyond a small read."""
        try:
            request = validate_request(raw, self.config.default_bucket)
        except (RequestError, SignatureError) as exc:
            return self._reject_now(raw, exc.reason)
        with self._lock:
            duplicate = self._duplicate(request)
            if duplicate is not None:
                return duplicate
            if self._stopping.is_set():
                return self._reject_now(request, "deploy_service is shutting down", store=False)
        try:
            self.trust.verify_digest(request.sha256, request.signature)
        except SignatureError as exc:
            return self._reject_now(request, exc.reason)
        with self._lock:
            duplicate = self._duplicate(request)
            if duplicate is not None:
                return duplicate
            lane = self._lanes.setdefault(request.package_name, _Lane())
            if len(lane.queue) >= self.config.max_queued_per_package:
                return self._reject_now(
                    request,
                    f"{len(lane.queue)} deployments of {request.package_name} already queued; retry later",
                    store=False,
                )
            busy = lane.worker is not None and lane.worker.is_alive()
            status = Status(
                self.config.robot_id,
                request.job_id,
                request.package_name,
                request.version,
                self.store.active_version(request.package_name),
                State.QUEUED,
            )
            self._active[request.job_id] = (request, status)
            lane.queue.append(request)
            if not busy:
                lane.worker = threading.Thread(
                    target=self._drain,
                    args=(request.package_name, lane),
                    name=f"deploy-{request.package_name}",
                    daemon=True,
                )
                lane.worker.start()
        self._emit(status)
        message = "queued behind another deployment of this package" if busy else "accepted"
        return Decision(True, request.job_id, State.QUEUED, message)

    def _duplicate(self, request: DeployRequest) -> Decision | None:
        """Idempotency: the same job id answers with its current state. Caller holds ``_lock``."""
        known = self._active.get(request.job_id)
        if known is None:
            stored = self.jobs.load(request.job_id)
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
        message = f"duplicate job id; job is {status.state.name}" + (f": {status.reason}" if status.reason else "")
        return Decision(status.state != State.REJECTED, request.job_id, status.state, message)

    def _reject_now(self, request: DeployRequest, reason: str, store: bool = True) -> Decision:
        self.rejected_count += 1
        job_id = request.job_id or uuid.uuid4().hex
        log.warning("deployment %s of %s %s rejected: %s", job_id, request.package_name, request.version, reason)
        status = Status(
            self.config.robot_id, job_id, request.package_name, request.version, "", State.REJECTED, "", 0.0, reason
        )
        if store and request.job_id:
            with contextlib.suppress(OSError, StoreError):
                self.jobs.save(request if request.job_id == job_id else None, status)
        self._emit(status)
        return Decision(False, job_id, State.REJECTED, reason)

    # ---- workers ------------------------------------------------------------------------------------
    def _drain(self, package: str, lane: _Lane) -> None:
        while True:
            with self._lock:
                if not lane.queue:
                    lane.worker = None
                    return
                request = lane.queue.popleft()
            with lane.lock:
                self._run_job(request)

    def _emit(self, status: Status) -> None:
        status.stamp = time.time()
        try:
            self.on_status(replace(status))
        except Exception:  # a broken sink must not stop a deployment half-way; logged with traceback
            log.exception("status callback failed")

    def _progress(self, status: Status, step: str, progress: float | None = None) -> None:
        if self._stopping.is_set() and step != Step.ROLLBACK:
            raise _Canceled()
        status.state = State.IN_PROGRESS
        status.step = step
        status.progress = Step.PROGRESS[step] if progress is None else progress
        self._emit(status)

    def _finish(self, request: DeployRequest, status: Status, state: State, reason: str = "") -> None:
        status.state = state
        status.step = ""
        status.reason = reason
        status.progress = 1.0
        with contextlib.suppress(OSError):
            self.jobs.save(request, status)
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
        self._emit(status)

    def _run_job(self, request: DeployRequest) -> None:
        status = self._active[request.job_id][1]
        package = request.package_name
        status.previous_version = self.store.active_version(package)
        journal: Journal | None = None
        activated = False
        try:
            record = self.store.install_record(package, request.version)
            if record is not None and record.get("sha256") != request.sha256:
                raise RequestError(
                    "version",
                    f"{package} {request.version} is installed with another sha256; "
                    "versions are immutable, publish a new version",
                )
            journal = self.store.begin(request.job_id, package, request.version)
            if record is None:
                version_dir = self._download_and_install(request, status, journal)
            else:
                version_dir = self.store.version_dir(package, request.version)
            manifest = load_manifest(version_dir)
            activated = True
            self.activator.activate_and_check(journal, status, version_dir, manifest)
            self.store.commit(journal)
            journal = None
            with contextlib.suppress(OSError, StoreError):
                self.store.prune(package)
            self._finish(request, status, State.SUCCEEDED)
        except DeployError as exc:
            if journal is not None:
                self.activator.roll_back(journal, status, activated)
            if isinstance(exc, _Canceled) or self._stopping.is_set():
                state = State.CANCELED
            elif isinstance(exc, StepTimeoutError):
                state = State.TIMED_OUT
            elif isinstance(exc, REJECTING_ERRORS) and not activated:
                state = State.REJECTED
            else:
                state = State.FAILED
            active = self.store.active_version(package)
            suffix = f"; {package} is on {active}" if active else f"; {package} has no active version"
            self._finish(request, status, state, exc.reason + suffix)
        except OSError as exc:
            if journal is not None:
                self.activator.roll_back(journal, status, activated)
            self._finish(request, status, State.FAILED, f"{status.step} failed: {exc.strerror or exc}")

    def _download_and_install(self, request: DeployRequest, status: Status, journal: Journal) -> Path:
        package = request.package_name
        archive = self.cache / f"{package}-{request.version}-{request.sha256[:16]}.tar.gz"
        self._progress(status, Step.DOWNLOAD)
        last = [0.0]

        def progress(have: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.5 or have == total:
                last[0] = now
                self._progress(status, Step.DOWNLOAD, Step.PROGRESS[Step.VERIFY] * have / max(total, 1))

        if not archive.exists():
            self.fetcher.download(
                request.artifact_uri, archive, self.config.max_archive_bytes, progress, self._stopping.is_set
            )
        try:
            self._progress(status, Step.VERIFY)
            signer = verify_archive(archive, request.sha256, request.signature, self.trust)
            self._progress(status, Step.EXTRACT)
            staging = self.store.staging_dir(package, request.job_id)
            shutil.rmtree(staging, ignore_errors=True)
            safe_extract(archive, staging, self.config.extract_limits)
            manifest = load_manifest(staging)
            for key, want in (("name", package), ("version", request.version), ("kind", request.kind)):
                if getattr(manifest, key) != want:
                    raise ManifestError(key, f"is {getattr(manifest, key)!r} but the request says {want!r}")
            self._progress(status, Step.INSTALL)
            record = {"sha256": request.sha256, "kind": manifest.kind, "signer": signer, "job_id": request.job_id}
            version_dir = self.store.install(journal, staging, record)
            log_path = self.store.package_dir(package) / "logs" / f"{request.version}.log"
            log_path.parent.mkdir(exist_ok=True)
            for step_argv in manifest.install:
                if self._stopping.is_set():
                    raise _Canceled()
                run_step(
                    "install",
                    manifest,
                    step_argv,
                    version_dir,
                    self.config.install_step_timeout_s,
                    log_path,
                    self._stopping.is_set,
                )
            return version_dir
        finally:
            if not self.config.keep_archives:
                archive.unlink(missing_ok=True)

    # ---- rollback, list, invoke ---------------------------------------------------------------------
    def _rollback_target(self, package: str, to_version: str) -> tuple[str, str, str]:
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

    def _acquire_lane(self, lane: _Lane, wait_s: float) -> bool:
        """Take the package's lane within ``wait_s`` (in short steps, so a shutdown ends the wait)."""
        deadline = time.monotonic() + wait_s
        while True:
            left = deadline - time.monotonic()
            if lane.lock.acquire(timeout=max(0.0, min(LANE_POLL_S, left))):
                return True
            if left <= 0 or self._stopping.is_set():
                return False

    def rollback(
        self, package: str, to_version: str = "", job_id: str = "", lane_wait_s: float = 0.1
    ) -> RollbackResult:
        """Switch ``package`` to ``to_version`` (default: the previous active one) and check its health.

        The path of the ``rollback`` service and of rollback jobs (:meth:`submit_rollback`). A rollback
        that cannot start (unknown package or version, nothing to roll back to, package busy for longer
        than ``lane_wait_s``) returns ``refused=True`` and emits no status.
        """
        job_id = job_id or uuid.uuid4().hex
        current, target, problem = self._rollback_target(package, to_version)
        if problem:
            return RollbackResult(False, current, problem, refused=True)
        with self._lock:
            lane = self._lanes.setdefault(package, _Lane())
        if not self._acquire_lane(lane, lane_wait_s):
            return RollbackResult(False, current, f"a deployment of {package} is in progress; retry later", True)
        try:
            current, target, problem = self._rollback_target(package, to_version)  # may have changed meanwhile
            if problem:
                return RollbackResult(False, current, problem, refused=True)
            status = Status(self.config.robot_id, job_id, package, target, current, State.IN_PROGRESS)
            request = DeployRequest(job_id, package, target, "", "", "", "")
            if target == current:
                self._finish(request, status, State.SUCCEEDED, "")
                return RollbackResult(True, current, f"{package} {target} is already active")
            journal = self.store.begin(job_id, package, target)
            version_dir = self.store.version_dir(package, target)
            try:
                self.activator.activate_and_check(journal, status, version_dir, load_manifest(version_dir))
                self.store.commit(journal)
            except DeployError as exc:
                self.activator.roll_back(journal, status, True)
                active = self.store.active_version(package)
                self._finish(request, status, State.FAILED, f"rollback to {target} failed: {exc.reason}; on {active}")
                return RollbackResult(False, active, f"rollback to {target} failed ({exc.reason}); on {active}")
            self._finish(request, status, State.SUCCEEDED)
            return RollbackResult(True, target, f"{package} rolled back from {current} to {target}")
        except StoreError as exc:  # begin(): an unfinished transaction of this package
            return RollbackResult(False, current, exc.reason, refused=True)
        finally:
            lane.lock.release()

    def submit_rollback(self, raw: RollbackRequest) -> Decision:
        """A rollback job (IoT job ``operation: rollback``): accept or reject at once, run it in the background.

        Same path as the ``rollback`` service (:meth:`rollback`), with the job id on every status
        (IN_PROGRESS steps, then SUCCEEDED or FAILED). Refused before any change -> REJECTED with the
        reason (unknown package or version, nothing to roll back to). A repeated job id answers with that
        job's state instead of rolling back twice (a job picked up again after a restart or a lost update).
        """
        try:
            request = validate_rollback(raw)
        except RequestError as exc:
            return self._reject_now(raw.as_record(), exc.reason, store=False)
        record = request.as_record()
        with self._lock:
            if request.job_id in self._rollbacks:
                return Decision(True, request.job_id, State.IN_PROGRESS, "duplicate job id; rollback in progress")
            stored = self.jobs.load(request.job_id)
            if stored is not None:
                previous, status = stored
                if previous is None or previous.package_name != request.package_name or previous.sha256:
                    return Decision(
                        False,
                        request.job_id,
                        State.REJECTED,
                        f"job id {request.job_id} was already used for a different request",
                    )
                message = f"duplicate job id; job is {status.state.name}" + (
                    f": {status.reason}" if status.reason else ""
                )
                return Decision(status.state != State.REJECTED, request.job_id, status.state, message)
            if self._stopping.is_set():
                return self._reject_now(record, "deploy_service is shutting down", store=False)
        _current, _target, problem = self._rollback_target(request.package_name, request.to_version)
        if problem:
            return self._reject_now(record, problem)
        worker = threading.Thread(
            target=self._run_rollback_job, args=(request,), name=f"rollback-{request.package_name}", daemon=True
        )
        with self._lock:
            self._rollbacks[request.job_id] = worker
        worker.start()
        return Decision(True, request.job_id, State.IN_PROGRESS, "accepted")

    def _run_rollback_job(self, request: RollbackRequest) -> None:
        try:
            result = self.rollback(
                request.package_name, request.to_version, request.job_id, lane_wait_s=ROLLBACK_JOB_LANE_WAIT_S
            )
            if result.refused:
                self._reject_now(request.as_record(), result.message)
        finally:
            with self._lock:
                self._rollbacks.pop(request.job_id, None)

    def restart_app(self, package: str) -> dict[str, Any]:
        """Restart the active version of app ``package`` and wait for its health check.

        For operators (robot_agent's ``restart_app`` remote action): no version changes, so no journal;
        refused while a deployment of the package is in flight (it holds the package's lane).
        """
        try:
            version_dir = self.store.active_dir(package)
            if version_dir is None:
                return {"ok": False, "error": f"{package} has no active version"}
            manifest = load_manifest(version_dir)
        except DeployError as exc:
            return {"ok": False, "error": exc.reason}
        if manifest.kind != KIND_APP:
            return {"ok": False, "error": f"{package} is a {manifest.kind}, not an app"}
        with self._lock:
            lane = self._lanes.setdefault(package, _Lane())
        if not lane.lock.acquire(timeout=0.1):
            return {"ok": False, "error": f"a deployment of {package} is in progress; retry later"}
        try:
            self.activator.stop_app(package)
            app = self.activator.start_app(package, version_dir, manifest)
            app.wait_healthy(manifest.timeout_s, self._stopping.is_set)
            log.info("%s %s restarted (pid %s)", package, manifest.version, app.pid)
            return {"ok": True, "package": package, "version": manifest.version, "pid": app.pid}
        except DeployError as exc:
            return {"ok": False, "package": package, "version": manifest.version, "error": exc.reason}
        finally:
            lane.lock.release()

    def list_packages(self, name: str = "") -> list[PackageInfo]:
        names = [name] if name else self.store.packages()
        out = []
        for package in names:
            try:
                info = self.store.info(package)
            except StoreError:
                continue
            if not info.versions and not info.active_version:
                continue
            running = self.apps.running(package) if info.kind == KIND_APP else bool(info.active_version)
            out.append(
                PackageInfo(info.name, info.kind, info.active_version, info.versions, info.activated_at, running)
            )
        return out

    def function_triggers(self) -> dict[str, tuple[Trigger, ...]]:
        """The triggers of every active function package (read from their manifests)."""
        out = {}
        for package in self.store.packages():
            active = self.store.active_dir(package)
            if active is None:
                continue
            with contextlib.suppress(DeployError):
                manifest = load_manifest(active)
                if manifest.kind == KIND_FUNCTION and manifest.triggers:
                    out[package] = manifest.triggers
        return out

    def invoke(self, package: str, event: Any, invocation_id: str = "") -> InvocationResult:
        """Invoke the active version of a function package; the result is also kept (last 20)."""
        version_dir = self.store.active_dir(package)
        if version_dir is None:
            raise StoreError(f"{package} has no active version")
        manifest = load_manifest(version_dir)
        if manifest.kind != KIND_FUNCTION:
            raise StoreError(f"{package} is an app, not a function")
        result = invoke_function(
            version_dir, manifest, event, invocation_id, log_sink=self.log_sink, log_config=self.log_config
        )
        with self._lock:
            self.invocations.setdefault(package, collections.deque(maxlen=INVOCATIONS_KEPT)).append(result)
        return result
