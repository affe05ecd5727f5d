"""The jobs service's console API on NATS: request/reply subjects and an event stream.

Subjects (bodies msgpack; requests may also be JSON):

* ``jobs.create`` ``{job_id?, document, targets, rollout?, timeout_s?, description?, retry?}`` -> the job
  (``retry``: ``{failed: 0..10, timed_out: 0..10}``, see model.RetryConfig)
* ``jobs.get`` ``{job_id}`` -> the job with every execution (status, statusDetails step/progress, reason)
* ``jobs.list`` ``{status?, limit?}`` -> jobs with counts per execution status
* ``jobs.cancel`` ``{job_id, reason?}`` -> the job (not-started executions CANCELED)
* ``jobs.catalogue`` ``{package?}`` -> the packages and versions in the packages bucket, as job documents
  (jobs/catalogue.py; ``ServiceUnavailableException`` without ``packages_bucket``)
* ``jobs.events`` (published): ``{type: "job"|"execution", ...}`` on every change, so the console shows
  progress per robot live. Header ``rp-type: robot_platform/jobs/Event``.

Replies: ``{ok: true, result}`` or ``{ok: false, code, error, field?}`` (code = IoT Jobs error code).

On the platform's :class:`~robot_platform.messaging.nats_link.NatsLink` (its thread, reconnect with
backoff); service calls run in the default executor (each is a short SQLite transaction with an fsync).
Events wait in the link's bounded outbox (drop-oldest, counted in ``dropped``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from robot_platform.common.request_body import BadRequestBody, decode_request_body
from robot_platform.jobs.errors import CatalogueError, JobsError, JobSpecError
from robot_platform.jobs.service import JobsService
from robot_platform.messaging.connect import Credentials
from robot_platform.messaging.nats_link import NatsLink

if TYPE_CHECKING:  # the CLI imports this module for its subjects: no boto3 at its start-up
    from robot_platform.jobs.catalogue import PackageCatalogue

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "jobs"
EVENT_TYPE = "robot_platform/jobs/Event"
EVENT_QUEUE_SIZE = 1000


def decode_request(data: bytes) -> Any:
    """msgpack, or JSON (for ``nats req`` from a shell); empty = ``{}``."""
    try:
        return decode_request_body(data)
    except BadRequestBody as exc:
        raise JobSpecError("", str(exc)) from None


class JobsNatsApi:
    """Serves ``jobs.*`` requests and publishes ``jobs.events`` (see the module docstring)."""

    def __init__(self, url: str, service: JobsService, prefix: str = SUBJECT_PREFIX, user: str = "",
                 password: str = "", catalogue: PackageCatalogue | None = None) -> None:  # fmt: skip
        self.url = url
        self.service = service
        self.prefix = prefix
        self.requests = 0
        self.errors = 0
        self._handlers: dict[str, Callable[[Any], Any]] = {
            "create": service.create,
            "get": lambda body: service.get(_field(body, "job_id")),
            "list": lambda body: service.list(str(_opt(body, "status", "")), int(_opt(body, "limit", 100))),
            "cancel": lambda body: service.cancel(
                _field(body, "job_id"), str(_opt(body, "reason", "canceled by an operator"))
            ),
            "catalogue": catalogue.handle if catalogue is not None else _no_catalogue,
        }
        self.link = NatsLink(
            url,
            name="jobs_service",
            outbox_capacity=EVENT_QUEUE_SIZE,
            credentials=Credentials(user, password),
            log=log,
            on_connected=self._on_connected,
            requests=[f"{prefix}.{name}" for name in self._handlers],
            on_request=self._on_request,
        )

    @property
    def dropped(self) -> int:
        """Events (and replies) dropped from the full outbox."""
        return self.link.counters.dropped_outbox

    def start(self) -> None:
        self.link.start()

    def wait_connected(self, timeout: float) -> bool:
        return self.link.wait_connected(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self.link.stop(timeout)

    def publish_event(self, event: dict[str, Any]) -> None:
        """Thread-safe and non-blocking (the service calls it under its lock)."""
        self.link.publish(f"{self.prefix}.events", msgpack.packb(event, default=str), {"rp-type": EVENT_TYPE})

    async def _on_connected(self, nc: Any) -> None:
        log.info("jobs API on NATS %s: %s.{%s}", self.url, self.prefix, ",".join(self._handlers))

    def _on_request(self, pattern: str, subject: str, reply: str, headers: dict[str, str] | None, data: bytes) -> None:
        self.link.spawn(self._answer, subject, reply, data)

    async def _answer(self, subject: str, reply_to: str, data: bytes) -> None:
        self.requests += 1
        name = subject.rsplit(".", 1)[-1]
        try:
            body = decode_request(data)
            result = await asyncio.get_running_loop().run_in_executor(None, self._handlers[name], body)
            reply: dict[str, Any] = {"ok": True, "result": result}
        except JobsError as exc:
            self.errors += 1
            reply = {"ok": False, "code": exc.code, "error": exc.reason}
            if isinstance(exc, JobSpecError):
                reply["field"] = exc.field
        if reply_to:
            self.link.publish(reply_to, msgpack.packb(reply, default=str), {})


def _no_catalogue(body: Any) -> Any:
    raise CatalogueError("no packages bucket configured (jobs_service parameter packages_bucket)")


def _field(body: Any, name: str) -> str:
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise JobSpecError(name, "is required (a string)")
    return value


def _opt(body: Any, name: str, default: Any) -> Any:
    if not isinstance(body, dict):
        raise JobSpecError("", "the request must be an object")
    value = body.get(name, default)
    if isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int)):
        raise JobSpecError(name, "must be an integer")
    return value
