"""ws_agent's /fleet/alerts/export routes without sockets or NATS: roles, arguments, start/poll/fetch, bounds."""

from __future__ import annotations

import json
from typing import Any

import msgpack

from robot_platform.ws import alert_export_http as ax
from robot_platform.ws.access import Principal
from robot_platform.ws.user_roles import resolve_roles

ROLES = resolve_roles({})


class FakeAuditor:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def record(self, **event: Any) -> None:
        self.events.append(event)


class Harness:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, Any]] = []
        self.refused: list[str] = []
        self.logged: list[str] = []
        self.now = 1000.0
        self.auditor = FakeAuditor()
        self.api = ax.AlertExports(self.request, self.auditor, self.refused.append, self.logged.append,
                                   clock=lambda: self.now)  # fmt: skip

    def request(self, subject: str, body: bytes, headers: dict, timeout: float, reply: Any) -> None:
        self.requests.append((subject, msgpack.unpackb(body), reply))

    def get(self, path: str, user: str = "olga", role: str = "operator", **query: str) -> Any:
        return self.api.handle(path, {k: [v] for k, v in query.items()}, Principal(user, ROLES[role]), "1.2.3.4:5")


def ok_reply(file: bytes = b"MCAP") -> tuple[dict, bytes]:
    result = {"file": file, "name": "alert-r1-X/../y-1.mcap", "robot": "r1", "alert_id": "a1", "bytes": len(file),
              "included": {"/robots/r1/alerts": 2}, "notes": ["telemetry not available: robot offline"]}  # fmt: skip
    return {}, msgpack.packb({"ok": True, "result": result})


def test_viewer_is_refused_and_audited_operator_and_admin_may_export() -> None:
    h = Harness()
    reply = h.get(ax.EXPORT_PATH, role="viewer", alert_id="a1")
    assert reply.status == 403 and "viewer" in json.loads(reply.body)["error"]
    assert h.auditor.events[-1]["allowed"] is False and h.auditor.events[-1]["reason"] == "role"
    assert not h.requests and h.refused == ["role"]
    for role in ("operator", "admin"):
        assert h.get(ax.EXPORT_PATH, user=role, role=role, alert_id="a1").status == 202
    assert h.auditor.events[-1]["op"] == "export" and h.auditor.events[-1]["allowed"] is True


def test_bad_arguments_are_400_naming_the_argument_and_counted() -> None:
    h = Harness()
    cases = [({"alert_id": "../etc"}, "alert_id"), ({}, "alert_id"), ({"alert_id": "a1", "minutes": "0"}, "minutes"),
             ({"alert_id": "a1", "minutes": "61"}, "minutes"), ({"alert_id": "a1", "minutes": "5.5"}, "minutes"),
             ({"alert_id": "a1", "robot": "r1"}, "robot")]  # fmt: skip
    for query, field in cases:
        reply = h.get(ax.EXPORT_PATH, **query)
        assert reply.status == 400 and json.loads(reply.body)["field"] == field, query
    assert h.refused == ["bad_request"] * len(cases) and len(h.logged) == len(cases) and not h.requests


def test_start_poll_fetch_once_by_the_same_user_only() -> None:
    h = Harness()
    started = json.loads(h.get(ax.EXPORT_PATH, alert_id="a1", minutes="7").body)
    subject, body, reply = h.requests[0]
    assert subject == ax.EXPORT_SUBJECT and body == {"alert_id": "a1", "minutes": 7, "user": "olga"}
    assert h.get(started["poll"]).status == 202  # running
    assert h.get(started["poll"], user="mallory").status == 404  # somebody else's
    reply(ok_reply(), "")
    got = h.get(started["poll"])
    assert got.status == 200 and got.body == b"MCAP" and got.content_type == "application/octet-stream"
    disposition = got.headers["Content-Disposition"]
    assert disposition == 'attachment; filename="alert-r1-X_.._y-1.mcap"'  # no path separators
    assert json.loads(got.headers["X-Alert-Export"])["notes"] == ["telemetry not available: robot offline"]
    assert h.get(started["poll"]).status == 404  # fetched once
    assert h.get(ax.EXPORT_PATH + "/x").status == 404


def test_registry_errors_become_http_statuses() -> None:
    def status(body: dict[str, Any] | None, reason: str = "") -> int:
        return ax.reply_to_http(None if body is None else ({}, msgpack.packb(body)), reason).status

    assert status({"ok": False, "code": "not_found", "error": "no alert 'x'", "field": "alert_id"}) == 404
    assert status({"ok": False, "code": "bad_query", "error": "alert export: minutes: ...", "field": "minutes"}) == 400
    assert status({"ok": False, "code": "bad_query", "error": "reading the streams failed: TimeoutError"}) == 502
    assert status({"ok": False, "code": "bad_query", "error": "busy: 1 requests running; retry"}) == 503
    assert status(None, "timeout") == 504 and status(None, "the NATS link is not running") == 502
    assert ax.reply_to_http(({}, b"\xc1"), "").status == 502


def test_concurrency_one_per_user_and_a_few_in_all_and_expiry() -> None:
    h = Harness()
    assert h.get(ax.EXPORT_PATH, alert_id="a1").status == 202
    assert h.get(ax.EXPORT_PATH, alert_id="a2").status == 503  # olga's first one still runs
    assert h.get(ax.EXPORT_PATH, user="u2", alert_id="a1").status == 202
    busy = h.get(ax.EXPORT_PATH, user="u3", alert_id="a1")
    assert busy.status == 503 and busy.headers["Retry-After"]
    h.now += ax.EXPORT_TIMEOUT_S + ax.KEEP_S + 1  # requests that never answered are forgotten
    assert h.get(ax.EXPORT_PATH, user="u3", alert_id="a1").status == 202
