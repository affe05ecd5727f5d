"""Applies what the rollout rules decide (:mod:`.rollout`) to the store: releases, completion, aborts,
cancellations and retries of executions.

Every method runs inside the caller's store transaction and under the service's lock; the messages and
events it produces wait in the :class:`~.outbox.JobsOutbox` until the transaction commits.
"""

from __future__ import annotations

import collections
import logging

from robot_platform.jobs.model import Execution, Job, JobStatus
from robot_platform.jobs.mqtt_outbox import JobsOutbox
from robot_platform.jobs.rollout import decide
from robot_platform.jobs.store import JobStore
from robot_platform.mqtt.jobs_protocol import ExecStatus

log = logging.getLogger(__name__)

NOT_STARTED = (ExecStatus.SCHEDULED, ExecStatus.QUEUED)


class RolloutDriver:
    """Moves jobs and executions along their rollout; see the module docstring."""

    def __init__(self, store: JobStore, outbox: JobsOutbox, counters: collections.Counter[str]) -> None:
        self.store = store
        self.outbox = outbox
        self.counters = counters

    def advance(self, job_id: str, now: float) -> float | None:
        """Apply the rollout decision for one job; returns when the next release is due (or None)."""
        job = self.store.job(job_id)
        if job is None:
            return None
        executions = self.store.executions(job_id)
        decision = decide(job, executions, now)
        if decision.abort_reason:
            self.counters["jobs_aborted"] += 1
            log.warning("job %s aborted: %s", job_id, decision.abort_reason)
            self.stop(job, "ABORTED", decision.abort_reason, now)
            return None
        changed = False
        if decision.start_rest:
            job.rest_started_at = now
            changed = True
        by_thing = {ex.thing: ex for ex in executions}
        for thing in decision.release:
            ex = by_thing[thing]
            ex.status = ExecStatus.QUEUED
            ex.queued_at = now
            ex.last_updated_at = now
            self.store.save_execution(ex)
            self.outbox.event_execution(ex)
            self.outbox.notify(thing)
        if decision.complete:
            job.status = JobStatus.COMPLETED
            job.completed_at = now
            changed = True
            self.outbox.event_job(job, "completed")
        if changed:
            job.updated_at = now
            self.store.save_job(job)
        return decision.next_check_s

    def stop(self, job: Job, code: str, reason: str, now: float) -> None:
        """Cancel a job: its not-started executions become CANCELED (they will never run)."""
        job.status = JobStatus.CANCELED
        job.reason_code = code
        job.reason = reason
        job.updated_at = now
        job.completed_at = now
        self.store.save_job(job)
        for ex in self.store.executions(job.spec.job_id):
            if ex.status in NOT_STARTED:
                was_visible = ex.status == ExecStatus.QUEUED
                ex.status = ExecStatus.CANCELED
                ex.reason = f"{code.lower()}: {reason}"
                ex.last_updated_at = now
                ex.version += 1
                self.store.save_execution(ex)
                self.outbox.event_execution(ex)
                if was_visible:
                    self.outbox.notify(ex.thing)
        self.outbox.event_job(job, code.lower())

    def maybe_retry(self, ex: Execution, now: float) -> None:
        """Queue a FAILED / TIMED_OUT execution again if its job's retry config allows; the robot gets it
        through notify-next with the next executionNumber."""
        job = self.store.job(ex.job_id)
        if job is None or job.status != JobStatus.IN_PROGRESS:
            return
        if not job.spec.retry.allows(ex.status, ex.attempt):
            return
        ended, why = ex.status.value, ex.status_details.get("reason") or ex.reason
        ex.status = ExecStatus.QUEUED
        ex.attempt += 1
        ex.execution_number = self.store.next_execution_number()
        ex.version += 1
        ex.queued_at, ex.started_at, ex.last_updated_at = now, None, now
        ex.status_details = {}
        ex.reason = f"attempt {ex.attempt} after {ended}" + (f": {why}" if why else "")
        self.store.save_execution(ex)
        self.counters["executions_retried"] += 1
        log.warning("job %s on %s: %s", ex.job_id, ex.thing, ex.reason[:200])
        self.outbox.event_execution(ex)
