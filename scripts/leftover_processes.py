#!/usr/bin/env python3
"""Print the processes still running that carry ``RP_TEST_RUN=<marker>`` in their environment.

``scripts/test.sh`` exports a unique marker before running the tests; every process a test starts
inherits it (environments are copied to children), so anything printed here was started by this test
run and outlived it.
"""

from __future__ import annotations

import os
import sys

import psutil


def leftovers(marker: str) -> list[str]:
    found = []
    me = {os.getpid(), os.getppid()}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.info["pid"] in me:
            continue
        try:
            if proc.environ().get("RP_TEST_RUN") == marker:
                found.append(f"{proc.info['pid']} {' '.join(proc.info['cmdline'] or [])}")
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


if __name__ == "__main__":
    print("\n".join(leftovers(sys.argv[1])))
