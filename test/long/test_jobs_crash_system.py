"""System test: jobs_service killed with SIGKILL in the middle of a staged rollout, then restarted.

Real parts, as in test_jobs_system.py: Mosquitto with TLS and client certificates, SeaweedFS, nats-server,
the ``jobs_service`` process and three ``deploy_service`` processes. The package's install step takes a
few seconds and appends a line to ``<install_root>/installs.log``, so the test sees every run.

The service is killed twice, each time while a robot is installing, and stays down until that robot has
finished (its final update reaches the broker while nobody serves it) and until the job's in-progress
timeout has passed. After each restart every execution must end in one state that agrees with the robot
(SUCCEEDED and the version installed), none lost, none run twice (one install per robot, attempt 1),
and the rollout goes on to COMPLETED.
"""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path
from typing import Any

import yaml

from helpers import wait_for
from robot_platform.cli.jobs import request
from test_deploy_system import BUCKET, Publisher
from test_jobs_system import ROBOTS, WAIT_S, Site, job, seaweedfs, site, wait_statuses

__all__ = ["seaweedfs", "site"]  # fixtures used by name below

INSTALL_S = 4.0
TIMEOUT_S = 12  # the job's in-progress timeout; each outage lasts longer than this


def slow_source(root: Path) -> Path:
    """A function package whose install step takes INSTALL_S and logs one line per run."""
    src = root / "slow_fn"
    src.mkdir(parents=True)
    log_line = (
        f"import pathlib, time; time.sleep({INSTALL_S}); "
        "pathlib.Path('../../../installs.log').open('a').write('slow_fn 1.0.0\\n')"
    )
    manifest = {
        "name": "slow_fn",
        "version": "1.0.0",
        "kind": "function",
        "runtime": "python3",
        "handler": "fn.main",
        "timeout_s": 10,
        "install": [["python3", "-c", log_line]],
    }
    (src / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    (src / "fn.py").write_text(textwrap.dedent("def main(event, context):\n    return event\n"))
    return src


def installed(tmp: Path, robot: str) -> bool:
    current = tmp / "robots" / robot / "slow_fn" / "current"
    return current.is_symlink() and os.readlink(current).endswith("1.0.0")


def installs(tmp: Path, robot: str) -> int:
    log = tmp / "robots" / robot / "installs.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def kill_while_installing(site: Site, jobs: Any, tmp: Path, robot: str) -> float:
    """SIGKILL the service once ``robot`` is IN_PROGRESS; keep it down until the robot finished and the
    job's timeout has passed; return how long it was down."""
    wait_statuses(site, "crash-1", {robot: "IN_PROGRESS"})
    started = time.monotonic()
    jobs.kill()
    jobs.wait(timeout=10)
    wait_for(lambda: installed(tmp, robot), WAIT_S, f"{robot} finished installing while jobs_service is down")
    time.sleep(max(0.0, TIMEOUT_S + 1.0 - (time.monotonic() - started)))  # the outage outlasts the timeout
    return time.monotonic() - started


def test_sigkill_during_staged_rollout_then_restart(seaweedfs: Any, site: Site, tmp_path: Path) -> None:
    seaweedfs.create_bucket(BUCKET)
    pub = Publisher(seaweedfs, tmp_path)
    document = {"operation": "deploy", **pub.publish(slow_source(tmp_path))}
    jobs = site.start_jobs_service()
    for robot in ROBOTS:
        site.start_robot(robot, seaweedfs, pub.trusted)
    request(
        site.nats_url,
        "create",
        {
            "job_id": "crash-1",
            "document": document,
            "targets": list(ROBOTS),
            "rollout": {"canary": 1, "max_per_minute": 6},  # r2 at once after the canary, r3 10 s later
            "timeout_s": TIMEOUT_S,
            "retry": {"failed": 1, "timed_out": 1},  # a wrongly failed execution would run again: seen below
        },
    )

    # ---- first kill: during the canary's install
    down_1 = kill_while_installing(site, jobs, tmp_path, "r1")
    jobs = site.start_jobs_service()
    wait_statuses(site, "crash-1", {"r1": "SUCCEEDED"})

    # ---- second kill: during the rest stage, r2 installing and r3 not released yet
    down_2 = kill_while_installing(site, jobs, tmp_path, "r2")
    site.start_jobs_service()
    final = wait_statuses(site, "crash-1", {robot: "SUCCEEDED" for robot in ROBOTS})
    final = wait_for(lambda: (j := job(site, "crash-1"))["status"] == "COMPLETED" and j, 20, "crash-1 COMPLETED")

    assert final["counts"] == {"SUCCEEDED": 3}, final
    for ex in final["executions"]:
        assert ex["attempt"] == 1, ex  # never timed out or failed, so never queued again
        assert ex["status_details"]["version"] == "1.0.0", ex
    for robot in ROBOTS:
        assert installed(tmp_path, robot)
        assert installs(tmp_path, robot) == 1, f"{robot} installed {installs(tmp_path, robot)} times"
    print(f"\njobs_service down {down_1:.1f} s (canary) and {down_2:.1f} s (rest stage); all 3 SUCCEEDED once")
