"""Human-readable output of ``robot-platform deploy``: one line per job or per robot.

Why: a job with its executions is ~200 lines of JSON; an operator wants who is where (status, step,
progress, reason) at a glance. ``--json`` keeps the full documents for scripts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart (the first row is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _what(document: dict[str, Any]) -> str:
    """``deploy hello_app 1.0.0`` / ``rollback hello_app (previous)``."""
    if not document:
        return "-"
    operation = str(document.get("operation", "deploy"))
    package = str(document.get("package_name") or document.get("package") or "?")
    if operation == "rollback":
        return f"rollback {package} {document.get('to_version') or '(previous)'}"
    return f"{operation} {package} {document.get('version', '')}".rstrip()


def _counts(counts: dict[str, int]) -> str:
    return " ".join(f"{status}={n}" for status, n in sorted(counts.items())) or "-"


def format_created(job: dict[str, Any]) -> str:
    return (f"job {job['job_id']} created: {_what(job.get('document', {}))} on {', '.join(job.get('targets', []))}\n"
            f"follow it with: robot-platform deploy status {job['job_id']} --wait 120")  # fmt: skip


def format_job(job: dict[str, Any]) -> str:
    """A job's summary line, then one row per robot."""
    head = [
        f"job {job['job_id']}: {job['status']}  {_what(job.get('document', {}))}  "
        f"created {_when(job.get('created_at'))}  {_counts(job.get('counts', {}))}",
    ]
    if job.get("reason"):
        head.append(f"reason: {job['reason']}")
    rows = [("ROBOT", "STATUS", "STEP", "PROGRESS", "VERSION", "ATTEMPT", "REASON")]
    for ex in sorted(job.get("executions", []), key=lambda e: e["thing"]):
        details = ex.get("status_details") or {}
        rows.append((
            ex["thing"] + (" (canary)" if ex.get("canary") else ""), str(ex["status"]), str(details.get("step", "")),
            str(details.get("progress", "")), str(details.get("version", "")), str(ex.get("attempt", 1)),
            str(details.get("reason") or ex.get("reason") or ""),
        ))  # fmt: skip
    return "\n".join(head) + ("\n" + table(rows) if len(rows) > 1 else "")


def format_jobs(jobs: list[dict[str, Any]]) -> str:
    if not jobs:
        return "no jobs"
    rows = [("JOB", "STATUS", "WHAT", "TARGETS", "EXECUTIONS", "CREATED")]
    for job in jobs:
        rows.append((
            str(job["job_id"]), str(job["status"]), _what(job.get("document", {})), ",".join(job.get("targets", [])),
            _counts(job.get("counts", {})), _when(job.get("created_at")),
        ))  # fmt: skip
    return table(rows)
