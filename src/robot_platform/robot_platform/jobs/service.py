"""The AWS IoT Jobs server role: jobs, executions, device requests, timeouts and staged rollouts.

Transport-free: :meth:`JobsService.handle` takes a device request (MQTT topic + payload) and the service
answers through ``publish(topic, payload)``; the console API (:meth:`create`, :meth:`get`, :meth:`list`,
:meth:`cancel`) returns plain dicts; every change is also reported through ``on_event(dict)``. The
owner calls :meth:`tick` about once a second (timeouts, rate-limited releases). A device never waits on
the console and vice versa: both are short transactions under one lock.

Messages are published only after the store transaction that caused them committed, so a device is
never told about an execution a crash could take back.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from robot_platform.jobs.errors import DuplicateJobError, JobsError, UnknownJobError
from robot_platform.jobs.model import Execution, Job, JobStatus, parse_job_spec
from robot_platform.jobs.rollout import counts, decide
from robot_platform.jobs.store import JobStore
from robot_platform.mqtt import jobs_protocol as p
from robot_platform.mqtt.errors import DeviceRequestError
from robot_platform.mqtt.jobs_protocol import ExecStatus

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]
EventSink = Callable[[dict[str, Any]], None]
NOT_STARTED = (ExecStatus.SCHEDULED, ExecStatus.QUEUED)
# After the service (re)starts or its broker link comes back, devices get this long (at most the job's own
# timeout) to report before an in-progress timeout is applied: an update sent while nobody was listening
# (the service was down) arrives only now, from the broker's session or the devices' re-sync.
RESYNC_GRACE_S = 30.0


class JobsService:
    """See the module docstring. Thread-safe."""

    def __init__(
        self,
        store: JobStore,
        publish: Publish,
        on_event: EventSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.publish = publish
        self.on_event = on_event or (lambda event: None)
        self.clock = clock
        self.counters: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._outbox: list[tuple[str, bytes]] = []
        self._events: list[dict[str, Any]] = []
        self._last_next: dict[str, str] = {}  # thing -> job id last announced on notify-next
        self._listening_since = clock()  # start of the current stretch of hearing from devices

    def lock_for_read(self) -> threading.Lock:
        """The service lock, for readers of :attr:`store` outside the service (metrics)."""
        return self._lock

    # ---- console API --------------------------------------------------------------------------------
    def create(self, body: Any) -> dict[str, Any]:
        """Create a job (validated; :class:`JobSpecError` / :class:`DuplicateJobError` otherwise)."""
        spec = parse_job_spec(body)
        with self._lock:
            if self.store.job(spec.job_id) is not None:
                raise DuplicateJobError(spec.job_id)
            now = self.clock()
            job = Job(spec, created_at=now, updated_at=now)
            executions = []
            for i, thing in enumerate(spec.targets):
                canary = i < spec.rollout.canary
                executions.append(
                    Execution(
                        spec.job_id,
                        thing,
                        ExecStatus.QUEUED if canary else ExecStatus.SCHEDULED,
                        canary=canary,
                        queued_at=now if canary else None,
                        last_updated_at=now,
                    )
                )
            self._discard()
            with self.store.transaction():
                self.store.insert_job(job, executions)
                self._event_job(job, "created")
                for ex in executions:
                    self._event_execution(ex)
                self._advance(spec.job_id, now)
            for ex in executions:
                if ex.canary:
                    self._notify(ex.thing)
            self._flush()
            self.counters["jobs_created"] += 1
            log.info("job %s created for %d targets (canary %d)", spec.job_id, len(spec.targets), spec.rollout.canary)
            return self._describe_job(spec.job_id)

    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            return self._describe_job(job_id)

    def list(self, status: str = "", limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            out = []
            for job in self.store.jobs(status, max(1, min(limit, 1000))):
                item = job.to_dict()
                item.pop("document")
                item["counts"] = counts(self.store.executions(job.spec.job_id))
                out.append(item)
            return out

    def cancel(self, job_id: str, reason: str = "canceled by an operator") -> dict[str, Any]:
        """Cancel a job: executions not started yet are CANCELED; running ones finish (AWS without force)."""
        with self._lock:
            job = self.store.job(job_id)
            if job is None:
                raise UnknownJobError(job_id)
            if job.status == JobStatus.IN_PROGRESS:
                with self.store.transaction():
                    self._stop(job, "USER_CANCELED", reason, self.clock())
                self._flush()
            return self._describe_job(job_id)

    def _describe_job(self, job_id: str) -> dict[str, Any]:
        job = self.store.job(job_id)
        if job is None:
            raise UnknownJobError(job_id)
        executions = self.store.executions(job_id)
        return {**job.to_dict(), "counts": counts(executions), "executions": [ex.to_dict() for ex in executions]}

    # ---- device requests ------------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes) -> None:
        """Answer one device request on its ``/accepted`` or ``/rejected`` topic; never raises for bad input."""
        try:
            request = p.parse_request_topic(topic)
        except DeviceRequestError as exc:
            self.counters["requests_invalid_topic"] += 1
            log.warning("ignored message on %s: %s", topic[:200], exc.reason)
            return
        token: str | None = None
        with self._lock:
            try:
                body = p.decode(payload)
                raw_token = body.get("clientToken")
                token = raw_token if isinstance(raw_token, str) else None
                with self.store.transaction():
                    reply = self._dispatch(request, body)
            except DeviceRequestError as exc:
                self._discard()  # the transaction was rolled back: nothing it produced may go out
                self.counters[f"requests_rejected_{exc.code}"] += 1
                log.info(
                    "%s %s from %s rejected: %s %s", request.op, request.job_id, request.thing, exc.code, exc.reason
                )
                self._outbox.append(
                    (
                        p.reply_topic(request, False),
                        p.encode(p.rejected_body(exc.code, exc.reason, token, self.clock(), exc.execution_state)),
                    )
                )
            except JobsError as exc:  # store failure: tell the device to retry, keep serving
                self._discard()
                self.counters["requests_failed"] += 1
                log.error("%s from %s failed: %s", request.op, request.thing, exc.reason)
                body = p.rejected_body("InternalError", exc.reason, token, self.clock())
                self._outbox.append((p.reply_topic(request, False), p.encode(body)))
            else:
                self.counters[f"requests_{request.op}"] += 1
                reply["timestamp"] = int(self.clock())
                if token is not None:
                    reply["clientToken"] = token
                self._outbox.insert(0, (p.reply_topic(request, True), p.encode(reply)))
            self._flush()

    def _dispatch(self, request: p.Request, body: dict[str, Any]) -> dict[str, Any]:
        thing = request.thing
        if request.op == "get":
            pending = self.store.pending(thing)
            return {
                "inProgressJobs": [ex.summary() for ex in pending if ex.status == ExecStatus.IN_PROGRESS],
                "queuedJobs": [ex.summary() for ex in pending if ex.status == ExecStatus.QUEUED],
            }
        if request.op == "start-next":
            return self._start_next(thing, body)
        if request.op == "describe":
            ex = self._visible(thing, request.job_id)
            include = body.get("includeJobDocument", True)
            return {"execution": ex.data(self._document(ex.job_id) if include is not False else None)}
        return self._update(thing, request.job_id, body)

    def _document(self, job_id: str) -> dict[str, Any]:
        job = self.store.job(job_id)
        return job.spec.document if job else {}

    def _visible(self, thing: str, job_id: str) -> Execution:
        """The execution as the device may see it (released executions only)."""
        if job_id == p.NEXT:
            pending = self.store.pending(thing)
            if not pending:
                raise DeviceRequestError("ResourceNotFound", f"no pending job execution for {thing}")
            return pending[0]
        ex = self.store.execution(job_id, thing)
        if ex is None or ex.status == ExecStatus.SCHEDULED:
            raise DeviceRequestError("ResourceNotFound", f"no execution of job {job_id} for {thing}")
        return ex

    def _start_next(self, thing: str, body: dict[str, Any]) -> dict[str, Any]:
        details = p.check_status_details(body.get("statusDetails")) if "statusDetails" in body else None
        pending = self.store.pending(thing)
        if not pending:
            return {}
        ex = pending[0]
        if ex.status == ExecStatus.QUEUED:
            now = self.clock()
            ex.status = ExecStatus.IN_PROGRESS
            ex.started_at = now
            ex.last_updated_at = now
            ex.version += 1
            if details is not None:
                ex.status_details = details
            self.store.save_execution(ex)
            self._event_execution(ex)
        return {"execution": ex.data(self._document(ex.job_id))}

    def _update(self, thing: str, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        raw_status = body.get("status")
        try:
            status = ExecStatus(raw_status)
        except ValueError:
            status = None
        if status not in p.DEVICE_SETTABLE:
            raise DeviceRequestError(
                "InvalidRequest", f"status must be one of {[s.value for s in p.DEVICE_SETTABLE]}, got {raw_status!r}"
            )
        details = p.check_status_details(body.get("statusDetails")) if "statusDetails" in body else None
        ex = self._visible(thing, job_id)
        expected = body.get("expectedVersion")
        if expected is not None and expected != ex.version:
            raise DeviceRequestError("VersionMismatch", f"expected version {expected}, is {ex.version}", ex.state())
        number = body.get("executionNumber")
        if number is not None and number != ex.execution_number:
            raise DeviceRequestError("ResourceNotFound", f"no execution number {number} of job {job_id} for {thing}")
        if ex.status.terminal:
            raise DeviceRequestError(
                "InvalidStateTransition", f"execution is {ex.status.value} (terminal); it cannot change", ex.state()
            )
        now = self.clock()
        if ex.started_at is None:
            ex.started_at = now
        ex.status = status
        if details is not None:
            ex.status_details = details
        ex.last_updated_at = now
        ex.version += 1
        self.store.save_execution(ex)
        self._event_execution(ex)
        if status.terminal:
            self._maybe_retry(ex, now)
            self._advance(job_id, now)
            self._notify(thing)
        reply: dict[str, Any] = {}
        if body.get("includeJobExecutionState"):
            reply["executionState"] = ex.state()
        if body.get("includeJobDocument"):
            reply["jobDocument"] = self._document(job_id)
        return reply

    # ---- time-driven work ---------------------------------------------------------------------------
    def tick(self, devices_online: bool = True) -> float | None:
        """Time out executions and release rate-limited ones; returns seconds until the next release due.

        ``devices_online`` False (the broker link is down) holds timeouts: a device's final update may be
        waiting in the broker, and timing it out would make a retry run the deployment twice.
        """
        with self._lock:
            now = self.clock()
            next_due: float | None = None
            with self.store.transaction():
                jobs: dict[str, Job | None] = {}
                for ex in self.store.with_status(ExecStatus.IN_PROGRESS) if devices_online else []:
                    job = jobs.setdefault(ex.job_id, self.store.job(ex.job_id))
                    if job is None or ex.started_at is None:
                        continue
                    timeout = job.spec.timeout_s
                    deadline = max(ex.started_at + timeout, self._listening_since + min(timeout, RESYNC_GRACE_S))
                    if now < deadline:
                        continue
                    ex.status = ExecStatus.TIMED_OUT
                    ex.reason = f"no final status within the job's timeout of {job.spec.timeout_s:g} s"
                    ex.last_updated_at = now
                    ex.version += 1
                    self.store.save_execution(ex)
                    self.counters["executions_timed_out"] += 1
                    log.warning("job %s on %s TIMED_OUT", ex.job_id, ex.thing)
                    self._event_execution(ex)
                    self._maybe_retry(ex, now)
                    self._notify(ex.thing)
                for job in self.store.jobs(JobStatus.IN_PROGRESS, limit=10000):
                    due = self._advance(job.spec.job_id, now)
                    if due is not None:
                        next_due = due if next_due is None else min(next_due, due)
            self._flush()
            return next_due

    def announce_all(self) -> None:
        """Send every thing with pending executions its notify-next (at start-up, after a reconnect); the
        devices' in-progress timeouts wait RESYNC_GRACE_S from now for their answers."""
        with self._lock:
            self._listening_since = self.clock()
            self._last_next.clear()
            things = {ex.thing for ex in self.store.with_status(ExecStatus.QUEUED)}
            things |= {ex.thing for ex in self.store.with_status(ExecStatus.IN_PROGRESS)}
            for thing in sorted(things):
                self._notify(thing)
            self._flush()

    def _maybe_retry(self, ex: Execution, now: float) -> None:
        """Queue a FAILED / TIMED_OUT execution again if its job's retry config allows (inside the
        caller's transaction); the robot gets it through notify-next with the next executionNumber."""
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
        self._event_execution(ex)

    # ---- rollout --------------------------------------------------------------------------------------
    def _advance(self, job_id: str, now: float) -> float | None:
        """Apply the rollout decision for one job (inside the caller's transaction)."""
        job = self.store.job(job_id)
        if job is None:
            return None
        executions = self.store.executions(job_id)
        decision = decide(job, executions, now)
        if decision.abort_reason:
            self.counters["jobs_aborted"] += 1
            log.warning("job %s aborted: %s", job_id, decision.abort_reason)
            self._stop(job, "ABORTED", decision.abort_reason, now)
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
            self._event_execution(ex)
            self._notify(thing)
        if decision.complete:
            job.status = JobStatus.COMPLETED
            job.completed_at = now
            changed = True
            self._event_job(job, "completed")
        if changed:
            job.updated_at = now
            self.store.save_job(job)
        return decision.next_check_s

    def _stop(self, job: Job, code: str, reason: str, now: float) -> None:
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
                self._event_execution(ex)
                if was_visible:
                    self._notify(ex.thing)
        self._event_job(job, code.lower())

    # ---- outgoing -------------------------------------------------------------------------------------
    def _notify(self, thing: str) -> None:
        """notify-next when the thing's next pending execution changed; notify with the pending lists."""
        pending = self.store.pending(thing)
        head = pending[0] if pending else None
        head_id = f"{head.job_id}#{head.execution_number}" if head else ""  # a retry is a new next execution
        now = int(self.clock())
        self._outbox.append(
            (
                p.topic(thing, "notify"),
                p.encode(
                    {
                        "timestamp": now,
                        "jobs": {
                            status.value: [ex.summary() for ex in pending if ex.status == status]
                            for status in (ExecStatus.QUEUED, ExecStatus.IN_PROGRESS)
                            if any(ex.status == status for ex in pending)
                        },
                    }
                ),
            )
        )
        if self._last_next.get(thing) == head_id and head_id:
            return
        self._last_next[thing] = head_id
        body: dict[str, Any] = {"timestamp": now}
        if head is not None:
            body["execution"] = head.data(self._document(head.job_id))
        self._outbox.append((p.topic(thing, "notify-next"), p.encode(body)))

    def _event_execution(self, ex: Execution) -> None:
        self._events.append({"type": "execution", **ex.to_dict()})

    def _event_job(self, job: Job, what: str) -> None:
        item = job.to_dict()
        item.pop("document")
        self._events.append({"type": "job", "event": what, **item})

    def _discard(self) -> None:
        self._outbox.clear()
        self._events.clear()

    def _flush(self) -> None:
        """Send what the last (committed) transaction produced; caller holds the lock."""
        outbox, self._outbox = self._outbox, []
        events, self._events = self._events, []
        for name, payload in outbox:
            try:
                self.publish(name, payload)
            except Exception:  # a broken transport must not undo committed state; logged with traceback
                self.counters["publish_errors"] += 1
                log.exception("publish to %s failed", name)
        for event in events:
            try:
                self.on_event(event)
            except Exception:  # same: events are best effort, the store has the truth
                log.exception("event sink failed")
