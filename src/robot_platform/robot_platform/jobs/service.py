"""The AWS IoT Jobs server role: jobs, executions, device requests, timeouts and staged rollouts.

Transport-free: :meth:`JobsService.handle` takes a device request (MQTT topic + payload) and the service
answers through ``publish(topic, payload)``; the console API (:meth:`create`, :meth:`get`, :meth:`list`,
:meth:`cancel`) returns plain dicts; every change is also reported through ``on_event(dict)``. The
owner calls :meth:`tick` about once a second (timeouts, rate-limited releases). A device never waits on
the console and vice versa: both are short transactions under one lock.

Messages are published only after the store transaction that caused them committed, so a device is
never told about an execution a crash could take back (outbox.py). Parts: device_requests.py (the
device side), rollout_driver.py (releases, completion, aborts, retries), outbox.py (messages and events
held until commit); this class owns the lock and the transactions, the console API and the clock work.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from robot_platform.jobs.device_requests import DeviceRequests
from robot_platform.jobs.errors import DuplicateJobError, JobsError, UnknownJobError
from robot_platform.jobs.model import Execution, Job, JobStatus, parse_job_spec
from robot_platform.jobs.mqtt_outbox import EventSink, JobsOutbox, Publish
from robot_platform.jobs.rollout import counts
from robot_platform.jobs.rollout_driver import RolloutDriver
from robot_platform.jobs.store import JobStore
from robot_platform.mqtt import jobs_protocol as p
from robot_platform.mqtt.errors import DeviceRequestError
from robot_platform.mqtt.jobs_protocol import ExecStatus

log = logging.getLogger(__name__)

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
        self._outbox = JobsOutbox(store, publish, self.on_event, clock, self.counters)
        self._rollout = RolloutDriver(store, self._outbox, self.counters)
        self._devices = DeviceRequests(store, self._outbox, self._rollout, clock)
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
            self._outbox.discard()
            with self.store.transaction():
                self.store.insert_job(job, executions)
                self._outbox.event_job(job, "created")
                for ex in executions:
                    self._outbox.event_execution(ex)
                self._rollout.advance(spec.job_id, now)
            for ex in executions:
                if ex.canary:
                    self._outbox.notify(ex.thing)
            self._outbox.flush()
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
                doc = item.pop("document") or {}
                # what the job installs, for the console's list (the document itself stays out of it)
                item["operation"] = str(doc.get("operation") or "deploy")
                item["package_name"] = str(doc.get("package_name") or "")
                item["version"] = str(doc.get("version") or doc.get("to_version") or "")
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
                    self._rollout.stop(job, "USER_CANCELED", reason, self.clock())
                self._outbox.flush()
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
                    reply = self._devices.dispatch(request, body)
            except DeviceRequestError as exc:
                self._outbox.discard()  # the transaction was rolled back: nothing it produced may go out
                self.counters[f"requests_rejected_{exc.code}"] += 1
                log.info(
                    "%s %s from %s rejected: %s %s", request.op, request.job_id, request.thing, exc.code, exc.reason
                )
                self._outbox.add(
                    p.reply_topic(request, False),
                    p.encode(p.rejected_body(exc.code, exc.reason, token, self.clock(), exc.execution_state)),
                )
            except JobsError as exc:  # store failure: tell the device to retry, keep serving
                self._outbox.discard()
                self.counters["requests_failed"] += 1
                log.error("%s from %s failed: %s", request.op, request.thing, exc.reason)
                body = p.rejected_body("InternalError", exc.reason, token, self.clock())
                self._outbox.add(p.reply_topic(request, False), p.encode(body))
            else:
                self.counters[f"requests_{request.op}"] += 1
                reply["timestamp"] = int(self.clock())
                if token is not None:
                    reply["clientToken"] = token
                self._outbox.add(p.reply_topic(request, True), p.encode(reply), first=True)
            self._outbox.flush()

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
                    self._outbox.event_execution(ex)
                    self._rollout.maybe_retry(ex, now)
                    self._outbox.notify(ex.thing)
                for job in self.store.jobs(JobStatus.IN_PROGRESS, limit=10000):
                    due = self._rollout.advance(job.spec.job_id, now)
                    if due is not None:
                        next_due = due if next_due is None else min(next_due, due)
            self._outbox.flush()
            return next_due

    def announce_all(self) -> None:
        """Send every thing with pending executions its notify-next (at start-up, after a reconnect); the
        devices' in-progress timeouts wait RESYNC_GRACE_S from now for their answers."""
        with self._lock:
            self._listening_since = self.clock()
            self._outbox.forget_announced()
            things = {ex.thing for ex in self.store.with_status(ExecStatus.QUEUED)}
            things |= {ex.thing for ex in self.store.with_status(ExecStatus.IN_PROGRESS)}
            for thing in sorted(things):
                self._outbox.notify(thing)
            self._outbox.flush()
