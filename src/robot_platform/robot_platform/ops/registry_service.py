"""The control side of the registry (no rclpy): presence -> JetStream KV, offline sweep, log stream.

:class:`RegistryService` connects to the hub, makes sure the ``FLEET_REGISTRY`` bucket and the
``FLEET_LOGS`` and ``FLEET_AUDIT`` streams exist, loads what the bucket already holds (so a restart keeps
the fleet and its first-seen times), folds every ``robots.*.presence`` message into
:class:`.registry.Registry` and writes the robot's record to the bucket, and every ``sweep_period_s``
marks robots silent for longer than ``offline_after_s`` offline. A robot that appears for the first time
is added to ``FLEET_LOGS``'s sources (its credentials were checked by the hub already: only known robot
users can publish there).

For the console (ws_agent's ``/fleet/...`` names) it also serves, as NATS request/reply (request body
msgpack or JSON, reply msgpack ``{ok: true, result}`` or ``{ok: false, code, error, field?}``, the
shape of the jobs API):

* ``fleet.registry.list`` ``{}`` -> ``{robots: [record, ...]}`` (:meth:`.registry.RobotRecord.to_dict`,
  sorted by robot id, from the in-memory registry, i.e. the bucket as loaded plus what arrived since);
* ``fleet.logs.query`` ``{robot?, level?, node?, grep?, since_s?, limit?}`` -> ``{entries, truncated}``
  (:mod:`.log_query`); at most ``MAX_CONCURRENT_QUERIES`` run at once, more are answered ``busy``;
* ``fleet.alerts.query`` ``{robot?, severity?, code?, since_s?, until_s?, state?, limit?}`` ->
  ``{alerts, truncated}``: alert history from ``FLEET_EVENTS`` (:mod:`.alert_history`), same limits;
* ``fleet.audit.query`` ``{robot?, user?, op?, target?, verdict?, since_s?, until_s?, limit?}`` ->
  ``{entries, truncated}``: ws_agent's audit events from ``FLEET_AUDIT`` (:mod:`.audit_query`; this
  service creates that stream), same limits;
* ``fleet.alerts.export`` ``{alert_id, minutes?, user}`` -> ``{file, name, bytes, window, included, notes}``:
  one MCAP file around an alert (:mod:`.alert_export`); at most ``MAX_CONCURRENT_EXPORTS`` at once;

and publishes ``fleet.registry.events``: the record (same dict) whenever it changes, throttled by
:class:`.registry.EventThrottle` (``last_seen``-only updates at most every ``offline_after_s / 2``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import nats
import nats.errors
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType

from robot_platform.common.request_body import BadRequestBody, decode_request_body
from robot_platform.exceptions import RobotPlatformError
from robot_platform.messaging import connect, streams
from robot_platform.messaging.connect import Credentials
from robot_platform.messaging.lease import Lease, default_instance, open_lease_bucket
from robot_platform.messaging.streams import ensure_stream
from robot_platform.ops import alert_export, alert_history, audit_query, log_query
from robot_platform.ops import registry as reg
from robot_platform.ops.errors import AnnouncementError, LogQueryError
from robot_platform.ops.kv_writer import CoalescingWriter
from robot_platform.ops.registry import (
    BUCKET,
    OFFLINE_AFTER_S,
    EventThrottle,
    Registry,
    RobotRecord,
    decode_announcement,
)
from robot_platform.recording.msgdefs import MessageDefinitions

SWEEP_PERIOD_S = 1.0
FLUSH_ON_STOP_S = 2.0  # queued registry writes given this long at shutdown
OPEN_RETRY_FIRST_S, OPEN_RETRY_MAX_S = 0.5, 10.0  # opening the bucket on a hub too busy to answer
BUCKET_HISTORY = 5
MAX_CONCURRENT_QUERIES = 4
MAX_CONCURRENT_EXPORTS = 1  # scans two streams, asks for a capture, one MessageDefinitions: one at a time
MAX_REQUEST_BYTES = 64 * 1024
EVENT_HEADERS = {"Content-Type": "application/msgpack", "rp-type": reg.RECORD_TYPE}


@dataclass
class ServiceCounters:
    announcements: int = 0
    rejected: int = 0
    went_offline: int = 0
    kv_errors: int = 0
    list_requests: int = 0
    log_queries: int = 0
    alert_queries: int = 0
    audit_queries: int = 0
    exports: int = 0
    bad_requests: int = 0
    busy: int = 0
    events: int = 0
    errors: dict[str, int] = field(default_factory=dict)


async def open_bucket(js: Any, create: bool = True) -> Any:
    """The registry bucket (created, file-backed, with the hub's replicas, if ``create`` and missing)."""
    if not create:
        return await js.key_value(BUCKET)
    return await streams.ensure_key_value(js, KeyValueConfig(
        bucket=BUCKET, description="robot_platform fleet registry (one key per robot)",
        history=BUCKET_HISTORY, storage=StorageType.FILE, replicas=streams.HUB_REPLICAS,
    ))  # fmt: skip


async def read_records(kv: Any) -> list[RobotRecord]:
    """Every record in the bucket (an empty bucket is an empty fleet)."""
    try:
        keys = await kv.keys()
    except nats.js.errors.NoKeysError:
        return []
    records = []
    for key in keys:
        with contextlib.suppress(nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            entry = await kv.get(key)
            if entry.value:
                records.append(RobotRecord.decode(entry.value))
    return records


def decode_request(data: bytes) -> Any:
    """A console request body: msgpack or JSON (for ``nats req`` from a shell); empty is ``{}``."""
    try:
        return decode_request_body(data, MAX_REQUEST_BYTES)
    except BadRequestBody as exc:
        raise LogQueryError("", str(exc)) from None


class RegistryService:
    def __init__(
        self,
        url: str,
        credentials: Credentials,
        fleet: list[str],
        offline_after_s: float = OFFLINE_AFTER_S,
        sweep_period_s: float = SWEEP_PERIOD_S,
        log_max_bytes: int = streams.LOGS_HUB_MAX_BYTES,
        log_max_age_s: float = streams.LOGS_HUB_MAX_AGE_S,
        log: logging.Logger | Any | None = None,
        ha: bool = False,
        instance: str = "",
        export_capture_user: str = "fleet_registry",
        export_capture_role: str = "exporter",
    ) -> None:
        self.url = url
        self.fleet = list(fleet)
        self.ha = ha
        self.instance = instance or default_instance()
        self.lease: Lease | None = None
        self.active = False
        self.credentials = credentials
        self.registry = Registry(offline_after_s, fleet)
        self.sweep_period_s = sweep_period_s
        self.log_max_bytes = log_max_bytes
        self.log_max_age_s = log_max_age_s
        self.sourced: set[str] = set(fleet)
        self.counters = ServiceCounters()
        self.events = EventThrottle(offline_after_s / 2.0)
        self._queries: set[asyncio.Task[None]] = set()
        self._exports: set[asyncio.Task[None]] = set()
        self.export_capture = (export_capture_user, export_capture_role)  # as whom robots are asked for captures
        self._definitions: MessageDefinitions | None = None  # made on the first export
        self._log = log or logging.getLogger(__name__)
        self._kv: Any = None
        self._js: Any = None
        # KV writes never hold up the presence callback (see kv_writer.py for the failure this prevents)
        self.writer = CoalescingWriter(self._kv_put, self._kv_error)
        self._nc: Any = None

    async def run(self, stop: asyncio.Event) -> None:
        # nats-py's own reconnect: the subscriptions below and the bucket handle live across a hub restart.
        nc = await connect.connect_until_stopped(
            stop, self.url, name="fleet_registry", credentials=self.credentials, log=self._log
        )
        if nc is None:
            return
        writer = asyncio.create_task(self.writer.run())
        try:
            self._nc = nc
            self._js = nc.jetstream()
            if not self.ha:
                await self._serve(stop, None)
                return
            # Active/standby (messaging/lease.py): serve while holding the lease, wait while another does.
            self.lease = Lease(await open_lease_bucket(self._js), "fleet_registry", self.instance)
            while not stop.is_set():
                self.active = False
                if not await self.lease.acquire(stop):
                    break
                keeper = asyncio.create_task(self.lease.keep(stop))
                try:
                    await self._serve(stop, self.lease.lost)
                finally:
                    keeper.cancel()
                    await asyncio.gather(keeper, return_exceptions=True)
                    await self.lease.release()
        finally:
            for task in [*self._queries, *self._exports]:
                task.cancel()
            await asyncio.gather(*self._queries, *self._exports, return_exceptions=True)
            if not await self.writer.flush(FLUSH_ON_STOP_S):
                self._log.warning(f"{self.writer.pending} registry writes not done at shutdown")
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            await connect.close(nc)

    async def _serve(self, stop: asyncio.Event, lost: asyncio.Event | None) -> None:
        """Load the bucket, subscribe and sweep until ``stop`` (or ``lost``: the lease went elsewhere)."""
        nc = self._nc
        self._kv = await self._open_bucket(stop, lost)
        if self._kv is None:
            return
        self.registry = Registry(self.registry.offline_after_s, self.fleet)
        for record in await self._read_bucket(stop, lost):
            self.registry.load(record)
        self.sourced |= set(self.registry.records)
        await self._ensure_log_stream()
        await self._ensure_audit_stream()
        subs = [
            await nc.subscribe("robots.*.presence", cb=self._on_presence),
            await nc.subscribe(reg.LIST_SUBJECT, cb=self._on_list),
            await nc.subscribe(log_query.QUERY_SUBJECT, cb=self._on_query),
            await nc.subscribe(alert_history.QUERY_SUBJECT, cb=self._on_alert_query),
            await nc.subscribe(audit_query.QUERY_SUBJECT, cb=self._on_audit_query),
            await nc.subscribe(alert_export.EXPORT_SUBJECT, cb=self._on_export),
        ]
        self.active = True
        self._log.info(f"registry up: {len(self.registry.records)} robots known, logs from {sorted(self.sourced)}")
        try:
            while not stop.is_set() and not (lost and lost.is_set()):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.sweep_period_s)
                for record in self.registry.sweep():
                    self.counters.went_offline += 1
                    self._log.warning(f"robot {record.robot_id} offline: silent for {self.registry.offline_after_s:g}s")
                    await self._put(record)
                    await self._publish_event(record)
        finally:
            self.active = False
            for sub in subs:
                with contextlib.suppress(nats.errors.Error, OSError):
                    await sub.unsubscribe()

    async def _open_bucket(self, stop: asyncio.Event, lost: asyncio.Event | None) -> Any:
        """The registry bucket, retried with backoff until ``stop`` (None then). Why: a hub setting up many
        robots' stream sources (100 robots: 200 sources over the leaf links) can leave its JetStream API
        unanswered for longer than a request's timeout; the registry used to end its service thread at
        that first timeout and stay up as a process that answered nothing (fleet_scale.py, 100 robots)."""
        delay = OPEN_RETRY_FIRST_S
        while not stop.is_set() and not (lost and lost.is_set()):
            try:
                return await open_bucket(self._js)
            except (TimeoutError, nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                self.counters.errors["bucket_open"] = self.counters.errors.get("bucket_open", 0) + 1
                self._log.warning(f"registry bucket not ready ({type(exc).__name__}: {exc}); retrying in {delay:g}s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, OPEN_RETRY_MAX_S)
        return None

    async def _read_bucket(self, stop: asyncio.Event, lost: asyncio.Event | None) -> list[RobotRecord]:
        """The bucket's records from its leader, retried while a clustered hub elects one (a partial read
        would reset first-seen times); undecodable records are skipped and counted."""
        while not stop.is_set() and not (lost and lost.is_set()):
            try:
                values = await asyncio.wait_for(streams.kv_snapshot(self._js, BUCKET), 30.0)
            except (TimeoutError, nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                self._log.warning(f"registry bucket not readable yet ({type(exc).__name__}); retrying")
                await asyncio.sleep(0.5)
                continue
            records = []
            for key, value in values.items():
                try:
                    records.append(RobotRecord.decode(value))
                except (AnnouncementError, ValueError, KeyError, TypeError) as exc:
                    self._count(type(exc).__name__, f"registry record {key!r} unreadable: {exc}")
            return records
        return []

    async def _on_presence(self, msg: Any) -> None:
        try:
            announcement = decode_announcement(msg.subject, msg.data)
            record, appeared = self.registry.apply(announcement)
        except AnnouncementError as exc:
            self.counters.rejected += 1
            if self.counters.rejected == 1 or self.counters.rejected % 100 == 0:
                self._log.warning(f"{exc} ({self.counters.rejected} rejected so far)")
            return
        self.counters.announcements += 1
        if appeared:
            self._log.info(f"robot {record.robot_id} online (site {announcement.site or '-'})")
        if record.robot_id not in self.sourced:
            self.sourced.add(record.robot_id)
            await self._ensure_log_stream()
        await self._put(record)
        await self._publish_event(record)

    async def _publish_event(self, record: RobotRecord) -> None:
        if not self.events.should_publish(record, time.monotonic()):
            return
        try:
            await self._nc.publish(reg.EVENTS_SUBJECT, msgpack.packb(record.to_dict()), headers=EVENT_HEADERS)
            self.counters.events += 1
        except (nats.errors.Error, OSError) as exc:
            self._count(type(exc).__name__, f"registry event for {record.robot_id} not published: {exc}")

    # ------------------------------------------------------------------ console requests
    async def _on_list(self, msg: Any) -> None:
        self.counters.list_requests += 1
        try:
            decode_request(msg.data)
        except LogQueryError as exc:
            await self._reply(msg, error=exc)
            return
        robots = [r.to_dict() for _, r in sorted(self.registry.records.items())]
        await self._reply(msg, {"robots": robots})

    async def _on_query(self, msg: Any) -> None:
        self.counters.log_queries += 1
        await self._start_query(msg, log_query.parse_query, self._answer_query)

    async def _on_alert_query(self, msg: Any) -> None:
        self.counters.alert_queries += 1
        await self._start_query(msg, alert_history.parse_query, self._answer_alert_query)

    async def _on_audit_query(self, msg: Any) -> None:
        self.counters.audit_queries += 1
        await self._start_query(msg, audit_query.parse_query, self._answer_audit_query)

    async def _on_export(self, msg: Any) -> None:
        self.counters.exports += 1
        await self._start_query(msg, alert_export.parse_request, self._answer_export, self._exports,
                                MAX_CONCURRENT_EXPORTS)  # fmt: skip

    async def _start_query(
        self,
        msg: Any,
        parse: Callable[[Any], Any],
        answer: Callable[[Any, Any], Awaitable[None]],
        running: set[asyncio.Task[None]] | None = None,
        limit: int = MAX_CONCURRENT_QUERIES,
    ) -> None:
        """Parse a history query, refuse it when ``limit`` run, else answer it in a task (a scan of a large
        stream must not hold up registry updates)."""
        running = self._queries if running is None else running
        try:
            spec = parse(decode_request(msg.data))
        except LogQueryError as exc:
            self._count(exc.kind, f"request on {msg.subject} refused: {exc}")
            await self._reply(msg, error=exc)
            return
        if len(running) >= limit:
            self.counters.busy += 1
            await self._reply(msg, error=LogQueryError("", f"busy: {limit} requests of this kind running; retry"))
            return
        task = asyncio.ensure_future(answer(msg, spec))
        running.add(task)
        task.add_done_callback(running.discard)

    async def _answer_export(self, msg: Any, req: alert_export.ExportRequest) -> None:
        self._definitions = self._definitions or MessageDefinitions()  # its schema cache lives as long as we do
        online = {robot: r.status == reg.ONLINE for robot, r in self.registry.records.items()}
        user, role = self.export_capture
        try:
            result = await alert_export.run_export(self._nc, req, self._definitions, robot_online=online,
                                                   capture_user=user, capture_role=role)  # fmt: skip
        except LogQueryError as exc:
            self._count(exc.kind, f"alert export {req.alert_id} by {req.user} refused: {exc}")
            await self._reply(msg, error=exc)
            return
        except (nats.errors.Error, TimeoutError, ValueError, TypeError, KeyError, RobotPlatformError) as exc:
            # the requester always gets an answer (a stream read that failed, a record the writer refused)
            self._count(type(exc).__name__, f"alert export {req.alert_id} failed: {type(exc).__name__}: {exc}")
            await self._reply(msg, error=LogQueryError("", f"the export failed: {type(exc).__name__}"))
            return
        self._log.info(f"alert export {req.alert_id} ({result['robot']}, {req.minutes} min) by {req.user}: "
                       f"{result['bytes']} bytes, {result['included']}, notes: {result['notes']}")  # fmt: skip
        await self._reply(msg, result)

    async def _answer_alert_query(self, msg: Any, spec: alert_history.AlertQuery) -> None:
        try:
            result = await alert_history.run_query(self._nc, spec)
        except (nats.errors.Error, TimeoutError) as exc:
            self._count(type(exc).__name__, f"alert query failed: {exc}")
            await self._reply(msg, error=LogQueryError("", f"reading the alert history failed: {type(exc).__name__}"))
            return
        await self._reply(msg, result)

    async def _answer_audit_query(self, msg: Any, spec: audit_query.AuditQuery) -> None:
        try:
            result = await audit_query.run_query(self._nc, spec)
        except (nats.errors.Error, TimeoutError) as exc:
            self._count(type(exc).__name__, f"audit query failed: {exc}")
            await self._reply(msg, error=LogQueryError("", f"reading the audit trail failed: {type(exc).__name__}"))
            return
        await self._reply(msg, result)

    async def _answer_query(self, msg: Any, spec: log_query.QuerySpec) -> None:
        try:
            result = await log_query.run_query(self._nc, spec)
        except (nats.errors.Error, TimeoutError) as exc:
            self._count(type(exc).__name__, f"log query failed: {exc}")
            why = f"reading {streams.LOGS_HUB_STREAM} failed: {type(exc).__name__}"
            await self._reply(msg, error=LogQueryError("", why))
            return
        await self._reply(msg, result)

    async def _reply(self, msg: Any, result: Any = None, error: LogQueryError | None = None) -> None:
        if error is not None:
            self.counters.bad_requests += 1
            body: dict[str, Any] = {"ok": False, "code": error.kind, "error": str(error)}
            if error.field:
                body["field"] = error.field
        else:
            body = {"ok": True, "result": result}
        if msg.reply:
            with contextlib.suppress(nats.errors.Error, OSError):
                await msg.respond(msgpack.packb(body))

    def _count(self, kind: str, line: str) -> None:
        n = self.counters.errors.get(kind, 0) + 1
        self.counters.errors[kind] = n
        if n <= 10 or n & (n - 1) == 0:
            self._log.warning(f"{line} ({n} so far)")

    async def _put(self, record: RobotRecord) -> None:
        """Queue the record's write to the bucket (returns at once; the latest record per robot wins)."""
        self.writer.submit(record.robot_id, record.encode())

    async def _kv_put(self, key: str, value: bytes) -> None:
        await self._kv.put(key, value)

    def _kv_error(self, key: str, exc: BaseException) -> None:
        self.counters.kv_errors += 1
        self._log.warning(f"registry write for {key} failed: {type(exc).__name__}: {exc}")

    async def _ensure_audit_stream(self) -> None:
        """FLEET_AUDIT keeps ws_agent's audit events; without it (no JetStream, a stream already taking
        audit.>) the registry still runs and fleet.audit.query answers what a stream holds, if any."""
        config = streams.audit_hub_stream_config()
        try:
            await ensure_stream(self._nc, config)
        except (nats.errors.Error, TimeoutError, streams.StreamConflictError) as exc:
            self._log.error(f"cannot create/update {config.name}: {type(exc).__name__}: {exc}")

    async def _ensure_log_stream(self) -> None:
        config = streams.logs_hub_stream_config(sorted(self.sourced), self.log_max_bytes, self.log_max_age_s)
        try:
            await ensure_stream(self._nc, config)
        except (nats.errors.Error, TimeoutError) as exc:
            self._log.error(f"cannot create/update {config.name}: {type(exc).__name__}: {exc}")
