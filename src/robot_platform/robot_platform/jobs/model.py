"""Jobs and job executions as plain data, and the validation of a job creation request.

A job is a document (opaque to the server: the device decides whether it can run it) sent to a list of
targets (thing names = robot ids), with a rollout config (canary group, rate, abort criteria) and an
in-progress timeout. Each target gets one execution whose status follows AWS IoT Jobs
(:class:`~robot_platform.mqtt.jobs_protocol.ExecStatus`).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from robot_platform.jobs.errors import JobSpecError
from robot_platform.mqtt.jobs_protocol import JOB_ID_RE, THING_RE, ExecStatus

MAX_DOCUMENT_BYTES = 32 * 1024  # AWS IoT Jobs' limit on a job document
MAX_TARGETS = 10000


class JobStatus:
    """Job statuses (AWS: IN_PROGRESS, CANCELED, COMPLETED); an aborted rollout is CANCELED with
    ``reason_code`` ``ABORTED``, as AWS's abortConfig does."""

    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"


@dataclass(frozen=True)
class RolloutConfig:
    """Staged rollout, like IoT Jobs' jobExecutionsRolloutConfig + abortConfig.

    Attributes:
        canary: the first ``canary`` targets form the canary group: released at once; the rest wait
            until every canary execution SUCCEEDED. Any canary failure aborts the job.
        max_per_minute: release rate of the rest (the first at once, then one every 60/rate s).
        abort_failures: abort when this many executions failed (FAILED/REJECTED/TIMED_OUT); 0 = off.
        abort_failure_pct: abort when this percentage of the finished executions failed (0 = off),
            once ``abort_min_executed`` have finished.
    """

    canary: int = 1
    max_per_minute: int = 10
    abort_failures: int = 1
    abort_failure_pct: float = 0.0
    abort_min_executed: int = 1


MAX_RETRIES = 10  # AWS IoT Jobs' limit on numberOfRetries


@dataclass(frozen=True)
class RetryConfig:
    """Retries of failed executions, like IoT Jobs' jobExecutionsRetryConfig: an execution that ends
    FAILED (limit ``failed``) or TIMED_OUT (limit ``timed_out``) is queued again for the same robot with
    a new ``executionNumber`` while its retries so far (of any kind) are fewer than that kind's limit.
    REJECTED is never retried (the device said it cannot run the document). A retried execution does
    not count toward the abort criteria until its retries are used up."""

    failed: int = 0
    timed_out: int = 0

    def allows(self, status: ExecStatus, attempts_done: int) -> bool:  # attempts_done: Execution.attempt
        """Whether an execution that ended with ``status`` after ``attempts_done`` attempts runs again."""
        limit = self.failed if status == ExecStatus.FAILED else self.timed_out if status == ExecStatus.TIMED_OUT else 0
        return attempts_done - 1 < limit


@dataclass(frozen=True)
class JobSpec:
    """A validated job creation request."""

    job_id: str
    document: dict[str, Any]
    targets: tuple[str, ...]
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    timeout_s: float = 600.0  # in-progress timeout of each execution (AWS inProgressTimeoutInMinutes)
    description: str = ""
    retry: RetryConfig = field(default_factory=RetryConfig)


@dataclass
class Job:
    spec: JobSpec
    status: str = JobStatus.IN_PROGRESS
    reason_code: str = ""
    reason: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    completed_at: float | None = None
    rest_started_at: float | None = None  # when the canary group finished and the rest began

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "job_id": spec.job_id,
            "document": spec.document,
            "targets": list(spec.targets),
            "rollout": asdict(spec.rollout),
            "timeout_s": spec.timeout_s,
            "description": spec.description,
            "retry": asdict(spec.retry),
            "status": self.status,
            "reason_code": self.reason_code,
            "reason": self.reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "completed_at": self.completed_at,
            "rest_started_at": self.rest_started_at,
        }


@dataclass
class Execution:
    job_id: str
    thing: str
    status: ExecStatus
    canary: bool = False
    status_details: dict[str, str] = field(default_factory=dict)
    queued_at: float | None = None  # released to the device (None while SCHEDULED)
    started_at: float | None = None
    last_updated_at: float = 0.0
    version: int = 1
    execution_number: int = 1
    reason: str = ""  # server-side reason (timed out, canceled by abort...)
    attempt: int = 1  # 1 + retries used (RetryConfig)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    def summary(self) -> dict[str, Any]:
        """AWS ``JobExecutionSummary``."""
        body: dict[str, Any] = {
            "jobId": self.job_id,
            "queuedAt": int(self.queued_at or 0),
            "lastUpdatedAt": int(self.last_updated_at),
            "versionNumber": self.version,
            "executionNumber": self.execution_number,
        }
        if self.started_at is not None:
            body["startedAt"] = int(self.started_at)
        return body

    def data(self, document: dict[str, Any] | None) -> dict[str, Any]:
        """AWS ``JobExecutionData`` (with the job document when given)."""
        body = {**self.summary(), "thingName": self.thing, "status": self.status.value}
        if self.status_details:
            body["statusDetails"] = dict(self.status_details)
        if document is not None:
            body["jobDocument"] = document
        return body

    def state(self) -> dict[str, Any]:
        """AWS ``JobExecutionState``."""
        return {"status": self.status.value, "statusDetails": dict(self.status_details), "versionNumber": self.version}


def _int(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise JobSpecError(f"rollout.{key}", f"must be an integer in {low}..{high}")
    return value


def parse_rollout(body: Any) -> RolloutConfig:
    if body is None:
        return RolloutConfig()
    if not isinstance(body, dict):
        raise JobSpecError("rollout", "must be an object")
    unknown = set(body) - set(RolloutConfig.__dataclass_fields__)
    if unknown:
        raise JobSpecError("rollout", f"unknown keys {sorted(unknown)}")
    pct = body.get("abort_failure_pct", 0.0)
    if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 <= pct <= 100:
        raise JobSpecError("rollout.abort_failure_pct", "must be a number in 0..100")
    return RolloutConfig(
        canary=_int(body, "canary", 1, 0, MAX_TARGETS),
        max_per_minute=_int(body, "max_per_minute", 10, 1, 1000),
        abort_failures=_int(body, "abort_failures", 1, 0, MAX_TARGETS),
        abort_failure_pct=float(pct),
        abort_min_executed=_int(body, "abort_min_executed", 1, 1, MAX_TARGETS),
    )


def parse_retry(body: Any) -> RetryConfig:
    if body is None:
        return RetryConfig()
    if not isinstance(body, dict):
        raise JobSpecError("retry", "must be an object like {\"failed\": 2, \"timed_out\": 1}")
    unknown = set(body) - set(RetryConfig.__dataclass_fields__)
    if unknown:
        raise JobSpecError("retry", f"unknown keys {sorted(unknown)}")
    out = {}
    for key in RetryConfig.__dataclass_fields__:
        value = body.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
            raise JobSpecError(f"retry.{key}", f"must be an integer in 0..{MAX_RETRIES}")
        out[key] = value
    return RetryConfig(**out)


def parse_job_spec(body: Any) -> JobSpec:
    """Validate a creation request ``{job_id?, document, targets, rollout?, timeout_s?, description?, retry?}``."""
    if not isinstance(body, dict):
        raise JobSpecError("", "the request must be an object")
    job_id = body.get("job_id") or f"job-{uuid.uuid4().hex[:12]}"
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
        raise JobSpecError("job_id", f"must match {JOB_ID_RE.pattern}")
    document = body.get("document")
    if not isinstance(document, dict):
        raise JobSpecError("document", "must be a JSON object")
    if len(json.dumps(document)) > MAX_DOCUMENT_BYTES:
        raise JobSpecError("document", f"larger than {MAX_DOCUMENT_BYTES} bytes")
    targets = body.get("targets")
    if not isinstance(targets, list) or not targets or len(targets) > MAX_TARGETS:
        raise JobSpecError("targets", f"must be a non-empty list of at most {MAX_TARGETS} thing names")
    for thing in targets:
        if not isinstance(thing, str) or not THING_RE.match(thing):
            raise JobSpecError("targets", f"invalid thing name {str(thing)[:80]!r} (must match {THING_RE.pattern})")
    if len(set(targets)) != len(targets):
        raise JobSpecError("targets", "lists a thing more than once")
    timeout = body.get("timeout_s", 600.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 1 <= timeout <= 7 * 24 * 3600:
        raise JobSpecError("timeout_s", "must be a number of seconds in 1..604800")
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 2000:
        raise JobSpecError("description", "must be a string of at most 2000 characters")
    unknown = set(body) - {"job_id", "document", "targets", "rollout", "timeout_s", "description", "retry"}
    if unknown:
        raise JobSpecError("", f"unknown keys {sorted(unknown)}")
    return JobSpec(job_id, document, tuple(targets), parse_rollout(body.get("rollout")), float(timeout), description,
                   parse_retry(body.get("retry")))  # fmt: skip
