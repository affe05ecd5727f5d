"""The jobs service's console API on NATS: request/reply subjects and an event stream.

Subjects (bodies msgpack; requests may also be JSON):

* ``jobs.create`` ``{job_id?, document, targets, rollout?, timeout_s?, description?, retry?}`` -> the job
  (``retry``: ``{failed: 0..10, timed_out: 0..10}``, see model.RetryConfig)
* ``jobs.get`` ``{job_id}`` -> the job with every execution (status, statusDetails step/progress, reason)
* ``jobs.list`` ``{status?, limit?}`` -> jobs with counts per execution status
* ``jobs.cancel`` ``{job_id, reason?}`` -> the job (not-started executions CANCELED)
* ``jobs.events`` (published): ``{type: "job"|"execution", ...}`` on every change, so the console shows
  progress per robot live. Header ``rp-type: robot_platform/jobs/Event``.

Replies: ``{ok: true, result}`` or ``{ok: false, code, error, field?}`` (code = IoT Jobs error code).

Own asyncio loop in one thread; service calls run in the default executor (each is a short SQLite
transaction with an fsync). Events go through a bounded queue (drop-oldest, counted in ``dropped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import msgpack
import nats
from nats.errors import Error as NatsError

from robot_platform.common.event_loop import run_to_end
from robot_platform.common.request_body import BadRequestBody, decode_request_body
from robot_platform.jobs.errors import JobsError, JobSpecError
from robot_platform.jobs.service import JobsService
from robot_platform.messaging.backoff import Backoff
from robot_platform.messaging.inbox import connect_options

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "jobs"
EVENT_TYPE = "robot_platform/jobs/Event"
EVENT_QUEUE_SIZE = 1000
CONNECT_TIMEOUT_S = 2.0
FIRST_CONNECT_BACKOFF_MAX_S = 10.0
DRAIN_TIMEOUT_S = 2.0


def decode_request(data: bytes) -> Any:
    """msgpack, or JSON (for ``nats req`` from a shell); empty = ``{}``."""
    try:
        return decode_request_body(data)
    except BadRequestBody as exc:
        raise JobSpecError("", str(exc)) from None


class NatsApi:
    """Serves ``jobs.*`` requests and publishes ``jobs.events`` (see the module docstring)."""

    def __init__(self, url: str, service: JobsService, prefix: str = SUBJECT_PREFIX, user: str = "",
                 password: str = "") -> None:  # fmt: skip
        self.url = url
        self._auth = connect_options(user, password)
        self.service = service
        self.prefix = prefix
        self.dropped = 0
        self.requests = 0
        self.errors = 0
        self._loop = asyncio.new_event_loop()
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=EVENT_QUEUE_SIZE)
        self._stopping = asyncio.Event()
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobs-nats", daemon=True)
        self._handlers: dict[str, Callable[[Any], Any]] = {
            "create": service.create,
            "get": lambda body: service.get(_field(body, "job_id")),
            "list": lambda body: service.list(str(_opt(body, "status", "")), int(_opt(body, "limit", 100))),
            "cancel": lambda body: service.cancel(
                _field(body, "job_id"), str(_opt(body, "reason", "canceled by an operator"))
            ),
        }

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout=timeout)

    def publish_event(self, event: dict[str, Any]) -> None:
        """Thread-safe and non-blocking (the service calls it under its lock)."""
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self._enqueue, event)

    def _enqueue(self, event: dict[str, Any]) -> None:
        if self._events.full():
            self._events.get_nowait()
            self.dropped += 1
        self._events.put_nowait(event)

    def _run(self) -> None:
        # run_to_end ends the tasks nats.py leaves behind when the server stops with us, quietly.
        run_to_end(self._loop, self._main())

    async def _main(self) -> None:
        backoff = Backoff(0.5, FIRST_CONNECT_BACKOFF_MAX_S)
        client = None
        while client is None and not self._stopping.is_set():
            try:
                client = await nats.connect(
                    self.url,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    max_reconnect_attempts=-1,
                    name="jobs_service",
                    error_cb=self._on_error,
                    **self._auth,
                )
            except (TimeoutError, NatsError, OSError) as exc:
                log.warning("NATS %s unreachable (%s); retrying", self.url, exc)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff.next_delay())
        if client is None:
            return
        for name in self._handlers:
            await client.subscribe(f"{self.prefix}.{name}", cb=self._on_request)
        self.connected.set()
        log.info("jobs API on NATS %s: %s.{%s}", self.url, self.prefix, ",".join(self._handlers))
        sender = asyncio.create_task(self._send_events(client))
        await self._stopping.wait()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        try:
            await asyncio.wait_for(client.drain(), DRAIN_TIMEOUT_S)
        except (NatsError, OSError, TimeoutError):
            with contextlib.suppress(NatsError, OSError, TimeoutError):
                await client.close()

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS %s: %s", self.url, exc or type(exc).__name__)

    async def _send_events(self, client: Any) -> None:
        subject = f"{self.prefix}.events"
        while True:
            event = await self._events.get()
            try:
                await client.publish(subject, msgpack.packb(event, default=str), headers={"rp-type": EVENT_TYPE})
            except (NatsError, OSError):
                self.dropped += 1

    async def _on_request(self, msg: Any) -> None:
        self.requests += 1
        name = msg.subject.rsplit(".", 1)[-1]
        try:
            body = decode_request(msg.data)
            result = await self._loop.run_in_executor(None, self._handlers[name], body)
            reply: dict[str, Any] = {"ok": True, "result": result}
        except JobsError as exc:
            self.errors += 1
            reply = {"ok": False, "code": exc.code, "error": exc.reason}
            if isinstance(exc, JobSpecError):
                reply["field"] = exc.field
        if msg.reply:
            with contextlib.suppress(NatsError, OSError):
                await msg.respond(msgpack.packb(reply, default=str))


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
