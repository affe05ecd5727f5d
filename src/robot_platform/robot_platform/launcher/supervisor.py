"""Start child processes and stop every one of them, whatever signal the parent gets.

Why this exists: upstream Jazzy ``ros2 launch`` can exit on SIGTERM and leave children running, and on
pip-only machines there is no launch at all. The platform's runner, demo and test harness all start
processes through :class:`ProcessGroup`, which

* puts each child in its own process group (so a node's own children go down with it),
* asks the kernel to SIGTERM the child if this process dies without cleaning up (PR_SET_PDEATHSIG),
* stops children with SIGINT (what rclpy and ros2 launch treat as Ctrl-C), then SIGTERM, then SIGKILL,
  each after a bounded wait.

Plain Python (no rclpy), used by tests directly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

STOP_SIGINT_WAIT_S = 5.0
STOP_SIGTERM_WAIT_S = 3.0
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM this child when the parent thread dies (no orphans after a SIGKILL)."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        ctypes.CDLL(libc_name, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One started process and where its output goes."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path | None
    log_file: IO[bytes] | None = field(default=None, repr=False)
    stop_last: bool = False  # a server the others use: stopped after them, so they shut down cleanly
    env: dict[str, str] = field(default_factory=dict, repr=False)
    cwd: Path | None = None
    restarts: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self, max_bytes: int = 20_000) -> str:
        """The tail of the child's log (for failure reports)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()[-max_bytes:]
        return data.decode("utf-8", errors="replace")


class ProcessGroup:
    """A set of child processes that are stopped together.

    Args:
        log_dir: where each child's stdout+stderr goes (``<name>.log``); ``None`` inherits the parent's
            terminal (used by the interactive runner).
    """

    def __init__(self, log_dir: Path | None = None) -> None:
        self._log_dir = log_dir
        self._children: list[Child] = []
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def children(self) -> list[Child]:
        return list(self._children)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_last: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` (no shell) as a new process group; return its Popen.

        ``stop_last`` marks a server (nats-server, a broker) that :meth:`stop_all` stops only after every
        other child has stopped, so nodes can flush and disconnect cleanly.
        """
        log_path = None
        log_file = None
        if self._log_dir is not None:
            log_path = self._log_dir / f"{name.replace('/', '.')}.log"
            log_file = log_path.open("ab")
        full_env = dict(os.environ if env is None else env)
        popen = self._popen(list(argv), full_env, cwd, log_file)
        self._children.append(Child(name, list(argv), popen, log_path, log_file, stop_last, full_env, cwd))
        log.debug("started %s (pid %d): %s", name, popen.pid, " ".join(argv))
        return popen

    @staticmethod
    def _popen(argv: list[str], env: dict[str, str], cwd: Path | None, log_file: IO[bytes] | None
               ) -> subprocess.Popen[bytes]:  # fmt: skip
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file if log_file else None,
            stderr=subprocess.STDOUT if log_file else None,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def restart(self, name: str) -> subprocess.Popen[bytes]:
        """Start an exited child again with the same command, environment and log (``use_respawn``)."""
        child = self.child(name)
        if child.running():
            raise RuntimeError(f"{name} is still running")
        _signal_group(child, signal.SIGKILL)  # whatever the old one left in its group
        child.popen = self._popen(child.argv, child.env, child.cwd, child.log_file)
        child.restarts += 1
        log.debug("restarted %s (pid %d)", name, child.popen.pid)
        return child.popen

    def child(self, name: str) -> Child:
        for c in self._children:
            if c.name == name:
                return c
        raise KeyError(name)

    def exited(self) -> list[Child]:
        """Children that are no longer running."""
        return [c for c in self._children if not c.running()]

    def stop_all(
        self, sigint_wait_s: float = STOP_SIGINT_WAIT_S, sigterm_wait_s: float = STOP_SIGTERM_WAIT_S
    ) -> dict[str, int | None]:
        """Stop every child (and its process group); return each child's exit code.

        Nodes first, then the servers marked ``stop_last``. Each wave: SIGINT (a clean rclpy shutdown),
        SIGTERM after ``sigint_wait_s``, SIGKILL after ``sigterm_wait_s`` more. Safe to call twice.
        """
        self._stop_wave([c for c in self._children if not c.stop_last], sigint_wait_s, sigterm_wait_s)
        self._stop_wave([c for c in self._children if c.stop_last], sigint_wait_s, sigterm_wait_s)
        codes: dict[str, int | None] = {}
        for c in self._children:
            try:
                codes[c.name] = c.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                codes[c.name] = None
            # The group may hold grandchildren that outlived the leader: make sure they go too.
            _signal_group(c, signal.SIGKILL)
            if c.log_file is not None:
                c.log_file.close()
                c.log_file = None
        return codes

    @staticmethod
    def _stop_wave(children: list[Child], sigint_wait_s: float, sigterm_wait_s: float) -> None:
        alive = [c for c in children if c.running()]
        for sig, wait_s in ((signal.SIGINT, sigint_wait_s), (signal.SIGTERM, sigterm_wait_s)):
            for c in alive:
                _signal_group(c, sig)
            deadline = time.monotonic() + wait_s
            while alive and time.monotonic() < deadline:
                alive = [c for c in alive if c.running()]
                if alive:
                    time.sleep(0.05)
            if not alive:
                break
        for c in alive:
            log.warning("%s (pid %d) still running %.0f s after SIGINT and SIGTERM; killing it", c.name, c.pid,
                        sigint_wait_s + sigterm_wait_s)  # fmt: skip
            _signal_group(c, signal.SIGKILL)


def _signal_group(child: Child, sig: signal.Signals) -> None:
    try:
        os.killpg(child.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:  # pragma: no cover - only if the child changed user
        log.warning("not allowed to signal %s (pid %d)", child.name, child.pid)
