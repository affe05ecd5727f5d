"""ws_agent fleet names (/fleet/..., /robots/<id>/logs): mapping, role rules, the gateway's call and the
hub's delivery of the non-envelope subjects (logs, jobs and registry events). No servers."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import msgpack
import pytest

from robot_platform.jobs.nats_api import SUBJECT_PREFIX
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.rostypes import TypeRegistry
from robot_platform.ops import log_query, logs
from robot_platform.ops import registry as ops_registry
from robot_platform.ws import access, protocol
from robot_platform.ws.access import AccessControl
from robot_platform.ws.audit import Auditor
from robot_platform.ws.client_session import ClientSession
from robot_platform.ws.errors import TopicError
from robot_platform.ws.fanout import Hub
from robot_platform.ws.gateway import Gateway, GatewayLimits, api_values
from robot_platform.ws.http_api import fleet_permissions
from robot_platform.ws.topics import FLEET_SERVICES, FLEET_TOPICS, Mode, TopicMapper, payload_kind
from robot_platform.ws.user_roles import resolve_roles

SECRETS = {"vera": "viewer-pw", "otto": "operator-pw", "ada": "admin-pw"}
FLEET = TopicMapper(Mode.FLEET)
ROBOT = TopicMapper(Mode.ROBOT, "r1")


# ---------------------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("name", "subject"),
    [
        ("/fleet/registry/list", "fleet.registry.list"),
        ("/fleet/logs/query", "fleet.logs.query"),
        ("/fleet/jobs/create", "jobs.create"),
        ("/fleet/jobs/get", "jobs.get"),
        ("/fleet/jobs/list", "jobs.list"),
        ("/fleet/jobs/cancel", "jobs.cancel"),
    ],
)
def test_fleet_services_map_to_their_subjects(name: str, subject: str) -> None:
    target = FLEET.service(name)
    assert (target.subject, target.api, target.robot_id) == (subject, True, "")


def test_fleet_topics_and_robot_logs() -> None:
    assert FLEET.subscribe("/fleet/jobs/events").subject == "jobs.events"
    assert FLEET.subscribe("/fleet/registry/events").subject == "fleet.registry.events"
    assert FLEET.subscribe("/robots/r1/logs").subject == "robots.r1.logs.>"
    assert FLEET.subscribe("/robots/*/logs").subject == "robots.*.logs.>"
    assert ROBOT.subscribe("/logs").subject == "robots.r1.logs.>"  # the panel: its own robot's logs


def test_subjects_agree_with_the_services_that_serve_them() -> None:
    assert FLEET_SERVICES["/fleet/registry/list"] == ops_registry.LIST_SUBJECT
    assert FLEET_TOPICS["/fleet/registry/events"] == ops_registry.EVENTS_SUBJECT
    assert FLEET_SERVICES["/fleet/logs/query"] == log_query.QUERY_SUBJECT
    assert FLEET_SERVICES["/fleet/jobs/create"].split(".")[0] == SUBJECT_PREFIX
    assert FLEET_TOPICS["/fleet/jobs/events"] == f"{SUBJECT_PREFIX}.events"


@pytest.mark.parametrize(
    ("call", "name", "reason"),
    [
        ("service", "/fleet/jobs/delete", "not a fleet service"),
        ("service", "/fleet/jobs/events", "not a fleet service"),  # a topic, not a service
        ("subscribe", "/fleet/jobs/create", "not a fleet topic"),
        ("subscribe", "/fleet", "not a fleet topic"),
        ("publish", "/fleet/jobs/create", "cannot be published"),
        ("subscribe", "/robots/r1/logs/warn", "no sub-path"),
        ("subscribe", "/robots/*/logs/warn", "no sub-path"),
    ],
)
def test_bad_fleet_names_are_refused(call: str, name: str, reason: str) -> None:
    with pytest.raises(TopicError, match=reason):
        getattr(FLEET, call)(name)


@pytest.mark.parametrize("call", ["service", "subscribe"])
def test_robot_mode_refuses_fleet_names(call: str) -> None:
    name = "/fleet/jobs/list" if call == "service" else "/fleet/jobs/events"
    with pytest.raises(TopicError, match="fleet mode"):
        getattr(ROBOT, call)(name)


def test_payload_kinds() -> None:
    assert payload_kind("jobs.events") == "plain" and payload_kind("fleet.registry.events") == "plain"
    assert payload_kind("robots.r1.logs.warn") == "log"
    assert payload_kind("robots.r1.frames.front") == "frame"
    assert payload_kind("robots.r1.ros.logs") == "envelope"  # a ROS topic called /logs stays telemetry
    assert payload_kind("robots.r1.alerts") == "envelope"


# ---------------------------------------------------------------------------------------- roles
ROLES = resolve_roles({})
VIEWER_CALLS = ("fleet.registry.list", "fleet.logs.query", "jobs.get", "jobs.list")


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_every_role_reads_the_fleet(role: str) -> None:
    r = ROLES[role]
    for subject in ("jobs.events", "fleet.registry.events", "robots.*.logs.>", "robots.r1.logs.>"):
        assert r.allows("subscribe", subject), subject
    for subject in VIEWER_CALLS:
        assert r.allows("call", subject), subject


@pytest.mark.parametrize(("role", "allowed"), [("viewer", False), ("operator", False), ("admin", True)])
def test_only_admin_creates_and_cancels_jobs(role: str, allowed: bool) -> None:
    assert ROLES[role].allows("call", "jobs.create") is allowed
    assert ROLES[role].allows("call", "jobs.cancel") is allowed
    assert not ROLES[role].allows("publish", "jobs.create")  # fleet names are never commands


def test_whoami_fleet_verdicts() -> None:
    viewer, admin = fleet_permissions(ROLES["viewer"]), fleet_permissions(ROLES["admin"])
    assert viewer["call"] == {
        "/fleet/registry/list": True, "/fleet/logs/query": True, "/fleet/alerts/query": True,
        "/fleet/audit/query": False, "/fleet/jobs/create": False, "/fleet/jobs/get": True, "/fleet/jobs/list": True,
        "/fleet/jobs/cancel": False, "/fleet/jobs/catalogue": False, "/fleet/alerts/export": False,
    }  # fmt: skip
    assert fleet_permissions(ROLES["operator"])["call"]["/fleet/alerts/export"] is True  # an HTTP route, same rule
    assert all(admin["call"].values()) and all(viewer["subscribe"].values())
    custom = resolve_roles({"auditor": {"subscribe": ["jobs.events"]}})["auditor"]
    assert fleet_permissions(custom) == {
        "call": dict.fromkeys([*FLEET_SERVICES, "/fleet/alerts/export"], False),
        "subscribe": {"/fleet/jobs/events": True, "/fleet/registry/events": False},
    }


# ---------------------------------------------------------------------------------------- gateway
class FakeNats:
    """Records requests; answers each with the canned reply (pure logic of the gateway)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []
        self.reply: Any = ({}, msgpack.packb({"ok": True, "result": {"jobs": []}}))

    def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        self.sent.append((subject, body, headers))

    def request(self, subject: str, body: bytes, headers: dict[str, str], timeout: float, reply: Any) -> None:
        self.sent.append((subject, body, headers))
        reply(self.reply, "" if self.reply else "no service answers")

    def on(self, prefix: str) -> list[tuple[str, bytes, dict[str, str]]]:
        return [s for s in self.sent if s[0].startswith(prefix)]


@pytest.fixture
def gateway(tmp_path: Path) -> tuple[Gateway, FakeNats]:
    users = tmp_path / "users.yaml"
    roles = {"vera": "viewer", "otto": "operator", "ada": "admin"}
    users.write_text("users:\n" + "".join(
        f"  {u}: {{role: {r}, secret_hash: '{access.hash_secret(SECRETS[u])}'}}\n" for u, r in roles.items()
    ))  # fmt: skip
    nats = FakeNats()
    hub = Hub(lambda s, on: None, 1 << 20)
    gw = Gateway(TopicMapper(Mode.FLEET), AccessControl.from_file(users), hub, nats,
                 Auditor("control", nats.publish, logging.getLogger("test")), Codec(TypeRegistry()), "control",
                 GatewayLimits(max_client_msgs_per_s=0))  # fmt: skip
    return gw, nats


def replies(session: ClientSession) -> list[dict[str, Any]]:
    return [json.loads(f) for f in session.render(session.take(0) or [])]


def call(gw: Gateway, user: str, service: str, args: Any, rid: str = "c1") -> list[dict[str, Any]]:
    s = gw.open(gw.access.authenticate(user, SECRETS[user]), "127.0.0.1:9")
    assert gw.handle(s, json.dumps({"op": "call_service", "id": rid, "service": service, "args": args}))
    return replies(s)


def test_admin_create_is_forwarded_with_msgpack_args_and_audited(gateway: tuple[Gateway, FakeNats]) -> None:
    gw, nats = gateway
    nats.reply = ({}, msgpack.packb({"ok": True, "result": {"job_id": "j1", "status": "IN_PROGRESS"}}))
    args = {"document": {"operation": "deploy"}, "targets": ["r1"]}
    (resp,) = call(gw, "ada", "/fleet/jobs/create", args)
    assert resp == {"op": "service_response", "id": "c1", "service": "/fleet/jobs/create",
                    "values": {"job_id": "j1", "status": "IN_PROGRESS"}, "result": True}  # fmt: skip
    ((subject, body, headers),) = nats.on("jobs.")
    assert subject == "jobs.create" and msgpack.unpackb(body) == args
    assert headers["Rp-User"] == "ada" and "Robot-Id" not in headers
    (audit,) = [msgpack.unpackb(b) for s, b, _ in nats.on("audit.")]
    assert (audit["op"], audit["target"], audit["subject"], audit["allowed"]) == (
        "call_service", "/fleet/jobs/create", "jobs.create", True,
    )  # fmt: skip


def test_viewer_create_is_refused_counted_and_audited_list_works(gateway: tuple[Gateway, FakeNats]) -> None:
    gw, nats = gateway
    (status,) = call(gw, "vera", "/fleet/jobs/create", {"document": {}, "targets": ["r1"]})
    assert status["op"] == "status" and "may not call jobs.create" in status["msg"] and status["id"] == "c1"
    assert nats.on("jobs.") == [] and gw.counters.errors["denied"] == 1
    (audit,) = [msgpack.unpackb(b) for s, b, _ in nats.on("audit.")]
    assert (audit["user"], audit["allowed"], audit["subject"]) == ("vera", False, "jobs.create")
    (resp,) = call(gw, "vera", "/fleet/jobs/list", {})
    assert resp["result"] is True and resp["values"] == {"jobs": []}
    (status,) = call(gw, "otto", "/fleet/jobs/cancel", {"job_id": "j1"})
    assert "may not call jobs.cancel" in status["msg"]


def test_api_errors_become_failed_responses_with_the_reason(gateway: tuple[Gateway, FakeNats]) -> None:
    gw, nats = gateway
    nats.reply = ({}, msgpack.packb({"ok": False, "code": "bad_query", "error": "log query: limit: too big",
                                     "field": "limit"}))  # fmt: skip
    (resp,) = call(gw, "vera", "/fleet/logs/query", {"limit": 5000})
    assert resp["result"] is False and resp["values"] == "bad_query: limit: log query: limit: too big"
    assert gw.counters.errors["fleet_service_error"] == 1
    nats.reply = None
    (resp,) = call(gw, "vera", "/fleet/registry/list", {})
    assert resp["result"] is False and "no service answers" in resp["values"]
    nats.reply = ({}, msgpack.packb([1, 2]))
    (resp,) = call(gw, "vera", "/fleet/registry/list", {})
    assert resp["result"] is False and "not {ok, result}" in resp["values"]


def test_non_object_args_are_refused_before_any_request(gateway: tuple[Gateway, FakeNats]) -> None:
    gw, nats = gateway
    (status,) = call(gw, "ada", "/fleet/jobs/create", [1, 2])
    assert status["op"] == "status" and "args" in status["msg"] and nats.on("jobs.") == []


def test_api_values() -> None:
    assert api_values({"ok": True, "result": [1]}) == ([1], True)
    assert api_values({"ok": False, "code": "ResourceNotFound", "error": "no job x"}) == (
        "ResourceNotFound: no job x", False,
    )  # fmt: skip
    assert api_values({"result": 1})[1] is False and api_values("x")[1] is False


# ---------------------------------------------------------------------------------------- hub
def subscribed(hub: Hub, topic: str, subject: str) -> ClientSession:
    session = ClientSession(topic)
    hub.add_session(session)
    sub, _ = session.subscribe(protocol.Subscribe(topic=topic), subject)
    hub.link(session, sub)
    return session


def frames(session: ClientSession) -> list[dict[str, Any]]:
    return [json.loads(f) for f in session.render(session.take(0) or [])]


def test_hub_turns_log_records_into_entries_and_counts_bad_ones() -> None:
    hub = Hub(lambda s, on: None, 1 << 20)
    session = subscribed(hub, "/robots/*/logs", "robots.*.logs.>")
    body = logs.encode_record(100, 500_000_000, 30, "nav", "battery low", "nav.py", "tick", 42)
    assert hub.deliver("robots.r1.logs.warn", {"Robot-Id": "r1"}, body, "robots.*.logs.>") == 1
    (frame,) = frames(session)
    assert frame["topic"] == "/robots/*/logs" and frame["robot"] == "r1"
    assert frame["msg"] == {"robot": "r1", "stamp": 100.5, "level": "warn", "node": "nav", "msg": "battery low",
                            "file": "nav.py", "function": "tick", "line": 42}  # fmt: skip
    assert hub.deliver("robots.r1.logs.warn", {"Robot-Id": "r2"}, body, "robots.*.logs.>") == 0
    assert hub.deliver("robots.r1.logs.warn", None, b"\x93junk", "robots.*.logs.>") == 0
    assert hub.counters.errors["bad_log_record"] == 2 and frames(session) == []


def test_hub_forwards_plain_events_without_an_envelope() -> None:
    hub = Hub(lambda s, on: None, 1 << 20)
    jobs = subscribed(hub, "/fleet/jobs/events", "jobs.events")
    robots = subscribed(hub, "/fleet/registry/events", "fleet.registry.events")
    event = {"type": "job", "job_id": "j1", "status": "IN_PROGRESS"}
    assert hub.deliver("jobs.events", {"rp-type": "robot_platform/jobs/Event"}, msgpack.packb(event)) == 1
    record = {"robot_id": "r1", "status": "offline", "last": {"site": "s"}}
    assert hub.deliver("fleet.registry.events", None, msgpack.packb(record)) == 1
    ((frame,),) = (frames(jobs),)
    assert frame["msg"] == event and "robot" not in frame
    assert frames(robots)[0]["msg"] == record
