"""Reserve a ROS_DOMAIN_ID exclusively, so parallel test runs and demos never share a ROS graph.

A reservation is an flock on ``<tmp>/robot_platform_ros_domains/<id>.lock``: released when the holder
closes it or dies, so a crashed test never leaks a domain.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO

# Fast DDS computes its ports from the domain id (valid up to 232 with the default port mapping).
# Tests use 120..199; the demo uses 10 + robot index.
TEST_DOMAIN_MIN = 120
TEST_DOMAIN_MAX = 200
DOMAIN_LOCK_DIR = Path(tempfile.gettempdir()) / "robot_platform_ros_domains"


class DomainReservation:
    """``count`` consecutive ROS_DOMAIN_IDs held with file locks, so parallel runs never share a graph.

    ``domain_id`` is the first of the block.
    """

    def __init__(self, count: int = 1) -> None:
        DOMAIN_LOCK_DIR.mkdir(parents=True, exist_ok=True)
        span = TEST_DOMAIN_MAX - TEST_DOMAIN_MIN - count + 1
        offset = os.getpid() % span
        for i in range(span):
            first = TEST_DOMAIN_MIN + (offset + i) % span
            handles = self._lock_block(first, count)
            if handles:
                self.domain_id = first
                self._handles = handles
                return
        raise RuntimeError(f"no {count} free consecutive ROS domain ids in {TEST_DOMAIN_MIN}..{TEST_DOMAIN_MAX - 1}")

    @staticmethod
    def _lock_block(first: int, count: int) -> list[IO[str]]:
        handles: list[IO[str]] = []
        for domain in range(first, first + count):
            handle = (DOMAIN_LOCK_DIR / f"{domain}.lock").open("w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                for h in handles:
                    h.close()
                return []
            handles.append(handle)
        return handles

    def release(self) -> None:
        for handle in self._handles:
            handle.close()  # closing drops the lock
        self._handles = []
