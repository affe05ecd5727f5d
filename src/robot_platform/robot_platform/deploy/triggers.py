"""Event triggers of function packages: run ``handler(event, context)`` when a trigger fires.

A function's manifest names its triggers (``{nats: subject}``, ``{ros_topic: /t}``, ``{schedule_s: n}``).
The node reconciles the wanted set with what is subscribed whenever packages change; this module holds
the part without middleware:

* :class:`TriggerRunner` runs invocations on a small bounded pool. At most one invocation per package
  is in flight; a trigger firing while its package is busy is skipped and counted (``skipped``), the
  drop policy that keeps a fast topic from queueing unbounded work.
* the schedule loop (one thread) fires ``schedule_s`` triggers.
* every result goes to ``on_result(package, source, result_dict)`` (the node publishes it to NATS
  ``robots.<id>.deploy.result.<package>`` and the engine keeps the last ones).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from robot_platform.deploy.errors import DeployError
from robot_platform.deploy.manifest import Trigger

log = logging.getLogger(__name__)

MAX_PARALLEL_INVOCATIONS = 2
SCHEDULE_TICK_MAX_S = 1.0

Invoke = Callable[[str, Any], dict[str, Any]]
ResultSink = Callable[[str, str, dict[str, Any]], None]


def wanted(triggers: dict[str, tuple[Trigger, ...]]) -> tuple[dict[str, str], dict[str, str], dict[str, float]]:
    """Split manifests' triggers into NATS subject -> package, ROS topic -> package, package -> period.

    A subject or topic claimed by two packages goes to the first in name order (and is logged), so the
    result does not depend on dict order.
    """
    subjects: dict[str, str] = {}
    topics: dict[str, str] = {}
    periods: dict[str, float] = {}
    for package in sorted(triggers):
        for trigger in triggers[package]:
            if trigger.nats:
                if subjects.setdefault(trigger.nats, package) != package:
                    log.warning("NATS subject %s claimed by %s and %s", trigger.nats, subjects[trigger.nats], package)
            elif trigger.ros_topic:
                if topics.setdefault(trigger.ros_topic, package) != package:
                    log.warning(
                        "ROS topic %s claimed by %s and %s", trigger.ros_topic, topics[trigger.ros_topic], package
                    )
            elif trigger.schedule_s > 0:
                periods[package] = min(periods.get(package, trigger.schedule_s), trigger.schedule_s)
    return subjects, topics, periods


class TriggerRunner:
    """Runs triggered invocations (see the module docstring). ``close`` stops the schedule and the pool."""

    def __init__(self, invoke: Invoke, on_result: ResultSink) -> None:
        self._invoke = invoke
        self._on_result = on_result
        self._pool = ThreadPoolExecutor(MAX_PARALLEL_INVOCATIONS, thread_name_prefix="deploy-trigger")
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._periods: dict[str, float] = {}
        self._due: dict[str, float] = {}
        self._wake = threading.Event()
        self._closed = threading.Event()
        self.fired = 0
        self.skipped = 0
        self._thread = threading.Thread(target=self._schedule_loop, name="deploy-schedule", daemon=True)
        self._thread.start()

    def fire(self, package: str, event: Any, source: str) -> bool:
        """Invoke ``package`` with ``event`` unless it is busy or we are closing; returns whether it ran."""
        with self._lock:
            if self._closed.is_set() or package in self._busy:
                self.skipped += 1
                return False
            self._busy.add(package)
            self.fired += 1
        self._pool.submit(self._run, package, event, source)
        return True

    def _run(self, package: str, event: Any, source: str) -> None:
        try:
            result = self._invoke(package, event)
        except DeployError as exc:
            result = {"ok": False, "error": exc.reason}
        finally:
            with self._lock:
                self._busy.discard(package)
        self._on_result(package, source, result)

    def set_schedule(self, periods: dict[str, float]) -> None:
        """Replace the scheduled packages (package -> period in seconds); new ones fire after one period."""
        now = time.monotonic()
        with self._lock:
            self._due = {p: self._due.get(p, now + s) for p, s in periods.items()}
            self._periods = dict(periods)
        self._wake.set()

    def _schedule_loop(self) -> None:
        while not self._closed.is_set():
            now = time.monotonic()
            with self._lock:
                due = [p for p, t in self._due.items() if t <= now]
                for package in due:
                    self._due[package] = now + self._periods[package]
                next_due = min(self._due.values(), default=now + SCHEDULE_TICK_MAX_S)
            for package in due:
                self.fire(package, {"source": "schedule", "time": time.time()}, "schedule")
            self._wake.wait(max(0.01, min(SCHEDULE_TICK_MAX_S, next_due - time.monotonic())))
            self._wake.clear()

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=2.0)
        self._pool.shutdown(wait=True, cancel_futures=True)
