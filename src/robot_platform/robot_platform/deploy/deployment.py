"""The steps of one deployment: download, verify, extract, install, activate, health check; roll back on failure.

Runs on the package's lane worker (:mod:`.lanes`) with the lane's lock held, so nothing else changes
the package meanwhile. Every outcome ends the job through the :class:`~.job_book.JobBook`: SUCCEEDED,
REJECTED (refused before any change: bad archive, signature, manifest), TIMED_OUT, CANCELED (shutdown)
or FAILED, each with the version the package is on afterwards in the reason.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from robot_platform.deploy.activation import Activator
from robot_platform.deploy.code_runner import run_step
from robot_platform.deploy.errors import (
    CanceledError,
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
from robot_platform.deploy.job_book import JobBook
from robot_platform.deploy.jobs import DeployRequest, State, Status, Step
from robot_platform.deploy.manifest import load_manifest
from robot_platform.deploy.package import TrustStore, verify_archive
from robot_platform.deploy.safe_extract import safe_extract
from robot_platform.deploy.store import Journal, PackageStore

if TYPE_CHECKING:  # the engine builds the runner; its config type is only named here
    from robot_platform.deploy.engine import EngineConfig

# Errors that mean "refused before any change": reported as REJECTED rather than FAILED.
REJECTING_ERRORS = (IntegrityError, SignatureError, UnsafeArchiveError, LimitExceededError, ManifestError, RequestError)
DOWNLOAD_PROGRESS_EVERY_S = 0.5


class Fetcher(Protocol):
    def download(
        self,
        uri: str,
        dest: Path,
        max_bytes: int,
        progress: Callable[[int, int], None] | None = ...,
        cancelled: Callable[[], bool] = ...,
    ) -> int: ...


class DeploymentRunner:
    """Runs accepted deployments one at a time per package; see the module docstring."""

    def __init__(
        self,
        config: EngineConfig,
        store: PackageStore,
        fetcher: Fetcher,
        trust: TrustStore,
        activator: Activator,
        book: JobBook,
        cache: Path,
        stopping: Callable[[], bool],
    ) -> None:
        self.config = config
        self.store = store
        self.fetcher = fetcher
        self.trust = trust
        self.activator = activator
        self.book = book
        self.cache = cache
        self._stopping = stopping

    def run(self, request: DeployRequest) -> None:
        status = self.book.status_of(request.job_id)
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
            self.book.finish(request, status, State.SUCCEEDED)
        except DeployError as exc:
            if journal is not None:
                self.activator.roll_back(journal, status, activated)
            if isinstance(exc, CanceledError) or self._stopping():
                state = State.CANCELED
            elif isinstance(exc, StepTimeoutError):
                state = State.TIMED_OUT
            elif isinstance(exc, REJECTING_ERRORS) and not activated:
                state = State.REJECTED
            else:
                state = State.FAILED
            active = self.store.active_version(package)
            suffix = f"; {package} is on {active}" if active else f"; {package} has no active version"
            self.book.finish(request, status, state, exc.reason + suffix)
        except OSError as exc:
            if journal is not None:
                self.activator.roll_back(journal, status, activated)
            self.book.finish(request, status, State.FAILED, f"{status.step} failed: {exc.strerror or exc}")

    def _download_and_install(self, request: DeployRequest, status: Status, journal: Journal) -> Path:
        package = request.package_name
        archive = self.cache / f"{package}-{request.version}-{request.sha256[:16]}.tar.gz"
        self.book.progress(status, Step.DOWNLOAD)
        last = [0.0]

        def progress(have: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= DOWNLOAD_PROGRESS_EVERY_S or have == total:
                last[0] = now
                self.book.progress(status, Step.DOWNLOAD, Step.PROGRESS[Step.VERIFY] * have / max(total, 1))

        if not archive.exists():
            self.fetcher.download(
                request.artifact_uri, archive, self.config.max_archive_bytes, progress, self._stopping
            )
        try:
            self.book.progress(status, Step.VERIFY)
            signer = verify_archive(archive, request.sha256, request.signature, self.trust)
            self.book.progress(status, Step.EXTRACT)
            staging = self.store.staging_dir(package, request.job_id)
            shutil.rmtree(staging, ignore_errors=True)
            safe_extract(archive, staging, self.config.extract_limits)
            manifest = load_manifest(staging)
            for key, want in (("name", package), ("version", request.version), ("kind", request.kind)):
                if getattr(manifest, key) != want:
                    raise ManifestError(key, f"is {getattr(manifest, key)!r} but the request says {want!r}")
            self.book.progress(status, Step.INSTALL)
            record = {"sha256": request.sha256, "kind": manifest.kind, "signer": signer, "job_id": request.job_id}
            version_dir = self.store.install(journal, staging, record)
            log_path = self.store.package_dir(package) / "logs" / f"{request.version}.log"
            log_path.parent.mkdir(exist_ok=True)
            for step_argv in manifest.install:
                if self._stopping():
                    raise CanceledError()
                run_step(
                    "install",
                    manifest,
                    step_argv,
                    version_dir,
                    self.config.install_step_timeout_s,
                    log_path,
                    self._stopping,
                )
            return version_dir
        finally:
            if not self.config.keep_archives:
                archive.unlink(missing_ok=True)
