#!/usr/bin/env python3
"""Deployment benchmark: request -> running for a 1 MB and a 50 MB app package, and rollback time.

Runs the real engine path (S3 download from a real SeaweedFS with boto3, sha256 + Ed25519 verify, safe
extract, install, atomic switch, app start, health check) without ROS: the ROS service call adds a few
milliseconds on top (see test/test_deploy_system.py, which prints the full ROS path for a small package).
Package payload is random data (incompressible), so archive size ~= payload size.

    . scripts/env.sh && PYTHONPATH=src/robot_platform python bench/deploy.py [--repeat 3] [--sizes 1,50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import yaml

# The SeaweedFS launcher lives with the system-test fixtures; reuse it rather than duplicate it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "test"))
from fixtures_s3 import SeaweedFS
from robot_platform.deploy.engine import DeployEngine, EngineConfig
from robot_platform.deploy.fetch import S3Config, S3Fetcher
from robot_platform.deploy.jobs import DeployRequest, State
from robot_platform.deploy.package import (
    TrustStore,
    build_archive,
    generate_private_key_pem,
    load_private_key,
    sign_archive,
)
from robot_platform.deploy.safe_extract import ExtractLimits
from robot_platform.deploy.store import PackageStore

BUCKET = "packages"


def app_source(root: Path, version: str, payload_mb: int) -> Path:
    src = root / f"app-{payload_mb}-{version}"
    src.mkdir(parents=True)
    (src / "manifest.yaml").write_text(
        yaml.safe_dump(
            {
                "name": f"bench_app_{payload_mb}mb",
                "version": version,
                "kind": "app",
                "runtime": "python3",
                "run": ["python3", "app.py"],
                "timeout_s": 20,
                "health_check": {
                    "command": ["python3", "-c", "import os,sys; sys.exit(0 if os.path.exists('ready') else 1)"],
                    "interval_s": 0.05,
                },
            }
        )
    )
    (src / "app.py").write_text(
        textwrap.dedent("""
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        open("ready", "w").write("1")
        while True:
            time.sleep(1)
        """)
    )
    with open(src / "payload.bin", "wb") as stream:
        for _ in range(payload_mb):
            stream.write(os.urandom(1024 * 1024))
    return src


class Waiter:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.final: dict[str, State] = {}

    def __call__(self, status) -> None:  # type: ignore[no-untyped-def]
        if status.state.final:
            with self.cond:
                self.final[status.job_id] = status.state
                self.cond.notify_all()

    def wait(self, job_id: str, timeout: float = 300.0) -> State:
        with self.cond:
            assert self.cond.wait_for(lambda: job_id in self.final, timeout), f"{job_id} did not finish"
            return self.final[job_id]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="1,50", help="payload sizes in MB, comma separated")
    parser.add_argument("--smoke", action="store_true", help="one 1 MB app deployed twice and rolled back (make test)")
    args = parser.parse_args()
    if args.smoke:
        args.repeat, args.sizes = 2, "1"
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp_name, SeaweedFS(Path(tmp_name) / "s3") as s3:
        tmp = Path(tmp_name)
        s3.create_bucket(BUCKET)
        pem = generate_private_key_pem()
        trust = TrustStore([load_private_key(pem).public_key()])
        config = S3Config(endpoint_url=s3.endpoint_url, access_key_id=s3.access_key, secret_access_key=s3.secret_key)
        fetcher = S3Fetcher(config)
        waiter = Waiter()
        engine = DeployEngine(
            EngineConfig(
                robot_id="bench",
                default_bucket=BUCKET,
                max_archive_bytes=512 * 1024 * 1024,
                extract_limits=ExtractLimits(max_total_bytes=1024 * 1024 * 1024),
            ),
            PackageStore(tmp / "robot", keep_versions=args.repeat + 1),
            fetcher,
            trust,
            waiter,
        )
        engine.start()
        try:
            print(f"{'package':>10} {'deploy s (median/min/max)':>28} {'rollback s (median)':>20}")
            for size in sizes:
                deploys, rollbacks = [], []
                for i in range(args.repeat):
                    archive, manifest = build_archive(app_source(tmp / "src", f"1.0.{i}", size), tmp / "dist")
                    signed = sign_archive(archive, pem)
                    uri = f"s3://{BUCKET}/{manifest.name}/{archive.name}"
                    fetcher.upload(archive, uri)
                    request = DeployRequest(
                        f"{manifest.name}-{i}",
                        manifest.name,
                        manifest.version,
                        uri,
                        signed.sha256,
                        signed.signature,
                        "app",
                    )
                    started = time.perf_counter()
                    engine.submit(request)
                    state = waiter.wait(request.job_id)
                    deploys.append(time.perf_counter() - started)
                    assert state == State.SUCCEEDED, state
                    if i > 0:
                        started = time.perf_counter()
                        result = engine.rollback(manifest.name)
                        rollbacks.append(time.perf_counter() - started)
                        assert result.success, result.message
                        engine.rollback(manifest.name, manifest.version)  # back to the newest for the next round
                label = f"{size} MB"
                rb = f"{statistics.median(rollbacks):.2f}" if rollbacks else "-"
                print(
                    f"{label:>10} {statistics.median(deploys):>12.2f} / {min(deploys):.2f} / {max(deploys):.2f}{rb:>20}"
                )
        finally:
            engine.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
