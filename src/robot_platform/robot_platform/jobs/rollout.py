"""Staged rollout decisions: which executions to release now, whether to abort, whether the job is done.

Pure functions over a job and its executions at time ``now`` (no I/O, no clock), so every rule is unit
tested with made-up times. The service applies the decision in one store transaction.

Rules (IoT Jobs' rollout + abort configs, with a canary stage in front):
1. Abort first: any failed canary; or ``abort_failures`` failures; or ``abort_failure_pct`` of the
   finished executions failed once ``abort_min_executed`` finished. Aborting cancels every execution
   not yet started (SCHEDULED or QUEUED); IN_PROGRESS ones finish and still report.
2. Canary stage: the canary executions are released at creation; the rest wait until all of them
   SUCCEEDED.
3. The rest are released in target order at ``max_per_minute``: one at once, then one per 60/rate s.
4. The job is COMPLETED when every execution is terminal (checked first: a job with nothing left to
   stop is not aborted, its failures show in the execution counts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from robot_platform.jobs.model import Execution, Job, JobStatus
from robot_platform.mqtt.jobs_protocol import ExecStatus


@dataclass(frozen=True)
class RolloutDecision:
    release: tuple[str, ...] = ()  # things whose execution goes SCHEDULED -> QUEUED now
    abort_reason: str = ""
    start_rest: bool = False  # the canary stage just ended
    complete: bool = False
    next_check_s: float | None = None  # when the next release is due (None: on the next event)
    counts: dict[str, int] = field(default_factory=dict)


def counts(executions: Sequence[Execution]) -> dict[str, int]:
    out: dict[str, int] = {}
    for ex in executions:
        out[ex.status.value] = out.get(ex.status.value, 0) + 1
    return out


def abort_reason(job: Job, executions: Sequence[Execution]) -> str:
    """Why the rollout must stop now, or ``""``."""
    config = job.spec.rollout
    failed = [ex for ex in executions if ex.status.failure]
    for ex in failed:
        if ex.canary:
            detail = ex.status_details.get("reason") or ex.reason
            return f"canary {ex.thing} {ex.status.value}" + (f": {detail}" if detail else "")
    if config.abort_failures and len(failed) >= config.abort_failures:
        return f"{len(failed)} executions failed (abort_failures={config.abort_failures})"
    finished = [ex for ex in executions if ex.status.terminal and ex.status not in (ExecStatus.CANCELED,)]
    if config.abort_failure_pct and len(finished) >= config.abort_min_executed:
        pct = 100.0 * len(failed) / len(finished)
        if pct >= config.abort_failure_pct:
            limit = config.abort_failure_pct
            return f"{pct:.0f}% of {len(finished)} finished executions failed (abort_failure_pct={limit:g})"
    return ""


def decide(job: Job, executions: Sequence[Execution], now: float) -> RolloutDecision:
    """The next rollout step for ``job`` (see the module docstring)."""
    tally = counts(executions)
    if job.status != JobStatus.IN_PROGRESS:
        return RolloutDecision(counts=tally)
    if executions and all(ex.status.terminal for ex in executions):
        return RolloutDecision(complete=True, counts=tally)  # nothing left to stop: done, whatever failed
    reason = abort_reason(job, executions)
    if reason:
        return RolloutDecision(abort_reason=reason, counts=tally)
    canary = [ex for ex in executions if ex.canary]
    if any(ex.status != ExecStatus.SUCCEEDED for ex in canary):
        return RolloutDecision(counts=tally)  # canary stage still running
    start_rest = job.rest_started_at is None
    rest_started = now if start_rest else float(job.rest_started_at or now)
    rest = [ex for ex in executions if not ex.canary]
    scheduled = [ex for ex in rest if ex.status == ExecStatus.SCHEDULED]
    if not scheduled:
        return RolloutDecision(start_rest=start_rest, counts=tally)
    rate = job.spec.rollout.max_per_minute
    allowed = 1 + math.floor(max(0.0, now - rest_started) * rate / 60.0)
    released = len(rest) - len(scheduled)
    n = max(0, min(len(scheduled), allowed - released))
    order = {thing: i for i, thing in enumerate(job.spec.targets)}
    scheduled.sort(key=lambda ex: order.get(ex.thing, 0))
    remaining = len(scheduled) - n
    next_check = None
    if remaining:
        next_due = rest_started + (released + n) * 60.0 / rate
        next_check = max(0.0, next_due - now)
    return RolloutDecision(
        release=tuple(ex.thing for ex in scheduled[:n]),
        start_rest=start_rest,
        next_check_s=next_check,
        counts=tally,
    )
