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
    """An exclusive ROS_DOMAIN_ID, held with a file lock so parallel test runs never share a graph."""

    def __init__(self) -> None:
        DOMAIN_LOCK_DIR.mkdir(parents=True, exist_ok=True)
        start = TEST_DOMAIN_MIN + (os.getpid() % (TEST_DOMAIN_MAX - TEST_DOMAIN_MIN))
        span = TEST_DOMAIN_MAX - TEST_DOMAIN_MIN
        for i in range(span):
            domain = TEST_DOMAIN_MIN + (start - TEST_DOMAIN_MIN + i) % span
            handle: IO[str] = (DOMAIN_LOCK_DIR / f"{domain}.lock").open("w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            self.domain_id = domain
            self._handle = handle
            return
        raise RuntimeError(f"no free ROS domain id in {TEST_DOMAIN_MIN}..{TEST_DOMAIN_MAX - 1}")

    def release(self) -> None:
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
