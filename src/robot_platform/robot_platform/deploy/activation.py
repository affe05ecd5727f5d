"""Switch a package between versions and keep its app running: the part of a job after install.

Used by the engine for deployments (activate, start, health check, roll back on failure) and for the
``rollback`` service, and at start-up to bring back the active apps. The caller serializes per package
(:mod:`.lanes`) and owns the journal; this class never decides job states, it raises and reports steps
through ``progress`` (which may itself raise to cancel).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from robot_platform.deploy.app_logs import LineSink, ReaderConfig
from robot_platform.deploy.apps import AppProcess, AppSupervisor, kill_orphan, kill_strays, write_pidfile
from robot_platform.deploy.code_runner import probe_function
from robot_platform.deploy.errors import DeployError, StoreError
from robot_platform.deploy.jobs import Status, Step
from robot_platform.deploy.manifest import KIND_APP, Manifest, load_manifest
from robot_platform.deploy.store import Journal, PackageStore

log = logging.getLogger(__name__)

PIDFILE = "app.pid"

Progress = Callable[[Status, str], None]


class Activator:
    """Version switches with health checks; see the module docstring."""

    def __init__(
        self,
        store: PackageStore,
        apps: AppSupervisor,
        progress: Progress,
        cancelled: Callable[[], bool],
        log_sink: LineSink | None = None,
        log_config: ReaderConfig | None = None,
    ) -> None:
        self.store = store
        self.apps = apps
        self._progress = progress
        self._cancelled = cancelled
        self.log_sink = log_sink  # where apps' output lines go as log records (None: the file only)
        self.log_config = log_config

    def stop_strays(self) -> None:
        """Stop processes a killed predecessor left in the install root (call before store recovery)."""
        kill_strays(self.store.root)

    def restore_all(self) -> None:
        """Start the active version of every app package (after recovery, at start-up)."""
        for package in self.store.packages():
            kill_orphan(self.store.package_dir(package) / PIDFILE)
            active = self.store.active_dir(package)
            if active is None:
                continue
            try:
                manifest = load_manifest(active)
                if manifest.kind == KIND_APP:
                    self.start_app(package, active, manifest)
            except DeployError as exc:
                log.error("cannot start %s at start-up: %s", package, exc.reason)

    def activate_and_check(self, journal: Journal, status: Status, version_dir: Path, manifest: Manifest) -> None:
        """Stop the old app, switch ``current``, start the new version and wait for its health check."""
        package = journal.package
        self._progress(status, Step.ACTIVATE)
        self.stop_app(package)
        self.store.activate(journal, package, journal.version)
        self._progress(status, Step.START)
        if manifest.kind == KIND_APP:
            app = self.start_app(package, version_dir, manifest)
            self._progress(status, Step.HEALTH_CHECK)
            app.wait_healthy(manifest.timeout_s, self._cancelled)
        else:
            self._progress(status, Step.HEALTH_CHECK)
            probe_function(version_dir, manifest, manifest.timeout_s)

    def roll_back(self, journal: Journal, status: Status, activated: bool) -> None:
        """Undo a failed job: back to the previous version (restarted if it is an app)."""
        package = journal.package
        if activated:
            self._progress(status, Step.ROLLBACK)
            self.stop_app(package)
        try:
            self.store.undo(journal)
        except (OSError, StoreError) as exc:
            log.error("rollback of %s failed (%s); the journal stays for recovery at restart", package, exc)
            return
        previous = self.store.active_dir(package)
        if activated and previous is not None:
            try:
                manifest = load_manifest(previous)
                if manifest.kind == KIND_APP:
                    self.start_app(package, previous, manifest).wait_healthy(manifest.timeout_s)
            except DeployError as exc:
                log.error("previous version of %s did not come back healthy: %s", package, exc.reason)

    def start_app(self, package: str, version_dir: Path, manifest: Manifest) -> AppProcess:
        log_path = self.store.package_dir(package) / "logs" / f"{manifest.version}.log"
        app = AppProcess(version_dir, manifest, log_path, self.log_sink, self.log_config)
        app.start()
        write_pidfile(self.store.package_dir(package) / PIDFILE, app)
        old = self.apps.set(package, app)
        if old is not None:
            old.stop()
        return app

    def stop_app(self, package: str) -> None:
        app = self.apps.set(package, None)
        if app is not None:
            app.stop()
        (self.store.package_dir(package) / PIDFILE).unlink(missing_ok=True)
