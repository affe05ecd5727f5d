"""``robot-platform deploy create|rollback|status|list|cancel``: fleet deployments through the jobs service.

    robot-platform package push dist/hello_fn-1.0.0.tar.gz ... > doc.json
    robot-platform deploy create --document doc.json --targets r1,r2,r3 --canary 1 --max-per-minute 10 \
        [--retry-failed 2 --retry-timed-out 1]
    robot-platform deploy rollback --package hello_fn [--to-version 1.0.0] --targets r1,r2,r3
    robot-platform deploy status <job_id>|latest [--wait 300]   # per-robot status, step, progress, reason
    robot-platform deploy list [--status IN_PROGRESS]
    robot-platform deploy cancel <job_id> [--reason "..."]

The document is what ``package push`` prints (``"operation": "deploy"`` is added when missing). Output is
a table (one row per job or per robot); ``--json`` prints the full documents. Exit status 0 on success, 1
on an error (the reason on stderr), 3 when ``--wait`` ends with a job that did not succeed everywhere.
Run through the main CLI: ``robot-platform deploy ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
from nats.errors import Error as NatsError

from robot_platform.cli import jobs_format
from robot_platform.jobs.errors import JobsError
from robot_platform.jobs.nats_api import SUBJECT_PREFIX
from robot_platform.messaging.connect import Credentials, connect_once

REQUEST_TIMEOUT_S = 10.0
WAIT_POLL_S = 1.0
LATEST = "latest"  # `deploy status latest`: the newest job
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


class ApiError(JobsError):
    """The jobs service answered with an error (or did not answer)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


async def _request(url: str, name: str, body: dict[str, Any], user: str = "", password: str = "") -> Any:
    try:
        nc = await connect_once(url, name="robot-platform-jobs", credentials=Credentials(user, password),
                                timeout=REQUEST_TIMEOUT_S)  # fmt: skip
    except (NatsError, OSError, TimeoutError) as exc:
        detail = str(exc) or f"no connection within {REQUEST_TIMEOUT_S:g} s"
        raise ApiError("Unavailable", f"cannot reach NATS at {url}: {detail}; is the control server up?") from exc
    try:
        msg = await nc.request(f"{SUBJECT_PREFIX}.{name}", msgpack.packb(body), timeout=REQUEST_TIMEOUT_S)
    except (NatsError, TimeoutError) as exc:
        raise ApiError("Unavailable", f"no answer from jobs_service on {SUBJECT_PREFIX}.{name}: {exc}") from exc
    finally:
        await nc.close()
    reply = msgpack.unpackb(msg.data, raw=False)
    if not reply.get("ok"):
        field = f" (field {reply['field']})" if reply.get("field") else ""
        raise ApiError(reply.get("code", "Error"), f"{reply.get('error', 'failed')}{field}")
    return reply["result"]


def request(url: str, name: str, body: dict[str, Any], user: str = "", password: str = "") -> Any:
    """One API call (``jobs.<name>``) as ``user`` (none: an open hub); raises :class:`ApiError`."""
    return asyncio.run(_request(url, name, body, user, password))


def load_document(path: str) -> dict[str, Any]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ApiError("InvalidJson", f"{path}: not JSON: {exc}") from exc
    if isinstance(document, dict) and "operation" not in document:
        document = {"operation": "deploy", **document}
    return document


def rollback_document(package: str, to_version: str) -> dict[str, Any]:
    """The job document of a fleet rollback (README: ``"to_version": ""`` = the previous version)."""
    return {"operation": "rollback", "package_name": package, "to_version": to_version}


def create_body(args: argparse.Namespace) -> dict[str, Any]:
    targets = [t for chunk in args.targets for t in chunk.split(",") if t]
    document = (rollback_document(args.package, args.to_version) if args.deploy_cmd == "rollback"
                else load_document(args.document))  # fmt: skip
    rollout = {
        "canary": args.canary,
        "max_per_minute": args.max_per_minute,
        "abort_failures": args.abort_failures,
        "abort_failure_pct": args.abort_failure_pct,
    }
    body: dict[str, Any] = {
        "document": document,
        "targets": targets,
        "rollout": rollout,
        "timeout_s": args.timeout_s,
        "description": args.description,
    }
    if args.retry_failed or args.retry_timed_out:
        body["retry"] = {"failed": args.retry_failed, "timed_out": args.retry_timed_out}
    if args.job_id:
        body["job_id"] = args.job_id
    return body


def latest_job_id(url: str, user: str = "", password: str = "") -> str:
    """The newest job's id (``deploy status latest``: follow what you just created without copying ids)."""
    jobs = request(url, "list", {"status": "", "limit": 1}, user, password)
    if not jobs:
        raise ApiError("NotFound", "no jobs yet: create one with `robot-platform deploy create`")
    return str(jobs[0]["job_id"])


def wait_done(url: str, job_id: str, timeout_s: float, user: str = "", password: str = "") -> dict[str, Any]:
    """Poll until the job is no longer IN_PROGRESS, or its executions are all terminal, or timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = request(url, "get", {"job_id": job_id}, user, password)
        pending = [e for e in job["executions"] if e["status"] in ("SCHEDULED", "QUEUED", "IN_PROGRESS")]
        if job["status"] != "IN_PROGRESS" and not [e for e in pending if e["status"] == "IN_PROGRESS"]:
            return job
        if time.monotonic() >= deadline:
            return job
        time.sleep(WAIT_POLL_S)


def _run(args: argparse.Namespace) -> int:
    code = 0
    try:
        password = Path(args.password_file).read_text(encoding="utf-8").strip() if args.password_file else ""
        hub = (args.nats_url, args.user, password)
        if args.deploy_cmd in ("create", "rollback"):
            result: Any = request(hub[0], "create", create_body(args), *hub[1:])
            text = jobs_format.format_created(result)
        elif args.deploy_cmd == "status":
            job_id = latest_job_id(*hub) if args.job_id == LATEST else args.job_id
            if args.wait:
                result = wait_done(hub[0], job_id, args.wait, *hub[1:])
                if result["status"] != "COMPLETED" or any(e["status"] != "SUCCEEDED" for e in result["executions"]):
                    code = 3
            else:
                result = request(hub[0], "get", {"job_id": job_id}, *hub[1:])
            text = jobs_format.format_job(result)
        elif args.deploy_cmd == "list":
            result = request(hub[0], "list", {"status": args.status, "limit": args.limit}, *hub[1:])
            text = jobs_format.format_jobs(result if isinstance(result, list) else result.get("jobs", []))
        else:
            result = request(hub[0], "cancel", {"job_id": args.job_id, "reason": args.reason}, *hub[1:])
            text = jobs_format.format_job(result) if isinstance(result, dict) and "job_id" in result else str(result)
    except (JobsError, OSError) as exc:
        sys.stderr.write(f"error: {getattr(exc, 'reason', exc)}\n")
        return 1
    sys.stdout.write((json.dumps(result, indent=2, default=str) if args.json else text) + "\n")
    return code


def _rollout_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--targets", action="append", required=True, help="robot ids, comma-separated (repeatable)")
    p.add_argument("--job-id", default="", help="job id (default: generated)")
    p.add_argument("--canary", type=int, default=1, help="first N targets deploy first; any failure aborts")
    p.add_argument("--max-per-minute", type=int, default=10, help="release rate of the other targets")
    p.add_argument("--abort-failures", type=int, default=1, help="abort after this many failures (0: off)")
    p.add_argument("--abort-failure-pct", type=float, default=0.0, help="abort at this failure percentage")
    p.add_argument("--timeout-s", type=float, default=600.0, help="in-progress timeout of each robot's execution")
    p.add_argument("--retry-failed", type=int, default=0, help="run a FAILED execution again up to N times (0-10)")
    p.add_argument("--retry-timed-out", type=int, default=0, help="run a TIMED_OUT execution again up to N times")
    p.add_argument("--description", default="")


def add_subparsers(subparsers: Any) -> None:
    """Add ``deploy create|status|list|cancel`` to the main CLI."""
    deploy = subparsers.add_parser("deploy", help="fleet deployments (AWS IoT Jobs) through jobs_service")
    deploy.add_argument(
        "--nats-url",
        default=os.environ.get("RP_NATS_URL", DEFAULT_NATS_URL),
        help=f"NATS of the control server (default $RP_NATS_URL, else {DEFAULT_NATS_URL})",
    )
    deploy.add_argument("--user", default=os.environ.get("RP_NATS_USER", ""),
                        help="NATS user on a secured hub (default $RP_NATS_USER)")  # fmt: skip
    deploy.add_argument("--password-file", default=os.environ.get("RP_NATS_PASSWORD_FILE", ""),
                        help="file holding that user's password (default $RP_NATS_PASSWORD_FILE)")  # fmt: skip
    sub = deploy.add_subparsers(dest="deploy_cmd", required=True)
    p = sub.add_parser("create", help="create a job: a package for a set of robots, with a staged rollout")
    p.add_argument("--document", required=True, help="job document JSON file ('-' = stdin), e.g. package push output")
    _rollout_options(p)
    p = sub.add_parser("rollback", help="roll a package back on a set of robots (a rollback job, staged like create)")
    p.add_argument("--package", required=True, help="package name, e.g. hello_app")
    p.add_argument("--to-version", default="", help="version to return to (default: the previous one)")
    _rollout_options(p)
    p = sub.add_parser("status", help="a job with every robot's status, step, progress and reason")
    p.add_argument("job_id", help=f"job id, or '{LATEST}' for the newest job")
    p.add_argument("--wait", type=float, default=0.0, help="wait up to this many seconds for the job to end")
    p = sub.add_parser("list", help="recent jobs with counts per status")
    p.add_argument("--status", default="", help="IN_PROGRESS, COMPLETED or CANCELED")
    p.add_argument("--limit", type=int, default=50)
    p = sub.add_parser("cancel", help="cancel a job: robots that did not start it never will")
    p.add_argument("job_id")
    p.add_argument("--reason", default="canceled by an operator")
    for command in sub.choices.values():
        command.add_argument("--json", action="store_true", help="print the full JSON documents instead of a table")
    deploy.set_defaults(func=_run)
