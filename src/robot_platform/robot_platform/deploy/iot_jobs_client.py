"""The device side of AWS IoT Jobs for deploy_service: job documents in, deployment statuses out.

Works unchanged against AWS IoT Core and the site's Mosquitto + jobs service (same topics, same
payloads: :mod:`robot_platform.mqtt.jobs_protocol`). One job at a time, as IoT Jobs hands them out:

1. On every (re)connection: ``$aws/things/<thing>/jobs/get``; if anything is pending, ``start-next``.
   So jobs queued while the robot was offline run when it comes back, and a job that was IN_PROGRESS
   when the robot restarted is picked up again (the deploy engine is idempotent per job id, so it
   answers with that job's real state instead of installing twice).
2. ``notify-next`` while idle -> ``start-next``; ``start-next/accepted`` with an execution -> the job
   document is validated (:func:`document_to_request`) and submitted to the deploy engine, with the IoT
   job id as the deployment's job id. A malformed document -> ``REJECTED`` with the reason.
3. Engine statuses of that job -> ``<jobId>/update``: IN_PROGRESS with ``statusDetails`` step/progress
   (on each step change, not every byte), then SUCCEEDED, FAILED (reason; TIMED_OUT and CANCELED on
   the robot are FAILED for Jobs: a device cannot set those) or REJECTED (reason). Then ``start-next``.

Job documents (:func:`parse_document`): a deployment (what ``robot-platform package push`` prints,
plus the operation)::

    {"operation": "deploy", "package_name": "hello_fn", "version": "1.0.0", "kind": "function",
     "artifact_uri": "s3://packages/hello_fn/hello_fn-1.0.0.tar.gz", "sha256": "...", "signature": "..."}

or a rollback, with the semantics of the ``rollback`` service (``to_version`` empty or absent: the
version active before the current one)::

    {"operation": "rollback", "package_name": "hello_fn", "to_version": ""}

A rollback runs through the engine's rollback path (:meth:`DeployEngine.submit_rollback`) and reports
like a deployment (IN_PROGRESS steps, SUCCEEDED/FAILED); an unknown package or version, or nothing to
roll back to, is REJECTED with the reason.

Plain Python (no rclpy): the node passes ``submit`` (the engine's) and forwards engine statuses to
:meth:`IotJobsAgent.on_status`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from robot_platform.deploy.errors import RequestError
from robot_platform.deploy.jobs import Decision, DeployRequest, RollbackRequest, State, Status
from robot_platform.mqtt import jobs_protocol as p
from robot_platform.mqtt.errors import DeviceRequestError

if TYPE_CHECKING:  # awscrt (about 6 MB): imported by start_agent, only on robots that use IoT Jobs
    from robot_platform.mqtt.client import MqttClient

log = logging.getLogger(__name__)

OPERATION = "deploy"
OPERATION_ROLLBACK = "rollback"
OPERATIONS = (OPERATION, OPERATION_ROLLBACK)
REQUIRED_FIELDS = ("package_name", "version", "kind", "sha256", "signature")
OPTIONAL_FIELDS = ("artifact_uri", "operation")
ROLLBACK_FIELDS = ("operation", "package_name", "to_version")
# A start-next unanswered this long is taken as lost (e.g. the jobs service was killed before reading
# it): the next notify-next or get reply asks again instead of leaving the robot deaf to jobs.
START_NEXT_ANSWER_S = 30.0

Submit = Callable[[DeployRequest], Decision]
SubmitRollback = Callable[[RollbackRequest], Decision]
Publish = Callable[[str, bytes], None]


def document_to_request(job_id: str, document: Any) -> DeployRequest:
    """Turn an IoT job document into a deploy request; :class:`RequestError` names the faulty field.

    Only the shape is checked here; the engine validates the values (name, version, sha256, signature).
    """
    if not isinstance(document, dict):
        raise RequestError("jobDocument", "must be a JSON object")
    operation = document.get("operation", None)
    if operation != OPERATION:
        raise RequestError("operation", f"must be {OPERATION!r}, got {operation!r}")
    unknown = sorted(set(document) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise RequestError(unknown[0], f"unknown job document field(s) {unknown}")
    for name in (*REQUIRED_FIELDS, "artifact_uri"):
        value = document.get(name, "")
        if not isinstance(value, str):
            raise RequestError(name, "must be a string")
        if name in REQUIRED_FIELDS and not value:
            raise RequestError(name, "is required")
    return DeployRequest(
        job_id=job_id,
        package_name=document["package_name"],
        version=document["version"],
        artifact_uri=document.get("artifact_uri", ""),
        sha256=document["sha256"],
        signature=document["signature"],
        kind=document["kind"],
    )


def document_to_rollback(job_id: str, document: Any) -> RollbackRequest:
    """Turn an ``operation: rollback`` job document into a rollback request (shape checked here)."""
    if not isinstance(document, dict):
        raise RequestError("jobDocument", "must be a JSON object")
    if document.get("operation") != OPERATION_ROLLBACK:
        raise RequestError("operation", f"must be {OPERATION_ROLLBACK!r}, got {document.get('operation')!r}")
    unknown = sorted(set(document) - set(ROLLBACK_FIELDS))
    if unknown:
        raise RequestError(unknown[0], f"unknown rollback job document field(s) {unknown}")
    package, to_version = document.get("package_name", ""), document.get("to_version", "")
    for name, value in (("package_name", package), ("to_version", to_version)):
        if not isinstance(value, str):
            raise RequestError(name, "must be a string")
    if not package:
        raise RequestError("package_name", "is required")
    return RollbackRequest(job_id=job_id, package_name=package, to_version=to_version)


def parse_document(job_id: str, document: Any) -> DeployRequest | RollbackRequest:
    """A job document of any supported operation -> its request; :class:`RequestError` otherwise."""
    if not isinstance(document, dict):
        raise RequestError("jobDocument", "must be a JSON object")
    operation = document.get("operation", None)
    if operation == OPERATION_ROLLBACK:
        return document_to_rollback(job_id, document)
    if operation != OPERATION:
        raise RequestError("operation", f"must be one of {list(OPERATIONS)}, got {operation!r}")
    return document_to_request(job_id, document)


@dataclass
class _Current:
    job_id: str
    execution_number: int | None
    last_step: str = ""
    submitted: bool = False

    @property
    def engine_job_id(self) -> str:
        """The deploy engine's job id: one per execution, so a retried execution (the server queues the
        same job again with a new executionNumber) really runs again, while a re-delivered execution
        (same number, after a restart or a lost update) still gets the engine's stored result."""
        return self.job_id if self.execution_number is None else f"{self.job_id}:{self.execution_number}"


class IotJobsAgent:
    """The Jobs device protocol state machine (see the module docstring). Thread-safe."""

    def __init__(
        self,
        thing: str,
        submit: Submit,
        publish: Publish,
        rollback: SubmitRollback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not p.THING_RE.match(thing):
            raise RequestError("thing_name", f"must match {p.THING_RE.pattern}")
        self.thing = thing
        self.submit = submit
        self.rollback = rollback
        self.publish = publish
        self.counters: dict[str, int] = {"jobs": 0, "rejected_documents": 0, "updates": 0, "server_rejections": 0}
        self._lock = threading.RLock()
        self._current: _Current | None = None
        self._asking = False  # a start-next is in flight
        self._asked_at = 0.0
        self._clock = clock

    # ---- topics -------------------------------------------------------------------------------------
    def subscriptions(self) -> list[str]:
        t = p.topic
        return [
            t(self.thing, "notify-next"),
            t(self.thing, "get", "accepted"),
            t(self.thing, "get", "rejected"),
            t(self.thing, "start-next", "accepted"),
            t(self.thing, "start-next", "rejected"),
            t(self.thing, "+", "update", "accepted"),
            t(self.thing, "+", "update", "rejected"),
        ]

    def _send(self, *parts: str, body: dict[str, Any]) -> None:
        body.setdefault("clientToken", uuid.uuid4().hex[:16])
        self.publish(p.topic(self.thing, *parts), p.encode(body))

    # ---- inputs -------------------------------------------------------------------------------------
    def on_connected(self) -> None:
        """Re-synchronise: ask for pending jobs (queued while offline, or in progress before a restart)."""
        with self._lock:
            self._asking = False
            current = self._current
        if current is None:
            self._send("get", body={})
        else:
            log.info("reconnected during job %s; asking for it again to report its state", current.job_id)
            self._start_next()

    def on_message(self, topic: str, payload: bytes) -> None:
        prefix = p.things_prefix(self.thing) + "/"
        if not topic.startswith(prefix):
            return
        rest = topic[len(prefix) :]
        try:
            body = p.decode(payload)
        except DeviceRequestError as exc:
            log.warning("ignored unparsable message on %s: %s", topic, exc.reason)
            return
        if rest == "notify-next":
            if body.get("execution") and self._idle():
                self._start_next()
        elif rest == "get/accepted":
            if (body.get("inProgressJobs") or body.get("queuedJobs")) and self._idle():
                self._start_next()
        elif rest == "start-next/accepted":
            with self._lock:
                self._asking = False
            execution = body.get("execution")
            if isinstance(execution, dict):
                self._begin(execution)
        elif rest.endswith("/rejected"):
            self.counters["server_rejections"] += 1
            with self._lock:
                if rest.startswith("start-next"):
                    self._asking = False
            log.warning("jobs server rejected %s: %s %s", rest, body.get("code"), body.get("message"))
            if rest.endswith("update/rejected") and body.get("code") in ("InvalidStateTransition", "ResourceNotFound"):
                self._drop(rest.split("/")[0])  # canceled or timed out on the server: stop reporting it

    def on_status(self, status: Status) -> None:
        """An engine status (any job); those of the current IoT job become execution updates."""
        with self._lock:
            current = self._current
            if current is None or status.job_id != current.engine_job_id or not current.submitted:
                return
            if status.state in (State.QUEUED, State.IN_PROGRESS):
                step = status.step or status.state.name.lower()
                if step == current.last_step:
                    return
                current.last_step = step
                details = {"step": step, "progress": f"{status.progress:.2f}", "version": status.version}
                self._update(current, p.ExecStatus.IN_PROGRESS, details)
                return
            self._finish(current, status.state, status.reason, status)

    # ---- internals ----------------------------------------------------------------------------------
    def _idle(self) -> bool:
        with self._lock:
            unanswered = self._asking and self._clock() - self._asked_at >= START_NEXT_ANSWER_S
            return self._current is None and (not self._asking or unanswered)

    def _start_next(self) -> None:
        with self._lock:
            self._asking = True
            self._asked_at = self._clock()
        self._send("start-next", body={"statusDetails": {"step": "received"}})

    def _drop(self, job_id: str) -> None:
        with self._lock:
            if self._current is not None and self._current.job_id == job_id:
                self._current = None
        self._start_next()

    def _begin(self, execution: dict[str, Any]) -> None:
        job_id = execution.get("jobId")
        if not isinstance(job_id, str) or not p.JOB_ID_RE.match(job_id):
            log.warning("start-next returned an execution without a valid jobId: %r", str(job_id)[:80])
            return
        number = execution.get("executionNumber")
        with self._lock:
            if self._current is not None:
                if self._current.job_id != job_id:
                    log.warning("job %s offered while %s runs; ignored until it ends", job_id, self._current.job_id)
                return
            current = self._current = _Current(job_id, number if isinstance(number, int) else None)
        self.counters["jobs"] += 1
        try:
            request = parse_document(current.engine_job_id, execution.get("jobDocument"))
            if isinstance(request, RollbackRequest) and self.rollback is None:
                raise RequestError("operation", "rollback jobs are not supported by this device")
        except RequestError as exc:
            self.counters["rejected_documents"] += 1
            log.warning("job %s: malformed job document: %s", job_id, exc.reason)
            with self._lock:
                self._finish(current, State.REJECTED, f"malformed job document: {exc.reason}", None)
            return
        with self._lock:
            current.submitted = True
        # Statuses emitted meanwhile come back through on_status.
        if isinstance(request, RollbackRequest):
            assert self.rollback is not None
            log.info("job %s: rolling back %s to %s", job_id, request.package_name, request.to_version or "previous")
            decision = self.rollback(request)
        else:
            log.info("job %s: deploying %s %s", job_id, request.package_name, request.version)
            decision = self.submit(request)
        with self._lock:
            if self._current is not current:
                return  # already finished through on_status
            if not decision.accepted:
                self._finish(current, State.REJECTED, decision.message, None)
            elif decision.state.final:  # a repeated job id: the engine knows how it ended
                self._finish(current, decision.state, decision.message, None)
            elif not current.last_step:
                current.last_step = decision.state.name.lower()
                self._update(current, p.ExecStatus.IN_PROGRESS, {"step": current.last_step, "progress": "0.00"})

    def _finish(self, current: _Current, state: State, reason: str, status: Status | None) -> None:
        """Report the final status; caller holds the lock."""
        details: dict[str, str] = {}
        if state == State.SUCCEEDED:
            verdict = p.ExecStatus.SUCCEEDED
            details = {"step": "done", "progress": "1.00"}
            if status is not None:
                details.update(version=status.version, previous_version=status.previous_version)
        elif state == State.REJECTED:
            verdict = p.ExecStatus.REJECTED
        else:
            verdict = p.ExecStatus.FAILED
            if state != State.FAILED:
                reason = f"{state.name}: {reason}"
        if reason:
            details["reason"] = p.truncate_detail(reason)
        self._update(current, verdict, details)
        self._current = None
        log.info("job %s: %s %s", current.job_id, verdict.value, reason)
        self._start_next()

    def _update(self, current: _Current, status: p.ExecStatus, details: dict[str, str]) -> None:
        self.counters["updates"] += 1
        body: dict[str, Any] = {"status": status.value, "statusDetails": details}
        if current.execution_number is not None:
            body["executionNumber"] = current.execution_number
        self._send(current.job_id, "update", body=body)


@dataclass(frozen=True)
class MqttSettings:
    """Connection settings (node parameters)."""

    endpoint: str
    port: int
    ca_file: str
    cert_file: str
    key_file: str
    thing_name: str
    client_id: str


def start_agent(
    settings: MqttSettings, submit: Submit, rollback: SubmitRollback | None = None
) -> tuple[IotJobsAgent, MqttClient]:
    """Build the agent and its MQTT client and start connecting (in the background)."""
    from robot_platform.mqtt.client import MqttClient
    from robot_platform.mqtt.connection import BrokerSettings

    broker = BrokerSettings(
        host=settings.endpoint,
        port=settings.port,
        client_id=settings.client_id,
        ca_file=settings.ca_file,
        cert_file=settings.cert_file,
        key_file=settings.key_file,
    )
    broker.validate()  # mutual TLS only: a robot never talks plain MQTT to the site broker
    holder: dict[str, MqttClient] = {}

    def publish(name: str, payload: bytes) -> None:
        holder["client"].publish(name, payload)

    agent = IotJobsAgent(settings.thing_name, submit, publish, rollback)
    client = MqttClient(
        broker, subscriptions=agent.subscriptions(), on_message=agent.on_message, on_connected=agent.on_connected
    )
    holder["client"] = client
    client.start()
    return agent, client
