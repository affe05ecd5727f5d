"""Package lanes: the one place that serializes the work on a package.

A lane per package: a bounded queue of deployments drained by a worker thread of its own (started on
demand, gone when the queue is empty), and a lock held while anything changes that package (a
deployment, a rollback, an app restart). Different packages deploy in parallel; two changes to the
same package never overlap. Rollbacks and restarts do not queue: they take the lane's lock within a
wait of their own (the service answers at once, a rollback job waits longer), see :meth:`acquire`.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from robot_platform.deploy.jobs import DeployRequest

LANE_POLL_S = 0.5  # a waiting acquire checks for a shutdown this often


@dataclass
class Lane:
    """Serializes the work on one package."""

    queue: collections.deque[DeployRequest] = field(default_factory=collections.deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    worker: threading.Thread | None = None


class PackageLanes:
    """The lanes of every package; ``run`` is called on a lane's worker with the lane's lock held."""

    def __init__(self, run: Callable[[DeployRequest], None], stopping: Callable[[], bool]) -> None:
        self._run = run
        self._stopping = stopping
        self._lock = threading.Lock()  # guards the table, every queue and every lane's worker field
        self._lanes: dict[str, Lane] = {}

    def lane(self, package: str) -> Lane:
        with self._lock:
            return self._lanes.setdefault(package, Lane())

    def queued(self, package: str) -> int:
        with self._lock:
            lane = self._lanes.get(package)
            return len(lane.queue) if lane else 0

    def enqueue(self, request: DeployRequest) -> bool:
        """Queue a deployment, starting the lane's worker if it has none; True if it waits behind another."""
        with self._lock:
            lane = self._lanes.setdefault(request.package_name, Lane())
            busy = lane.worker is not None and lane.worker.is_alive()
            lane.queue.append(request)
            if not busy:
                lane.worker = threading.Thread(
                    target=self._drain, args=(lane,), name=f"deploy-{request.package_name}", daemon=True
                )
                lane.worker.start()
        return busy

    def clear(self) -> list[DeployRequest]:
        """Empty every queue (shutdown); returns the deployments that will not run."""
        with self._lock:
            dropped = [request for lane in self._lanes.values() for request in lane.queue]
            for lane in self._lanes.values():
                lane.queue.clear()
        return dropped

    def join(self, timeout_s: float) -> None:
        """Wait for the workers to finish their current job (each within ``timeout_s``)."""
        with self._lock:
            workers = [lane.worker for lane in self._lanes.values() if lane.worker is not None]
        for worker in workers:
            worker.join(timeout=timeout_s)

    def acquire(self, lane: Lane, wait_s: float) -> bool:
        """Take the package's lane within ``wait_s`` (in short steps, so a shutdown ends the wait)."""
        deadline = time.monotonic() + wait_s
        while True:
            left = deadline - time.monotonic()
            if lane.lock.acquire(timeout=max(0.0, min(LANE_POLL_S, left))):
                return True
            if left <= 0 or self._stopping():
                return False

    def _drain(self, lane: Lane) -> None:
        while True:
            with self._lock:
                if not lane.queue:
                    lane.worker = None
                    return
                request = lane.queue.popleft()
            with lane.lock:
                self._run(request)
