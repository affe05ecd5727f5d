"""Long-running app processes: start, health check, restart policy, stop; and clean-up after a crash.

An app runs through :mod:`.sandbox` like every package process (see :mod:`.code_runner`), in its own
session. Its stdout and stderr are pipes drained by an :class:`~.app_logs.OutputReader`, which appends
them to ``<package>/logs/<version>.log`` (rotated once past ``APP_LOG_MAX_BYTES``) and forwards each line
as a log record named ``apps.<package>`` to the log sink (the node publishes them on ``/rosout``).
:class:`AppSupervisor` applies each app's restart policy from one thread.
Because apps live in their own sessions they outlive a SIGKILLed deploy_service; :func:`kill_strays`
and :func:`kill_orphan` stop such leftovers at the next start-up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from robot_platform.deploy.app_logs import LineSink, LogFile, OutputReader, ReaderConfig
from robot_platform.deploy.code_runner import STOP_TERM_WAIT_S, child_env, kill_group, run_step, sandboxed
from robot_platform.deploy.errors import RunError, StepTimeoutError
from robot_platform.deploy.manifest import Manifest

log = logging.getLogger(__name__)

APP_LOG_MAX_BYTES = 10 * 1024 * 1024
APP_LOG_PREFIX = "apps."  # log record name: apps.<package>
RESTART_BACKOFF_MAX_S = 30.0
RESTART_LIMIT_PER_MIN = 5
SUPERVISE_PERIOD_S = 0.5


class AppProcess:
    """One running version of an app package: start, health check, stop, supervised restarts."""

    def __init__(
        self,
        version_dir: Path,
        manifest: Manifest,
        log_path: Path,
        log_sink: LineSink | None = None,
        log_config: ReaderConfig | None = None,
    ) -> None:
        self.version_dir = version_dir
        self.manifest = manifest
        self.log_path = log_path
        self.log_sink = log_sink
        self.log_config = log_config or ReaderConfig(max_file_bytes=APP_LOG_MAX_BYTES)
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: OutputReader | None = None
        self._restart_times: list[float] = []
        self._next_restart_at = 0.0
        self.gave_up = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def reader(self) -> OutputReader | None:
        """The output reader of the current run (counters: lines, forwarded, rate_limited, truncated)."""
        return self._reader

    def start(self) -> None:
        self._stop_reader()  # a restart: the previous run's reader has its EOF (or is made to stop)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Bounded logs: one rotation (<log>.1) once the file passes its limit, at start and while running.
        with contextlib.suppress(FileNotFoundError):
            if self.log_path.stat().st_size > self.log_config.max_file_bytes:
                os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
        log_file = LogFile(self.log_path, self.log_config.max_file_bytes)
        fds: dict[str, int] = {}
        writers: list[int] = []
        try:
            log_file.write(f"--- start {self.manifest.name} {self.manifest.version} at {time.time():.3f}\n".encode())
            for stream in ("stdout", "stderr"):
                fds[stream], writer = os.pipe()
                writers.append(writer)
            self._proc = subprocess.Popen(
                sandboxed(self.manifest, self.manifest.run),
                cwd=self.version_dir,
                env=child_env(self.manifest),
                stdin=subprocess.DEVNULL,
                stdout=writers[0],
                stderr=writers[1],
                start_new_session=True,
            )
        except OSError as exc:
            for fd in fds.values():
                os.close(fd)
            log_file.close()
            raise RunError("start", f"cannot start {self.manifest.run[0]}: {exc.strerror}") from exc
        finally:
            for fd in writers:  # the child has its own copies: EOF comes when the last writer exits
                os.close(fd)
        self._reader = OutputReader(
            APP_LOG_PREFIX + self.manifest.name,
            f"{self.manifest.name}@{self.manifest.version}",
            fds,
            self.log_sink,
            self.log_config,
            log_file,
        )
        self._reader.start()

    def _stop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stop()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def stop(self) -> int | None:
        """Stop the process group (SIGTERM, then SIGKILL), then its output reader (last lines included)."""
        if self._proc is None:
            return None
        code = kill_group(self._proc)
        self._stop_reader()
        return code

    def wait_healthy(self, timeout_s: float, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Return once the health check passes; raise if the app exits or ``timeout_s`` passes."""
        started = time.monotonic()
        deadline = started + timeout_s
        check = self.manifest.health_check
        interval = check.interval_s if check else 0.2
        last_problem = ""  # what the last finished check said; "" while none has finished
        while True:
            if not self.alive():
                raise RunError(
                    "health_check",
                    f"app exited with status {self.returncode()} before it was healthy",
                    self.returncode(),
                )
            if cancelled():
                raise RunError("health_check", "canceled")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._health_deadline_passed(timeout_s, last_problem)
            if check is None:
                # No check declared: healthy once it stayed up for a short grace period.
                if time.monotonic() - started >= min(1.0, timeout_s / 2):
                    return
            else:
                try:
                    run_step(
                        "health_check",
                        self.manifest,
                        check.command,
                        self.version_dir,
                        timeout_s=max(0.1, remaining),
                    )
                    return
                except StepTimeoutError:
                    self._health_deadline_passed(timeout_s, last_problem)
                except RunError as exc:
                    last_problem = exc.problem
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                self._health_deadline_passed(timeout_s, last_problem)

    @staticmethod
    def _health_deadline_passed(timeout_s: float, last_problem: str) -> NoReturn:
        """The deadline passed: "not healthy" (FAILED) if a check already answered unhealthy, else
        TIMED_OUT (no check ever finished). A last attempt cut by the deadline does not hide an answer."""
        if last_problem:
            raise RunError("health_check", f"not healthy within {timeout_s:g} s ({last_problem})")
        raise StepTimeoutError("health_check", timeout_s)

    def supervise(self) -> bool:
        """Apply the restart policy once; call periodically. Returns True if it restarted the app."""
        if self._proc is None or self.alive() or self.gave_up:
            return False
        code = self._proc.returncode
        policy = self.manifest.restart
        if policy == "never" or (policy == "on-failure" and code == 0):
            return False
        now = time.monotonic()
        if now < self._next_restart_at:
            return False
        self._restart_times = [t for t in self._restart_times if now - t < 60.0]
        if len(self._restart_times) >= RESTART_LIMIT_PER_MIN:
            log.error(
                "app %s %s keeps exiting (status %s); giving up restarts",
                self.manifest.name,
                self.manifest.version,
                code,
            )
            self.gave_up = True
            return False
        self._restart_times.append(now)
        self.restarts += 1
        self._next_restart_at = now + min(RESTART_BACKOFF_MAX_S, 0.5 * 2 ** len(self._restart_times))
        log.warning(
            "app %s %s exited with status %s; restart %d",
            self.manifest.name,
            self.manifest.version,
            code,
            self.restarts,
        )
        self.start()
        return True


def write_pidfile(path: Path, app: AppProcess) -> None:
    """Remember a started app so a restarted deploy_service can stop it if it outlived a crash."""
    path.write_text(json.dumps({"pid": app.pid, "cwd": str(app.version_dir.resolve())}))


def _gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for a reaper that is not us."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat_line.rsplit(")", 1)[-1].split()[0] == "Z"


def kill_orphan(path: Path) -> bool:
    """Stop the process group named in a pidfile if it is still the app we started (same cwd)."""
    try:
        data = json.loads(path.read_text())
        pid, cwd = int(data["pid"]), str(data["cwd"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    try:
        if os.readlink(f"/proc/{pid}/cwd") != cwd:
            return False  # the pid was reused by something else: leave it alone
    except OSError:
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + STOP_TERM_WAIT_S
        while time.monotonic() < deadline and not _gone(pid):
            time.sleep(0.05)
        if _gone(pid):
            break
    log.warning("stopped app process group %d left over from a previous run", pid)
    return True


def kill_strays(root: Path) -> list[int]:
    """Stop processes left running inside ``root`` by a previous deploy_service that died (SIGKILL, power).

    Apps and install steps run with their working directory in the install root and in their own process
    groups, so they outlive a killed node. Only processes of this user whose cwd is under ``root`` are
    touched: nothing but deploy_service starts processes there.
    """
    prefix = str(Path(root).resolve()) + os.sep
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(prefix) and not _gone(int(entry.name)):
            found.append(int(entry.name))
    for pid in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            group = os.getpgid(pid)
            if group == os.getpgrp():
                os.kill(pid, signal.SIGTERM)  # never our own group
            else:
                os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TERM_WAIT_S
    while time.monotonic() < deadline and not all(_gone(pid) for pid in found):
        time.sleep(0.05)
    for pid in found:
        if not _gone(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    if found:
        log.warning("stopped %d process(es) left in %s by a previous run: %s", len(found), root, found)
    return found


class AppSupervisor:
    """The running app of each package, restarted per its policy by one background thread."""

    def __init__(self) -> None:
        self._apps: dict[str, AppProcess] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="deploy-app-supervisor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(SUPERVISE_PERIOD_S):
            with self._lock:
                apps = list(self._apps.values())
            for app in apps:
                try:
                    app.supervise()
                except RunError as exc:
                    log.error("restart of %s failed: %s", app.manifest.name, exc.reason)

    def get(self, package: str) -> AppProcess | None:
        with self._lock:
            return self._apps.get(package)

    def set(self, package: str, app: AppProcess | None) -> AppProcess | None:
        """Register ``app`` as the package's running app; returns the one it replaced (not stopped)."""
        with self._lock:
            old = self._apps.pop(package, None)
            if app is not None:
                self._apps[package] = app
            return old

    def running(self, package: str) -> bool:
        app = self.get(package)
        return app is not None and app.alive()

    def shutdown(self) -> None:
        """Stop the supervisor thread and every app (SIGTERM, then SIGKILL after a bounded wait)."""
        self._stop.set()
        self._thread.join(timeout=2.0)
        with self._lock:
            apps = list(self._apps.values())
            self._apps.clear()
        for app in apps:
            app.stop()
