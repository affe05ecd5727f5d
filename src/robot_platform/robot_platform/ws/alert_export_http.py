"""ws_agent's ``/fleet/alerts/export``: the console's "Export ±N min" download of one MCAP file around an alert.

The file is built by fleet_registry (``fleet.alerts.export``, ops/alert_export.py); this is the console's
door to it, in two steps because building takes seconds and an HTTP request here must be answered within
the handshake timeout (websockets' ``open_timeout`` covers ``process_request``):

    GET /fleet/alerts/export?alert_id=<id>&minutes=<1..60>   -> 202 {export, poll}  (the request is sent)
    GET /fleet/alerts/export/<export>                       -> 202 {state: "running"} while it runs,
                                                               200 the file (attachment), once, or the error

Both need a login (Authorization header or ``token``) whose role may ``call fleet.alerts.export``: the
built-in operator and admin roles, not viewer (the file carries the robot's logs and telemetry out of
the console into a file anyone can copy, and it makes the robot work: a capture). Every start and every
refusal is audited (op ``export``); bad arguments get a 400 naming the argument, counted and logged.
Bounds: ``MAX_RUNNING`` exports at once on this agent (one per user), a finished file is kept for
``KEEP_S`` (at most ``MAX_KEPT``), fetched only by the user who asked, and gone once fetched.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from robot_platform.ws.access import Principal
from robot_platform.ws.audit import Auditor
from robot_platform.ws.http_reply import HttpReply, json_reply

EXPORT_PATH = "/fleet/alerts/export"
EXPORT_SUBJECT = "fleet.alerts.export"  # ops.alert_export.EXPORT_SUBJECT (not imported: mcap, rosbags)
EXPORT_TIMEOUT_S = 20.0  # the registry's budget (10 s) plus the capture and the transfer of the file
MAX_RUNNING = 2
MAX_KEPT = 4  # finished exports waiting to be fetched (each at most the hub's max_payload)
KEEP_S = 120.0
POLL_MS = 1000
ALERT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
MINUTES_RE = re.compile(r"^[0-9]{1,3}$")
EXPORT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
FILE_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]")
MAX_SUMMARY_CHARS = 4000
ERROR_STATUS = {"bad_query": 400, "not_found": 404}

RequestFn = Callable[[str, bytes, dict[str, str], float, Callable[[Any, str], None]], None]


@dataclass
class _Export:
    user: str
    alert_id: str
    started: float
    reply: HttpReply | None = None  # set when done
    done_at: float = 0.0


def _error(status: int, message: str, field: str = "", **headers: str) -> HttpReply:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    reply = json_reply(status, body)
    reply.headers.update(headers)
    return reply


def reply_to_http(result: Any, reason: str) -> HttpReply:
    """The registry's answer (or the request's failure) as the HTTP reply of the download."""
    if result is None:
        status = 504 if "timeout" in reason.lower() or "no reply" in reason.lower() else 502
        return _error(status, f"the fleet registry did not answer: {reason or 'no reply'}")
    _headers, data = result
    try:
        body = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return _error(502, "the fleet registry's reply is not msgpack")
    if not isinstance(body, dict):
        return _error(502, "the fleet registry's reply is not a map")
    if not body.get("ok"):
        error, code, field = str(body.get("error", "failed"))[:500], str(body.get("code", "")), body.get("field")
        if "busy" in error:
            status = 503
        elif code == "bad_query" and not field:  # the registry failed (a stream read), not the request
            status = 502
        else:
            status = ERROR_STATUS.get(code, 502)
        return _error(status, error, str(field or ""))
    r = body.get("result")
    if not isinstance(r, dict) or not isinstance(r.get("file"), bytes):
        return _error(502, "the fleet registry's reply holds no file")
    name = FILE_NAME_RE.sub("_", str(r.get("name") or "alert-export.mcap"))[:160] or "alert-export.mcap"
    summary = {k: r.get(k) for k in ("robot", "alert_id", "code", "window", "included", "notes", "bytes")}
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Alert-Export": json.dumps(summary, ensure_ascii=True)[:MAX_SUMMARY_CHARS],
    }  # fmt: skip
    return HttpReply(200, r["file"], "application/octet-stream", headers)


class AlertExports:
    """The two routes (see the module docstring); thread-safe (HTTP workers call, the NATS thread answers)."""

    def __init__(self, request: RequestFn, auditor: Auditor, refuse: Callable[[str], None],
                 log: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._request, self._auditor, self._refuse, self._log, self._clock = request, auditor, refuse, log, clock
        self._exports: dict[str, _Export] = {}
        self._lock = threading.Lock()
        self.started = self.refused = 0

    def handle(self, path: str, query: dict[str, list[str]], principal: Principal, client: str) -> HttpReply:
        if not principal.role.allows("call", EXPORT_SUBJECT):
            self._audit(principal, client, EXPORT_PATH, allowed=False, reason="role")
            return self._refused(403, f"role {principal.role.name} may not export (call {EXPORT_SUBJECT})",
                                 client, "role")  # fmt: skip
        if path == EXPORT_PATH:
            return self._start(query, principal, client)
        return self._fetch(path[len(EXPORT_PATH) + 1 :], principal, client)

    def _refused(self, status: int, message: str, client: str, kind: str, field: str = "", **headers: str) -> HttpReply:
        self.refused += 1
        self._refuse(kind)
        self._log(f"alert export refused for {client}: {message}")
        return _error(status, message, field, **headers)

    def _start(self, query: dict[str, list[str]], principal: Principal, client: str) -> HttpReply:
        unknown = sorted(set(query) - {"alert_id", "minutes", "token"})
        if unknown:
            return self._refused(400, f"unknown argument {unknown[0][:40]!r}", client, "bad_request", unknown[0][:40])
        alert_id = (query.get("alert_id") or [""])[-1]
        if not ALERT_ID_RE.fullmatch(alert_id):
            return self._refused(400, "alert_id must be an alert id (1-128 of [A-Za-z0-9_.:-])", client,
                                 "bad_request", "alert_id")  # fmt: skip
        minutes = (query.get("minutes") or ["5"])[-1]
        if not MINUTES_RE.fullmatch(minutes) or not 1 <= int(minutes) <= 60:
            return self._refused(400, "minutes must be an integer from 1 to 60", client, "bad_request", "minutes")
        now = self._clock()
        with self._lock:
            self._expire(now)
            running = [e for e in self._exports.values() if e.reply is None]
            if len(running) >= MAX_RUNNING or any(e.user == principal.user for e in running):
                busy = "an export of yours is running" if any(e.user == principal.user for e in running) else (
                    f"{MAX_RUNNING} exports are running")  # fmt: skip
                return self._refused(503, f"busy: {busy}; retry", client, "export_busy", **{"Retry-After": "2"})
            if len(self._exports) >= MAX_KEPT + MAX_RUNNING:
                return self._refused(503, "busy: finished exports wait to be fetched; retry", client, "export_busy",
                                     **{"Retry-After": "5"})  # fmt: skip
            export_id = secrets.token_urlsafe(18)
            self._exports[export_id] = _Export(principal.user, alert_id, now)
        self.started += 1
        self._audit(principal, client, f"{EXPORT_PATH}?alert_id={alert_id}&minutes={minutes}")
        body = msgpack.packb({"alert_id": alert_id, "minutes": int(minutes), "user": principal.user})
        headers = {"Content-Type": "application/msgpack", "Nats-Msg-Id": uuid.uuid4().hex, "Rp-User": principal.user}
        self._request(EXPORT_SUBJECT, body, headers, EXPORT_TIMEOUT_S,
                      lambda result, reason: self._done(export_id, result, reason))  # fmt: skip
        return json_reply(202, {"export": export_id, "poll": f"{EXPORT_PATH}/{export_id}", "retry_ms": POLL_MS})

    def _done(self, export_id: str, result: Any, reason: str) -> None:
        reply = reply_to_http(result, reason)
        with self._lock:
            export = self._exports.get(export_id)
            if export is not None:
                export.reply, export.done_at = reply, self._clock()
        if reply.status != 200:
            self._log(f"alert export {export_id[:6]}... failed: {reply.status} {reply.body[:200]!r}")

    def _fetch(self, export_id: str, principal: Principal, client: str) -> HttpReply:
        if not EXPORT_ID_RE.fullmatch(export_id):
            return self._refused(404, "no such export", client, "bad_request")
        with self._lock:
            self._expire(self._clock())
            export = self._exports.get(export_id)
            if export is None or export.user != principal.user:
                return self._refused(404, "no such export (unknown, expired, fetched, or another user's)", client,
                                     "bad_request")  # fmt: skip
            if export.reply is None:
                return json_reply(202, {"state": "running", "retry_ms": POLL_MS})
            del self._exports[export_id]
            return export.reply

    def _expire(self, now: float) -> None:
        """Drops finished exports older than KEEP_S, and requests long past their timeout (lock held)."""
        for key, e in list(self._exports.items()):
            if (e.reply is not None and now - e.done_at > KEEP_S) or now - e.started > EXPORT_TIMEOUT_S + KEEP_S:
                del self._exports[key]

    def _audit(self, p: Principal, client: str, target: str, allowed: bool = True, reason: str = "") -> None:
        self._auditor.record(robot="", session="", user=p.user, role=p.role.name, client=client, op="export",
                             target=target, subject=EXPORT_SUBJECT, allowed=allowed, reason=reason)  # fmt: skip
