"""What the operator CLI prints: tables by default, a rollback job without hand-written JSON, and the
packages each robot runs in `robot-platform robots`."""

from __future__ import annotations

import os
import time
from pathlib import Path

from robot_platform.cli import jobs_format
from robot_platform.cli.jobs import create_body
from robot_platform.cli.main import build_parser
from robot_platform.ops.registry import Announcement, Registry, deployed_versions, format_table

JOB = {
    "job_id": "j1", "status": "COMPLETED", "created_at": 1_800_000_000.0, "targets": ["r1", "r2"],
    "document": {"operation": "deploy", "package_name": "hello_app", "version": "1.0.0"},
    "counts": {"SUCCEEDED": 2},
    "executions": [
        {"thing": "r2", "status": "SUCCEEDED", "canary": False, "attempt": 1,
         "status_details": {"step": "health_check", "progress": "100", "version": "1.0.0"}},
        {"thing": "r1", "status": "SUCCEEDED", "canary": True, "attempt": 1, "status_details": {}},
    ],
}  # fmt: skip


def test_deploy_rollback_builds_a_rollback_job() -> None:
    args = build_parser().parse_args(["deploy", "rollback", "--package", "hello_app", "--targets", "r1,r2"])
    body = create_body(args)
    assert body["document"] == {"operation": "rollback", "package_name": "hello_app", "to_version": ""}
    assert body["targets"] == ["r1", "r2"] and body["rollout"]["canary"] == 1
    args = build_parser().parse_args(["deploy", "rollback", "--package", "p", "--to-version", "1.0.0",
                                      "--targets", "r1", "--json"])  # fmt: skip
    assert create_body(args)["document"]["to_version"] == "1.0.0" and args.json


def test_job_status_is_a_table_one_row_per_robot() -> None:
    lines = jobs_format.format_job(JOB).splitlines()
    assert lines[0].startswith("job j1: COMPLETED  deploy hello_app 1.0.0") and "SUCCEEDED=2" in lines[0]
    assert lines[1].split()[:3] == ["ROBOT", "STATUS", "STEP"]
    assert lines[2].startswith("r1 (canary)") and lines[3].split()[:4] == ["r2", "SUCCEEDED", "health_check", "100"]
    assert len(lines) == 4


def test_job_list_is_a_table() -> None:
    listed = {k: v for k, v in JOB.items() if k not in ("executions", "document")}
    lines = jobs_format.format_jobs([listed]).splitlines()
    assert lines[0].split()[:2] == ["JOB", "STATUS"] and lines[1].split()[:2] == ["j1", "COMPLETED"]
    assert jobs_format.format_jobs([]) == "no jobs"


def test_robots_table_shows_the_packages_each_robot_runs(tmp_path: Path) -> None:
    (tmp_path / "hello_app" / "versions" / "1.1.0").mkdir(parents=True)
    os.symlink("versions/1.1.0", tmp_path / "hello_app" / "current")
    (tmp_path / "not_active").mkdir()
    assert deployed_versions(tmp_path) == {"hello_app": "1.1.0"}
    assert deployed_versions(tmp_path / "missing") == {}

    registry = Registry(15.0, ["r1"])
    registry.apply(Announcement(robot_id="r1", site="demo", software_version="0.1.0",
                                packages={"nats-py": "2.9.0"} | deployed_versions(tmp_path), host="h",
                                uptime_s=5.0, capabilities=("sim",), ssh_port=0, sent_at=time.time()))  # fmt: skip
    header, row = format_table(list(registry.records.values()), time.time(), 15.0).splitlines()
    assert header.split()[-1] == "PACKAGES"
    assert row.split()[-1] == "hello_app=1.1.0,nats-py=2.9.0"


def test_package_keygen_creates_its_directory(tmp_path: Path) -> None:
    """README: `robot-platform package keygen keys/site.pem` in a tree without keys/ yet."""
    from robot_platform.cli.deploy import keygen

    out = keygen(tmp_path / "keys" / "site.pem")
    assert Path(out["private_key"]).stat().st_mode & 0o077 == 0
    assert (tmp_path / "keys").stat().st_mode & 0o077 == 0 and out["trusted_key"].startswith("ed25519:")


def test_cli_start_up_imports_only_what_the_command_needs() -> None:
    """`robot-platform --help`, `robots`, `deploy`... must not pay for boto3/awscrt/rclpy (over a second
    of start-up together, measured with farm-bench): only the chosen command's module is imported."""
    import subprocess
    import sys

    heavy = ("boto3", "botocore", "awscrt", "rclpy")
    for argv in (["topics", "--help"], ["robots", "--help"], ["deploy", "list", "--help"], ["--help"]):
        probe = (f"import atexit, sys\n"
                 f"atexit.register(lambda: print('loaded:', *[m for m in {heavy!r} if m in sys.modules]))\n"
                 f"from robot_platform.cli.main import main\nmain({argv!r})")  # fmt: skip
        run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        loaded = next(line for line in run.stdout.splitlines() if line.startswith("loaded:"))
        assert loaded == "loaded:", (argv, loaded)
