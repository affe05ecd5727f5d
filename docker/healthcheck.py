#!/usr/bin/env python3
"""Container health check of the robot and control images (Docker HEALTHCHECK, compose, Kubernetes probes).

Why a script rather than ``curl``: the images carry no curl, and "healthy" means more than one port
answering. It checks, with the standard library only:

- every URL in ``RP_HEALTH_URLS`` (comma separated; default: the local nats-server's ``/healthz``)
  answers HTTP 2xx within ``RP_HEALTH_TIMEOUT`` seconds (default 3);
- every name in ``RP_HEALTH_PROCS`` (comma separated, e.g. ``robot_sim,nats_bridge``) is the name of a
  running process (matched against the executable's basename or ``-m`` module path in /proc/*/cmdline).

Exit 0 when all pass, 1 otherwise, printing one line per failed check (Docker keeps the output).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_URLS = "http://127.0.0.1:8222/healthz"


def check_url(url: str, timeout: float) -> str | None:
    """None if ``url`` answers 2xx, else why not."""
    if not url.startswith(("http://", "https://")):
        return f"{url}: not an http(s) URL"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            if 200 <= response.status < 300:
                return None
            return f"{url}: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"


def running_names(proc: Path = Path("/proc")) -> set[str]:
    """Basenames of the executables, scripts and ``-m`` modules of the running processes."""
    names: set[str] = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        for i, word in enumerate(words[:3]):  # interpreter, script or -m module
            names.add(os.path.basename(word))
            if word == "-m" and i + 1 < len(words):
                names.add(words[i + 1])
    return names


def main() -> int:
    timeout = float(os.environ.get("RP_HEALTH_TIMEOUT", "3"))
    urls = [u.strip() for u in os.environ.get("RP_HEALTH_URLS", DEFAULT_URLS).split(",") if u.strip()]
    wanted = [p.strip() for p in os.environ.get("RP_HEALTH_PROCS", "").split(",") if p.strip()]
    problems = [p for p in (check_url(u, timeout) for u in urls) if p]
    if wanted:
        names = running_names()
        problems += [f"process {name}: not running" for name in wanted if name not in names]
    for problem in problems:
        print(f"unhealthy: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
