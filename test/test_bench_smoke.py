"""Every benchmark in bench/ runs in its smoke mode: a few seconds, tiny sizes, and a non-zero exit when
a path delivers nothing, so bench/RESULTS.md's commands cannot silently rot (frames.py once measured
0 fps on both ways while the frames system test passed).

Each script runs as RESULTS.md runs it (its own processes and servers on loopback, its own ROS domain);
the time of each is printed (``pytest -s``) and written to ``test-results/bench_smoke.txt``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from helpers import REPO

SMOKE_TIMEOUT_S = 240
RESULTS = REPO / "test-results" / "bench_smoke.txt"
SCRIPTS = sorted(p.name for p in (REPO / "bench").glob("*.py"))


def test_every_bench_script_has_a_smoke_mode() -> None:
    missing = [name for name in SCRIPTS if "--smoke" not in (REPO / "bench" / name).read_text(encoding="utf-8")]
    assert not missing, f"bench scripts without --smoke: {missing}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_smoke(script: str) -> None:
    # As RESULTS.md runs them: `. scripts/env.sh && PYTHONPATH=src/robot_platform python bench/<script>`
    # (that PYTHONPATH replaces env.sh's; frames.py's children once died of it, silently).
    env = dict(os.environ, PYTHONUNBUFFERED="1", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONPATH=str(REPO / "src" / "robot_platform"))  # fmt: skip
    started = time.monotonic()
    run = subprocess.run([sys.executable, str(REPO / "bench" / script), "--smoke"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)  # fmt: skip
    took = time.monotonic() - started
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as out:
        out.write(f"{time.strftime('%H:%M:%S')}  {took:6.1f} s  exit {run.returncode}  bench/{script} --smoke\n")
    print(f"\nbench/{script} --smoke: {took:.1f} s, exit {run.returncode}\n{run.stdout[-1500:]}")
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert " nan " not in run.stdout, run.stdout
