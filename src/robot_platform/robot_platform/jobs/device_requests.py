"""The device side of AWS IoT Jobs: get pending, start-next, describe and update an execution.

Each request is answered from the store inside the caller's transaction (the service holds the lock and
turns a :class:`DeviceRequestError` into a ``/rejected`` reply); the reply body is returned, what the
request changed goes to the :class:`~.outbox.JobsOutbox` and the :class:`~.rollout_driver.RolloutDriver`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from robot_platform.jobs.model import Execution
from robot_platform.jobs.mqtt_outbox import JobsOutbox
from robot_platform.jobs.rollout_driver import RolloutDriver
from robot_platform.jobs.store import JobStore
from robot_platform.mqtt import jobs_protocol as p
from robot_platform.mqtt.errors import DeviceRequestError
from robot_platform.mqtt.jobs_protocol import ExecStatus


class DeviceRequests:
    """Answers device requests (one transaction each); see the module docstring."""

    def __init__(self, store: JobStore, outbox: JobsOutbox, driver: RolloutDriver, clock: Callable[[], float]) -> None:
        self.store = store
        self.outbox = outbox
        self.driver = driver
        self.clock = clock

    def dispatch(self, request: p.Request, body: dict[str, Any]) -> dict[str, Any]:
        """The reply body of an accepted request; :class:`DeviceRequestError` for a rejected one."""
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
            self.outbox.event_execution(ex)
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
        self.outbox.event_execution(ex)
        if status.terminal:
            self.driver.maybe_retry(ex, now)
            self.driver.advance(job_id, now)
            self.outbox.notify(thing)
        reply: dict[str, Any] = {}
        if body.get("includeJobExecutionState"):
            reply["executionState"] = ex.state()
        if body.get("includeJobDocument"):
            reply["jobDocument"] = self._document(job_id)
        return reply
