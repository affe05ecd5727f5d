"""Run package code: install steps, function invocations (Lambda-style) and supervised apps.

Every child runs through :mod:`.sandbox` (limits set in the child after exec), in its own session and
process group (so a stop reaches the package's own children), with a minimal environment: PATH, HOME,
LANG plus the manifest's ``environment``. Nothing of deploy_service's environment (S3 credentials,
ROS variables) leaks into package code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from robot_platform.deploy.app_logs import LineSink, LogLine, OutputReader, ReaderConfig
from robot_platform.deploy.errors import RunError, StepTimeoutError
from robot_platform.deploy.log_lines import ERROR, INFO
from robot_platform.deploy.manifest import Manifest

log = logging.getLogger(__name__)

SANDBOX = str(Path(__file__).with_name("sandbox.py"))
STOP_TERM_WAIT_S = 5.0
STOP_KILL_WAIT_S = 2.0
LOG_TAIL_BYTES = 16 * 1024
STEP_POLL_S = 0.2
RESULT_MAX_BYTES = 1024 * 1024
FUNCTION_LOG_PREFIX = "functions."  # log record name of an invocation's output lines: functions.<package>
# Passed through to package processes. RP_TEST_RUN (not a secret) lets scripts/leftover_processes.py find
# package processes a test left running.
BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "RP_TEST_RUN")


def resolve_argv(argv: Sequence[str]) -> list[str]:
    """``python3``/``python`` as argv[0] means the interpreter running deploy_service."""
    if argv and argv[0] in ("python3", "python"):
        return [sys.executable, *argv[1:]]
    return list(argv)


def child_env(manifest: Manifest, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(manifest.environment)
    env["RP_PACKAGE"] = manifest.name
    env["RP_VERSION"] = manifest.version
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def sandboxed(manifest: Manifest, argv: Sequence[str]) -> list[str]:
    limits = json.dumps(manifest.limits.__dict__)
    return [sys.executable, SANDBOX, "exec", limits, "--", *resolve_argv(argv)]


def kill_group(proc: subprocess.Popen[Any], term_wait_s: float = STOP_TERM_WAIT_S) -> int | None:
    """SIGTERM the child's process group, then SIGKILL after ``term_wait_s``; returns the exit status."""
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of an exited leader
        return proc.returncode
    for sig, wait_s in ((signal.SIGTERM, term_wait_s), (signal.SIGKILL, STOP_KILL_WAIT_S)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            return proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll()


def _tail(data: bytes) -> str:
    return data[-LOG_TAIL_BYTES:].decode(errors="replace")


def run_step(
    step: str,
    manifest: Manifest,
    argv: Sequence[str],
    cwd: Path,
    timeout_s: float,
    log_path: Path | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> str:
    """Run one argv to completion within ``timeout_s``; return its output tail, raise on failure.

    Output goes to an unnamed temporary file (not a pipe) so the wait can poll ``cancelled`` without a
    reader thread; a shutdown stops a long install step within ``STEP_POLL_S``.
    """
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(
            sandboxed(manifest, argv),
            cwd=cwd,
            env=child_env(manifest),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    proc.wait(timeout=max(0.0, min(STEP_POLL_S, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if cancelled():
                        raise RunError(step, "canceled") from None
                    if time.monotonic() >= deadline:
                        raise StepTimeoutError(step, timeout_s) from None
        finally:
            kill_group(proc, term_wait_s=0.5)
        output.seek(max(0, output.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
        out = output.read()
    text = _tail(out)
    if log_path is not None:
        with open(log_path, "a") as stream:
            stream.write(f"--- {step}: {list(argv)} -> {proc.returncode}\n{text}")
    if proc.returncode != 0:
        last = text.strip().splitlines()[-1:] or [""]
        raise RunError(step, f"{argv[0]} exited with {proc.returncode}: {last[0][:200]}", proc.returncode)
    return text


@dataclass(frozen=True)
class InvocationResult:
    """One function invocation: its result or error, its log tail and timing."""

    invocation_id: str
    ok: bool
    result: Any
    error: str
    logs: str
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def invoke_function(
    version_dir: Path,
    manifest: Manifest,
    event: Any,
    invocation_id: str = "",
    timeout_s: float | None = None,
    log_sink: LineSink | None = None,
    log_config: ReaderConfig | None = None,
) -> InvocationResult:
    """Call ``handler(event, context)`` in a fresh sandboxed interpreter; never raises for user errors.

    The handler's output (its stderr: the sandbox points stdout there too) is read by an
    :class:`~.app_logs.OutputReader`: each line goes to ``log_sink`` as ``functions.<package>`` while the
    function runs, and the last ``LOG_TAIL_BYTES`` are the result's ``logs``.
    """
    invocation_id = invocation_id or uuid.uuid4().hex
    timeout = timeout_s or manifest.timeout_s
    argv = [
        sys.executable,
        SANDBOX,
        "invoke",
        json.dumps(manifest.limits.__dict__),
        manifest.handler,
        manifest.name,
        manifest.version,
        invocation_id,
        str(timeout),
    ]
    started = time.monotonic()
    err_r, err_w = os.pipe()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=version_dir,
            env=child_env(manifest),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err_w,
            start_new_session=True,
        )
    except OSError:
        os.close(err_r)
        raise
    finally:
        os.close(err_w)
    reader = OutputReader(
        FUNCTION_LOG_PREFIX + manifest.name,
        f"{manifest.name}@{manifest.version}",
        {"stderr": err_r},
        log_sink,
        # All of a handler's output is on stderr (prints included): unmarked lines are INFO here.
        replace(log_config or ReaderConfig(), stderr_level=INFO),
        tail_bytes=LOG_TAIL_BYTES,
    )
    reader.start()
    timed_out = False
    try:
        try:
            out, _ = proc.communicate(json.dumps(event).encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(proc, term_wait_s=0.5)
            out, _ = proc.communicate()
    finally:
        kill_group(proc, term_wait_s=0.5)
        reader.stop()
    duration = time.monotonic() - started
    logs = reader.tail_text()
    if timed_out:
        return InvocationResult(invocation_id, False, None, f"timed out after {timeout:g} s", logs, duration)
    try:
        if len(out) > RESULT_MAX_BYTES:
            raise ValueError(f"result larger than {RESULT_MAX_BYTES} bytes")
        document = json.loads(out)
    except ValueError as exc:
        error = f"no result (exit status {proc.returncode}; {exc})"
        return InvocationResult(invocation_id, False, None, error, logs, duration)
    if document.get("ok"):
        return InvocationResult(invocation_id, True, document.get("result"), "", logs, duration)
    error = str(document.get("error", ""))
    if log_sink is not None:  # the handler's exception is in the result, not its output: say it once
        log_sink(LogLine(time.time(), ERROR, reader.name, f"invocation {invocation_id} failed: {error}",
                         "deploy_service", reader.source, reader.lines + 1))  # fmt: skip
    logs += document.get("traceback", "")
    return InvocationResult(invocation_id, False, None, error, logs, duration)


def probe_function(version_dir: Path, manifest: Manifest, timeout_s: float) -> None:
    """Check a function package loads (module imports, handler callable) under its limits."""
    argv = [sys.executable, SANDBOX, "probe", json.dumps(manifest.limits.__dict__), manifest.handler]
    proc = subprocess.Popen(
        argv,
        cwd=version_dir,
        env=child_env(manifest),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_group(proc, term_wait_s=0.5)
        proc.communicate()
        raise StepTimeoutError("health_check", timeout_s) from None
    if proc.returncode != 0:
        last = _tail(out).strip().splitlines()[-1:] or [""]
        raise RunError("health_check", f"handler {manifest.handler} does not load: {last[0][:200]}", proc.returncode)
