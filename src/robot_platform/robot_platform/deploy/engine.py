"""The deployment job engine: accept or reject at once, then work asynchronously, roll back on failure.

Lifecycle: ``__init__`` holds config and collaborators; :meth:`DeployEngine.start` recovers the store
(crash journal) and restarts the active apps; :meth:`submit` / :meth:`rollback` / :meth:`invoke` serve
requests from any thread; :meth:`shutdown` cancels queued work, stops apps and joins workers.

Parts: lanes.py (one lane per package: a worker thread running that package's deployments one after
another from a bounded queue, overflow rejected and counted, and a lock held while anything changes
the package; different packages deploy in parallel), deployment.py (the steps of one deployment),
rollback.py (the rollback service and rollback jobs, through the same lanes), job_book.py (statuses
announced and stored, jobs in flight, idempotent job ids), activation.py (version switches and health
checks). This class admits requests and owns the parts' lifecycle.

Status: ``on_status`` is called (from worker threads) for every state and step change; it must not
block for long (the node publishes to ROS and queues for NATS).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from robot_platform.deploy.activation import Activator
from robot_platform.deploy.app_logs import LineSink, ReaderConfig
from robot_platform.deploy.apps import AppSupervisor
from robot_platform.deploy.code_runner import InvocationResult, invoke_function
from robot_platform.deploy.deployment import DeploymentRunner, Fetcher
from robot_platform.deploy.errors import DeployError, RequestError, SignatureError, StoreError
from robot_platform.deploy.job_book import JobBook, StatusCallback
from robot_platform.deploy.jobs import (
    Decision,
    DeployRequest,
    RollbackRequest,
    State,
    Status,
    validate_request,
)
from robot_platform.deploy.lanes import PackageLanes
from robot_platform.deploy.manifest import KIND_APP, KIND_FUNCTION, Trigger, load_manifest
from robot_platform.deploy.package import TrustStore
from robot_platform.deploy.rollback import SERVICE_LANE_WAIT_S, RollbackResult, Rollbacks
from robot_platform.deploy.safe_extract import ExtractLimits
from robot_platform.deploy.store import PackageStore

log = logging.getLogger(__name__)

INVOCATIONS_KEPT = 20
RESTART_LANE_WAIT_S = 0.1  # an app restart answers "busy" rather than wait for a deployment
SHUTDOWN_JOIN_S = 30.0


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
class PackageInfo:
    name: str
    kind: str
    active_version: str
    versions: tuple[str, ...]
    activated_at: float
    running: bool


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
        self.apps = supervisor or AppSupervisor()
        cache = store.root / ".cache"
        cache.mkdir(exist_ok=True)
        self.invocations: dict[str, collections.deque[InvocationResult]] = {}
        self._lock = threading.Lock()  # serializes admission (duplicate check, queue bound, enqueue)
        self._stopping = threading.Event()
        self.book = JobBook(config.robot_id, store.root / ".jobs", on_status, self._stopping.is_set)
        # Output lines of apps and function invocations become log records through log_sink (non-blocking).
        self.log_sink = log_sink
        self.log_config = log_config
        self.activator = Activator(store, self.apps, self.book.progress, self._stopping.is_set, log_sink, log_config)
        self.deployments = DeploymentRunner(
            config, store, fetcher, trust, self.activator, self.book, cache, self._stopping.is_set
        )
        self.lanes = PackageLanes(self.deployments.run, self._stopping.is_set)
        self.rollbacks = Rollbacks(config.robot_id, store, self.activator, self.lanes, self.book, self._stopping.is_set)

    @property
    def generation(self) -> int:
        """Bumped whenever a job or rollback ends: active versions may have changed."""
        return self.book.generation

    @property
    def rejected_count(self) -> int:
        return self.book.rejected_count

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
            prior = self.book.log.load(rec.job_id)
            self.book.log.save(prior[0] if prior else None, status)
            self.book.emit(status)
            reports.append(status)
        self.activator.restore_all()
        return reports

    def shutdown(self) -> None:
        """Cancel queued jobs, let running ones roll back, stop every app."""
        self._stopping.set()
        with self._lock:
            dropped = [(request, self.book.status_of(request.job_id)) for request in self.lanes.clear()]
        for request, status in dropped:
            self.book.finish(request, status, State.CANCELED, "canceled: deploy_service is shutting down")
        self.lanes.join(SHUTDOWN_JOIN_S)
        self.rollbacks.join(SHUTDOWN_JOIN_S)
        self.apps.shutdown()

    # ---- requests -----------------------------------------------------------------------------------
    def submit(self, raw: DeployRequest) -> Decision:
        """Accept (QUEUED or IN_PROGRESS) or reject at once; never blocks on I/O beyond a small read."""
        try:
            request = validate_request(raw, self.config.default_bucket)
        except (RequestError, SignatureError) as exc:
            return self.book.reject(raw, exc.reason)
        with self._lock:
            duplicate = self.book.duplicate(request)
            if duplicate is not None:
                return duplicate
            if self._stopping.is_set():
                return self.book.reject(request, "deploy_service is shutting down", store=False)
        try:
            self.trust.verify_digest(request.sha256, request.signature)
        except SignatureError as exc:
            return self.book.reject(request, exc.reason)
        with self._lock:
            duplicate = self.book.duplicate(request)
            if duplicate is not None:
                return duplicate
            queued = self.lanes.queued(request.package_name)
            if queued >= self.config.max_queued_per_package:
                return self.book.reject(
                    request,
                    f"{queued} deployments of {request.package_name} already queued; retry later",
                    store=False,
                )
            status = Status(
                self.config.robot_id,
                request.job_id,
                request.package_name,
                request.version,
                self.store.active_version(request.package_name),
                State.QUEUED,
            )
            self.book.add(request, status)
            busy = self.lanes.enqueue(request)
        self.book.emit(status)
        message = "queued behind another deployment of this package" if busy else "accepted"
        return Decision(True, request.job_id, State.QUEUED, message)

    def rollback(
        self, package: str, to_version: str = "", job_id: str = "", lane_wait_s: float = SERVICE_LANE_WAIT_S
    ) -> RollbackResult:
        """The ``rollback`` service: see :meth:`Rollbacks.rollback`."""
        return self.rollbacks.rollback(package, to_version, job_id, lane_wait_s)

    def submit_rollback(self, raw: RollbackRequest) -> Decision:
        """A rollback job (IoT job ``operation: rollback``): see :meth:`Rollbacks.submit`."""
        return self.rollbacks.submit(raw)

    # ---- apps and functions -------------------------------------------------------------------------
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
        lane = self.lanes.lane(package)
        if not lane.lock.acquire(timeout=RESTART_LANE_WAIT_S):
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
