"""``fleet.alerts.export``: one MCAP file of what the site stores around one alert, for incident review.

Served by fleet_registry (it already reads ``FLEET_EVENTS`` and ``FLEET_LOGS`` for the alert and log
queries), reached by the console through ws_agent's ``GET /fleet/alerts/export`` (ws/alert_export_http.py:
login, role, audit, download). Request ``{alert_id, minutes?: 1..60 (default 5), user}`` (``user`` is set
by ws_agent to the logged-in user: who exported). The window is :func:`export_window`::

    start = raised_at - minutes,  end = min(cleared_at, or now if still active, raised_at + minutes)

The file (profile ros2, CDR, readable by the ``mcap`` library, rosbags, Foxglove and ``ros2 bag``) holds

* ``/robots/<id>/alerts`` (robot_platform_interfaces/msg/Alert): every message of this alert (raise,
  acknowledge, escalate, clear, even past ``end``) and every other alert message of that robot stamped
  inside the window, from ``FLEET_EVENTS``;
* ``/robots/<id>/rosout`` (rcl_interfaces/msg/Log): the robot's log records stamped inside the window,
  from ``FLEET_LOGS`` (at most ``MAX_LOG_LINES``);
* ``/robots/<id>/deploy/status`` (robot_platform_interfaces/msg/DeploymentStatus): deploy_service's job
  statuses stamped inside the window, from ``FLEET_EVENTS`` (``robots.<id>.deploy.status``);
* ``/robots/<id>/<topic>``: the robot's rolling capture buffer (robot_agent's ``capture`` action: /odom,
  /imu by default) where it overlaps the window, if the robot answers (``list_graph`` then ``capture``,
  as ``capture_user``/``capture_role``, which the robot's roles file must grant);
* a metadata record ``robot_platform``: alert id, robot, code, window, who exported and when, what was
  included, and a ``notes`` list saying what was left out and why (telemetry unavailable: robot offline,
  window older than its buffer, capture refused; logs cut to fit the size cap...).

Bounds: one scan of each stream within ``budget_s`` (the answer says ``truncated``), ``MAX_LOG_LINES``,
and the file size: at most ``EXPORT_MAX_BYTES`` and the hub's ``max_payload`` less a margin (the reply is
one NATS message); over it the capture is left out first, then the log lines farthest from the raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack
from mcap.reader import make_reader

from robot_platform.messaging import streams, subjects
from robot_platform.messaging.errors import BridgeError, SubjectError
from robot_platform.messaging.streams import EVENTS_HUB_STREAM
from robot_platform.ops import alert_history, log_query, logs
from robot_platform.ops.actions import call_action
from robot_platform.ops.errors import HubUnavailableError, LogQueryError, RemoteActionFailed
from robot_platform.recording.errors import RecordingError
from robot_platform.recording.mcap_out import RosMcapWriter
from robot_platform.recording.msgdefs import MessageDefinitions
from robot_platform.recording.recorder import recorded_topic

EXPORT_SUBJECT = "fleet.alerts.export"
EXPORT_KEYS = ("alert_id", "minutes", "user")
DEFAULT_MINUTES, MAX_MINUTES = 5, 60
ALERT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
MAX_USER_CHARS = 64
ALERT_TYPE = "robot_platform_interfaces/msg/Alert"
DEPLOY_TYPE = "robot_platform_interfaces/msg/DeploymentStatus"
EXPORT_MAX_BYTES = 6 * 1024 * 1024
PAYLOAD_MARGIN = 64 * 1024  # msgpack envelope and headers of the reply around the file
MAX_LOG_LINES = 50_000
MAX_ALERT_MESSAGES = 10_000
PAST_END_S = 60.0  # a log record stamped this long after the window ends stops the scan (it reads on in order)
EXPORT_BUDGET_S = 10.0  # below ws_agent's export timeout (ws/alert_export_http.py)
CAPTURE_TIMEOUT_S = 3.0
DEFAULT_CAPTURE_WINDOW_S = 30.0  # robot_agent's capture_window_s default, for agents that do not say theirs


class AlertExportError(LogQueryError):
    """An export request is invalid: which argument, and why (the reply shape of the history queries)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.args = (f"alert export: {field}: {reason}" if field else f"alert export: {reason}",)


class AlertNotFoundError(AlertExportError):
    kind = "not_found"


@dataclass(frozen=True)
class ExportRequest:
    alert_id: str
    minutes: int = DEFAULT_MINUTES
    user: str = "?"


def parse_request(args: Any) -> ExportRequest:
    """Validate a request; AlertExportError names the argument at fault."""
    args = AlertExportError.check_arguments(args, EXPORT_KEYS)
    alert_id = args.get("alert_id")
    if not isinstance(alert_id, str) or not ALERT_ID_RE.fullmatch(alert_id):
        raise AlertExportError("alert_id", "must be an alert id (1-128 of [A-Za-z0-9_.:-])")
    minutes = args.get("minutes", DEFAULT_MINUTES)
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_MINUTES:
        raise AlertExportError("minutes", f"must be an integer from 1 to {MAX_MINUTES}")
    user = args.get("user", "?")
    if not isinstance(user, str) or not 0 < len(user) <= MAX_USER_CHARS or not user.isprintable():
        raise AlertExportError("user", f"must be 1-{MAX_USER_CHARS} printable characters")
    return ExportRequest(alert_id, minutes, user)


def export_window(raised_at: float, cleared_at: float | None, now: float, minutes: int) -> tuple[float, float]:
    """``[raised_at - minutes, min(cleared_at or now, raised_at + minutes)]`` in epoch seconds."""
    span = minutes * 60.0
    end = min(cleared_at if cleared_at is not None else now, raised_at + span)
    return raised_at - span, max(end, raised_at)


def _stamp(body: dict[str, Any]) -> float:
    """An alert message's stamp (the history's reading of it); 0 for a malformed one."""
    try:
        return alert_history._stamp(body)
    except (TypeError, ValueError, AttributeError):
        return 0.0


def select_alerts(bodies: list[dict[str, Any]], robot: str, alert_id: str, start: float, end: float) -> list[dict]:
    """This alert's messages (all of them) and the robot's other alert messages stamped in [start, end]."""
    out = [
        b for b in bodies
        if b.get("robot_id") == robot and (b.get("alert_id") == alert_id or start <= _stamp(b) <= end)
    ]  # fmt: skip
    return out[-MAX_ALERT_MESSAGES:]


@dataclass(frozen=True)
class Captured:
    """One message of the robot's capture: its topic on the robot, type, schema text and CDR."""

    topic: str
    type_name: str
    schema: str
    data: bytes
    log_time_ns: int


def read_capture(file: bytes, start: float, end: float) -> list[Captured]:
    """The messages of a capture MCAP stamped in [start, end] (the robot's buffer is its last N s)."""
    out = []
    reader = make_reader(io.BytesIO(file))
    lo, hi = int(start * 1e9), int(end * 1e9)
    for schema, channel, message in reader.iter_messages():
        if schema is not None and lo <= message.log_time <= hi:
            text = schema.data.decode("utf-8", "replace")
            out.append(Captured(channel.topic, schema.name, text, bytes(message.data), message.log_time))
    return out


@dataclass
class ExportContent:
    """What the streams and the robot gave for one export (input of :func:`build_file`)."""

    robot: str
    history: alert_history.AlertHistory
    start: float
    end: float
    alerts: list[dict[str, Any]] = field(default_factory=list)
    logs: list[logs.LogEntry] = field(default_factory=list)
    deploy: list[dict[str, Any]] = field(default_factory=list)  # deploy.jobs.Status dicts (stamp: float s)
    capture: list[Captured] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _iso(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def file_name(robot: str, code: str, raised_at: float) -> str:
    """``alert-<robot>-<code>-<UTC raise time>.mcap``, only [A-Za-z0-9_.-] (a download name, no path)."""
    when = datetime.fromtimestamp(raised_at, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{robot}-{code}")[:96].strip(".")
    return f"alert-{safe}-{when}.mcap"


def _alert_cdr(defs: MessageDefinitions, body: dict[str, Any]) -> bytes:
    values = [{"key": str(kv.get("key", "")), "value": str(kv.get("value", ""))}
              for kv in body.get("values") or [] if isinstance(kv, dict)]  # fmt: skip
    fields = {k: body.get(k) for k in ("stamp", "robot_id", "alert_id", "code", "severity", "message", "source",
                                       "active", "acknowledged", "acknowledged_by")}  # fmt: skip
    return defs.serialize(ALERT_TYPE, {**fields, "values": values})


def _log_cdr(defs: MessageDefinitions, e: logs.LogEntry) -> bytes:
    sec = int(e.time)
    return defs.serialize(logs.LOG_TYPE, {
        "stamp": {"sec": sec, "nanosec": min(999_999_999, round((e.time - sec) * 1e9))},
        "level": logs.LEVELS.get(e.level, 20), "name": e.node, "msg": e.msg, "file": e.file,
        "function": e.function, "line": max(0, e.line),
    })  # fmt: skip


def _deploy_cdr(defs: MessageDefinitions, status: dict[str, Any]) -> bytes:
    stamp = float(status.get("stamp") or 0.0)
    fields = {k: status.get(k) for k in ("robot_id", "job_id", "package_name", "version", "previous_version",
                                         "state", "step", "progress", "reason")}  # fmt: skip
    return defs.serialize(DEPLOY_TYPE, {**fields, "stamp": {"sec": int(stamp), "nanosec": int(stamp % 1 * 1e9)}})


def _write(content: ExportContent, defs: MessageDefinitions, meta: dict[str, str]) -> tuple[bytes, dict[str, int]]:
    robot, records = content.robot, []
    for status in content.deploy:
        with contextlib.suppress(BridgeError, TypeError, ValueError):
            records.append((int(float(status["stamp"]) * 1e9), recorded_topic(robot, "/deploy/status"),
                            DEPLOY_TYPE, _deploy_cdr(defs, status)))  # fmt: skip
    for body in content.alerts:
        with contextlib.suppress(BridgeError, AttributeError):  # a record that does not fit the type is left out
            records.append((int(_stamp(body) * 1e9), recorded_topic(robot, "/alerts"), ALERT_TYPE,
                            _alert_cdr(defs, body)))  # fmt: skip
    for entry in content.logs:
        with contextlib.suppress(BridgeError):
            records.append((int(entry.time * 1e9), recorded_topic(robot, "/rosout"), logs.LOG_TYPE,
                            _log_cdr(defs, entry)))  # fmt: skip
    for m in content.capture:
        with contextlib.suppress(BridgeError):  # a type name that is not pkg/msg/Type
            defs.add_text(m.type_name, m.schema)
            records.append((m.log_time_ns, recorded_topic(robot, m.topic), m.type_name, m.data))
    records.sort(key=lambda r: r[0])
    counts: dict[str, int] = {}
    for _, topic, _, _ in records:
        counts[topic] = counts.get(topic, 0) + 1
    stream = io.BytesIO()
    writer = RosMcapWriter(stream, defs, metadata={**meta, "included": json.dumps(counts, sort_keys=True),
                                                   "notes": json.dumps(content.notes)})  # fmt: skip
    for t, topic, type_name, data in records:
        writer.add(topic, type_name, data, t)
    writer.finish()
    return stream.getvalue(), counts


def build_file(content: ExportContent, defs: MessageDefinitions, meta: dict[str, str],
               max_bytes: int) -> tuple[bytes, dict[str, int]]:  # fmt: skip
    """The MCAP file and its per-topic message counts, within ``max_bytes``: over it, the capture is left
    out, then the log lines farthest from the raise (halving), each said in ``content.notes``."""
    raised = content.history.raised_at or content.start
    while True:
        try:
            file, counts = _write(content, defs, meta)
        except RecordingError as exc:  # a captured topic whose type differs from a known one
            if not content.capture:
                raise AlertExportError("", f"the file cannot be written: {exc}") from None
            content.notes.append(f"capture left out: {exc}")
            content.capture = []
            continue
        if len(file) <= max_bytes:
            return file, counts
        if content.capture:
            content.notes.append(f"capture left out: the file would exceed {max_bytes} bytes")
            content.capture = []
        elif len(content.logs) > 1:
            keep = sorted(content.logs, key=lambda e: abs(e.time - raised))[: len(content.logs) // 2]
            content.notes.append(f"{len(content.logs) - len(keep)} log lines farthest from the raise left out "
                                 f"to stay under {max_bytes} bytes")  # fmt: skip
            content.logs = sorted(keep, key=lambda e: e.time)
        else:
            raise AlertExportError("", f"the export exceeds {max_bytes} bytes even without logs and telemetry")


async def _robot_call(nc: Any, robot: str, action: str, user: str, role: str, args: dict[str, Any]) -> Any:
    """One remote action (:func:`.actions.call_action`); RuntimeError with the reason a note gives when the
    robot does not serve it."""
    try:
        return await call_action(nc, robot, action, user, role, args, CAPTURE_TIMEOUT_S)
    except RemoteActionFailed as exc:
        if exc.error_kind == "no_responders":
            raise RuntimeError("robot_agent is not reachable (robot offline or link down)") from None
        if exc.error_kind == "timeout":
            why = f"no reply from the robot within {CAPTURE_TIMEOUT_S:g} s (offline or link down)"
            raise RuntimeError(why) from None
        raise RuntimeError(f"the robot refused {action}: {exc.error_kind}: {exc.remote_message}") from None


async def fetch_capture(nc: Any, content: ExportContent, now: float, user: str, role: str) -> None:
    """The robot's buffered topics over the window into ``content.capture``, or a note saying why not."""
    robot, start, end = content.robot, content.start, content.end
    try:
        graph = await _robot_call(nc, robot, "list_graph", user, role, {})
        topics = [t for t in graph.get("buffered", []) if isinstance(t, str)]
        window_s = float(graph.get("capture_window_s") or DEFAULT_CAPTURE_WINDOW_S)
        if not topics:
            content.notes.append("telemetry not available: the robot buffers no topics (capture_topics)")
            return
        if end < now - window_s:
            content.notes.append(f"telemetry not available: the window ended before the robot's capture buffer "
                                 f"(its last {window_s:g} s)")  # fmt: skip
            return
        seconds = max(1.0, min(window_s, now - start))
        result = await _robot_call(nc, robot, "capture", user, role, {"topics": topics, "seconds": seconds})
        content.capture = read_capture(bytes(result["file"]), start, end)
        if start < now - window_s:
            content.notes.append(f"telemetry only from {_iso(now - window_s)}: the robot buffers its last "
                                 f"{window_s:g} s")  # fmt: skip
    except RuntimeError as exc:
        content.notes.append(f"telemetry not available: {exc}")
    except (KeyError, TypeError, ValueError, AttributeError, msgpack.UnpackException) as exc:
        content.notes.append(f"telemetry not available: unreadable capture reply ({type(exc).__name__})")


async def run_export(nc: Any, req: ExportRequest, defs: MessageDefinitions, *, robot_online: dict[str, bool],
                     capture_user: str, capture_role: str, stream: str = EVENTS_HUB_STREAM,
                     budget_s: float = EXPORT_BUDGET_S) -> dict[str, Any]:  # fmt: skip
    """The reply of ``fleet.alerts.export`` (see the module docstring); AlertNotFoundError for an unknown id."""
    now, deadline = time.time(), time.monotonic() + budget_s
    bodies, truncated = await alert_history.read_alerts(nc, alert_history.AlertQuery(), stream, budget_s / 3)
    history = alert_history.fold(bodies).get(req.alert_id)
    if history is None:
        more = " (the alert history scan was cut short: retry)" if truncated else ""
        raise AlertNotFoundError("alert_id", f"no alert {req.alert_id!r} in {stream}{more}")
    robot, raised = history.robot, history.raised_at or now
    try:  # the robot id goes into subjects ('*' would read every robot's logs)
        subjects.check_robot_id(robot)
    except SubjectError:
        raise AlertExportError("alert_id", f"alert {req.alert_id!r} names no valid robot id") from None
    start, end = export_window(raised, history.cleared_at, now, req.minutes)
    content = ExportContent(robot, history, start, end, select_alerts(bodies, robot, req.alert_id, start, end))
    if truncated:
        content.notes.append("alert history scan cut short (scan cap or time budget): other alerts may be missing")
    if robot_online.get(robot) is False:
        content.notes.append("telemetry not available: the robot is offline (fleet registry)")
        capture = None
    else:
        capture = asyncio.ensure_future(fetch_capture(nc, content, now, capture_user, capture_role))
    await asyncio.gather(_read_logs(nc, content, deadline), _read_deploy(nc, content, stream, budget_s / 3))
    if capture is not None:
        await capture
    meta = {
        "export": "alert", "alert_id": req.alert_id, "robot": robot, "code": history.code,
        "severity": str(history.severity), "message": history.message, "raised_at": _iso(raised),
        "cleared_at": _iso(history.cleared_at), "minutes": str(req.minutes), "window_start": _iso(start),
        "window_end": _iso(end), "exported_by": req.user, "exported_at": _iso(now),
    }  # fmt: skip
    max_bytes = min(EXPORT_MAX_BYTES, int(getattr(nc, "max_payload", 0) or EXPORT_MAX_BYTES) - PAYLOAD_MARGIN)
    # CPU-bound (50,000 log lines: about 3 s): a worker thread, so presence and queries go on meanwhile.
    # ``defs`` is not thread-safe: fleet_registry runs one export at a time (MAX_CONCURRENT_EXPORTS).
    file, counts = await asyncio.to_thread(build_file, content, defs, meta, max_bytes)
    return {
        "file": file, "name": file_name(robot, history.code, raised), "bytes": len(file), "robot": robot,
        "alert_id": req.alert_id, "code": history.code, "window": {"start": start, "end": end},
        "included": counts, "notes": content.notes,
    }  # fmt: skip


async def _read_logs(nc: Any, content: ExportContent, deadline: float) -> None:
    """The robot's log records stamped in the window (FLEET_LOGS), at most MAX_LOG_LINES, by ``deadline``."""
    full, past = asyncio.Event(), asyncio.Event()

    def keep(entry: logs.LogEntry) -> None:
        if entry.time > content.end + PAST_END_S:  # the stream is in the robot's order: the window is behind us
            past.set()
        elif entry.time <= content.end:
            content.logs.append(entry)
            if len(content.logs) >= MAX_LOG_LINES:
                full.set()
        if full.is_set() or past.is_set():
            stop.set()

    stop = asyncio.Event()
    flt = logs.LogFilter(since=content.start)
    try:
        _, out_of_time = await log_query.scan_logs(nc, content.robot, "debug", flt, keep, stop=stop,
                                                   deadline=deadline)  # fmt: skip
    except HubUnavailableError:
        content.notes.append(f"logs not available: no {streams.LOGS_HUB_STREAM} stream on the hub")
        return
    del content.logs[MAX_LOG_LINES:]  # the batch that reached the cap
    if full.is_set():
        content.notes.append(f"logs cut at {MAX_LOG_LINES} lines (the first ones of the window)")
    elif out_of_time:
        content.notes.append("logs cut short: the time budget ran out before the end of the window")


async def _read_deploy(nc: Any, content: ExportContent, stream: str, budget_s: float) -> None:
    """deploy_service's job statuses of the robot stamped in the window (its FLEET_EVENTS subject)."""
    q = alert_history.AlertQuery(robot=content.robot)
    subject = f"{subjects.ROOT}.{content.robot}.deploy.status"
    bodies, truncated = await alert_history.read_alerts(nc, q, stream, budget_s, subject=subject)
    for body in bodies:
        with contextlib.suppress(TypeError, ValueError):
            if content.start <= float(body.get("stamp")) <= content.end:
                content.deploy.append(body)
    del content.deploy[:-MAX_ALERT_MESSAGES]
    if truncated:
        content.notes.append("deployment statuses scan cut short (scan cap or time budget)")
