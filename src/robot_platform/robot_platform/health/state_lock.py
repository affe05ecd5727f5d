"""One process per state file: an exclusive, non-blocking flock on ``<file>.lock``.

The durable outbox and the active-alert file both live in a robot's ``state_dir``; two health nodes
pointed at the same directory (same robot id twice, a copy-pasted launch) would replay or clear each
other's alerts. The second one therefore gets :class:`StateFileBusy` and runs without the file.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class StateFileBusy(Exception):
    """Another process holds the lock."""


def lock_state_file(path: Path) -> int:
    """Create the directory (0700) and lock ``<path>.lock``; return the descriptor (closing it unlocks).

    Raises StateFileBusy when another process holds it, OSError when it cannot be created."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StateFileBusy(str(path)) from None
    return fd
