#!/usr/bin/env python3
"""Alerts raised while the real demo boots: `bin/robot-platform demo --robots N`, first ``--seconds`` s.

Issue 15's promise "boot of ROBOTS=6: 0 alerts in the first 60 s", measured on the demo a user starts
(control server, NATS hub and leafs, SeaweedFS, Mosquitto, Prometheus, N simulated robots with their
health_monitor_tree), not on a bench-built fleet (bench/alert_trust.py measures that one). Every port
and the ROS domains are picked free, so it runs beside other work; the demo is stopped with SIGTERM.

Counted from each robot's health metrics endpoint (``robot_health_faults_raised_total``: every raise of
every check, FLAPPING and silenced ones included, so nothing escapes the count), read at the end of the
window; also when the demo printed its banner.

    . scripts/env.sh && PYTHONPATH=src/robot_platform python bench/demo_boot_alerts.py --robots 6
    ... python bench/demo_boot_alerts.py --smoke     # 1 robot, no deployments, no Prometheus

A health endpoint not up at the end of the window is waited for (``--up-timeout``; the window reported
is then longer): the smoke run's window is 5 s, so it takes as long as one robot's demo takes to boot
(~10 s on an idle machine, 20-30 s on a busy one).

Exit 1 when a robot's health endpoint never answered (the path delivers nothing) or the demo died.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src" / "robot_platform"), str(REPO / "test")]
from helpers import free_demo_base  # noqa: E402
from robot_platform.launcher.domains import DomainReservation  # noqa: E402

# The demo's one-port options, each given a port of the block free_demo_base reserves.
SINGLE_PORTS = (
    "--hub-port", "--hub-monitor-port", "--leaf-port", "--console-port", "--control-bridge-metrics-port",
    "--jobs-metrics-port", "--mqtt-port", "--s3-port", "--prometheus-port",
)  # fmt: skip


def raised_by_robot(metrics_base: int, robots: int) -> dict[str, dict[str, float] | None]:
    """robot -> {code: raises} from its health endpoint (None: not answering)."""
    out: dict[str, dict[str, float] | None] = {}
    for i in range(1, robots + 1):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_base + i}/metrics", timeout=3) as r:
                text = r.read().decode()
        except OSError:
            out[f"r{i}"] = None
            continue
        codes: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "robot_health_faults_raised_total" and s.value > 0:
                    codes[s.labels["code"]] = codes.get(s.labels["code"], 0) + s.value
        out[f"r{i}"] = codes
    return out


def banner_after(out: Path, t0: float) -> float | None:
    """Seconds since ``t0`` if the demo's banner ("all up") is out by now."""
    return time.monotonic() - t0 if "all up" in out.read_text(errors="replace") else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--robots", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=60.0, help="the boot window, from the demo's start")
    ap.add_argument("--up-timeout", type=float, default=90.0, help="wait this long for a late health endpoint")
    ap.add_argument("--smoke", action="store_true", help="1 robot without deployments and Prometheus, 5 s")
    args = ap.parse_args()
    if args.smoke:
        args.robots, args.seconds = 1, 5.0
    n = args.robots
    domains = DomainReservation(count=n + 1)
    base = free_demo_base(n, singles=len(SINGLE_PORTS))  # below the ephemeral range (test/helpers.py)
    options: dict[str, int] = {flag: base + 600 + j for j, flag in enumerate(SINGLE_PORTS)}
    options.update({
        "--robot-port-base": base, "--robot-monitor-base": base + 100, "--metrics-base": base + 200,
        "--bridge-metrics-base": base + 300, "--panel-port-base": base + 400, "--weed-port-base": base + 500,
        "--domain-base": domains.domain_id,
    })  # fmt: skip
    if args.smoke:
        options["--prometheus-port"] = 0
    state = Path(tempfile.mkdtemp(prefix="demo_boot_alerts_"))
    argv = [str(REPO / "bin" / "robot-platform"), "demo", "--robots", str(n), "--state-dir", str(state / "demo")]
    argv += [str(x) for kv in options.items() for x in kv] + (["--no-deployments"] if args.smoke else [])
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    env.pop("RP_ENV_ROOT", None)  # bin/robot-platform loads this worktree's environment itself
    load = os.getloadavg()[0]
    print(f"demo_boot_alerts: demo --robots {n}, window {args.seconds:g} s, load {load:.1f}, state in {state}")
    out = (state / "demo.out").open("w")
    t0 = time.monotonic()
    demo = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
    banner_s = None
    try:
        while time.monotonic() - t0 < args.seconds and demo.poll() is None:
            banner_s = banner_s or banner_after(state / "demo.out", t0)
            time.sleep(0.25)
        counts = raised_by_robot(options["--metrics-base"], n)
        while (
            None in counts.values() and time.monotonic() - t0 < args.seconds + args.up_timeout and demo.poll() is None
        ):
            time.sleep(0.5)
            counts = raised_by_robot(options["--metrics-base"], n)
        window = time.monotonic() - t0
        banner_s = banner_s or banner_after(state / "demo.out", t0)
        died = demo.poll()
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
                demo.wait(timeout=10)
        out.close()
        domains.release()
    silent = sorted(r for r, c in counts.items() if c is None)
    alerts = {r: c for r, c in counts.items() if c}
    total = sum(sum(c.values()) for c in alerts.values())
    banner = "not printed" if banner_s is None else f"after {banner_s:.1f} s"
    print(f"boot      {n} robots: banner {banner}; alerts raised in the first {window:.0f} s: {total:g} {alerts}")
    print(f"          load {os.getloadavg()[0]:.1f} at the end; demo exit {demo.returncode} (SIGTERM)")
    if died is not None or silent:
        tail = (state / "demo.out").read_text(errors="replace")[-2000:]
        print(f"FAILED: demo exited early ({died})" if died is not None else f"FAILED: no health metrics from {silent}")
        print(tail)
        return 1
    shutil.rmtree(state, ignore_errors=True)  # its logs and JetStream/SeaweedFS data: kept only on failure
    return 0


if __name__ == "__main__":
    sys.exit(main())
