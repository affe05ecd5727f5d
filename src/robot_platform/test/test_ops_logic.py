"""Unit tests of the ops logic (no ROS, no servers): registry, logs, actions/roles, tunnel files."""

from __future__ import annotations

import asyncio
import json
import re

import msgpack
import pytest

from robot_platform.messaging import streams
from robot_platform.ops import logs
from robot_platform.ops.actions import ActionDispatcher, RollingBuffer, build_capture, encode_request
from robot_platform.ops.errors import ActionError, AnnouncementError, LogRecordError, TunnelConfigError
from robot_platform.ops.operator_roles import Roles, operator_permissions
from robot_platform.ops.registry import OFFLINE, ONLINE, Announcement, Registry, decode_announcement
from robot_platform.ops.tunnel import AccessConfig, TunnelSpec, autossh_argv, robot_authorized_key, ssh_config
from robot_platform.recording.msgdefs import MessageDefinitions

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOl0 comment"


def test_announcement_round_trip_and_identity_check() -> None:
    ann = Announcement("r1", site="s", packages={"a": "1"}, capabilities=("camera",), uptime_s=3.0, ssh_port=2201)
    assert decode_announcement("robots.r1.presence", ann.encode()) == ann
    with pytest.raises(AnnouncementError, match="names robot 'r1'"):
        decode_announcement("robots.r2.presence", ann.encode())
    with pytest.raises(AnnouncementError):
        decode_announcement("robots.r1.presence", b"not json")
    with pytest.raises(AnnouncementError):
        decode_announcement("robots.r1.presence", json.dumps({"robot_id": "r1", "uptime_s": -1}).encode())


def test_registry_online_offline_and_fleet_allowlist() -> None:
    reg = Registry(offline_after_s=3.0, fleet=["r1"])
    record, appeared = reg.apply(Announcement("r1"), now=100.0)
    assert appeared and record.status == ONLINE
    assert reg.sweep(now=102.0) == []
    assert [r.robot_id for r in reg.sweep(now=104.0)] == ["r1"] and record.status == OFFLINE
    _, appeared = reg.apply(Announcement("r1"), now=105.0)
    assert appeared and record.first_seen == 100.0 and record.announcements == 2
    with pytest.raises(AnnouncementError, match="not in the fleet"):
        reg.apply(Announcement("r9"), now=105.0)
    assert reg.rejected == 1
    assert record.effective_status(now=200.0, offline_after_s=3.0) == OFFLINE


def test_log_levels_subjects_and_filter() -> None:
    assert logs.parse_level("WARNING") == "warn" and logs.parse_level("40") == "error"
    with pytest.raises(ValueError):
        logs.parse_level("loud")
    assert logs.level_subjects("r1", "error") == ["robots.r1.logs.error", "robots.r1.logs.fatal"]
    body = logs.encode_record(10, 5, 30, "nav", "x" * 10000, "f.py", "fn", 3)
    entry = logs.decode_entry("robots.r1.logs.warn", {"Robot-Id": "r1"}, body)
    assert entry.level == "warn" and entry.node == "nav" and "chars cut" in entry.msg
    with pytest.raises(LogRecordError):
        logs.decode_entry("robots.r1.logs.warn", {"Robot-Id": "r2"}, body)
    flt = logs.LogFilter(node="na", grep=re.compile("x{3}"), since=5.0, until=20.0)
    assert flt.matches(entry)
    assert not logs.LogFilter(since=11.0).matches(entry)
    assert logs.parse_time("10m", now=1000.0) == 400.0
    assert logs.parse_time("1970-01-01T00:01:00Z") == 60.0


def test_hub_log_stream_sources_each_robot() -> None:
    config = streams.logs_hub_stream_config(["r2", "r1", "r1"])
    assert [s.name for s in config.sources] == ["LOGS_r1", "LOGS_r2"]
    assert config.sources[0].external.api == "$JS.r1.API"


ROLES = Roles.from_dict({"roles": {"viewer": ["list_graph"], "op": ["list_graph", "capture"]},
                         "users": {"bob": "viewer", "alice": "op"}})  # fmt: skip


def run(dispatcher: ActionDispatcher, subject: str, data: bytes) -> dict:
    return msgpack.unpackb(asyncio.run(dispatcher.handle(subject, data)), raw=False)


def test_dispatcher_allowlist_roles_and_bad_input() -> None:
    async def graph(args: dict) -> dict:
        return {"nodes": ["/a"]}

    d = ActionDispatcher("r1", ["list_graph", "capture"], ROLES, {"list_graph": graph})
    assert run(d, "robots.r1.ops.list_graph", encode_request("bob", "viewer")) == {
        "ok": True,
        "result": {"nodes": ["/a"]},
    }
    assert run(d, "robots.r1.ops.list_graph", encode_request("bob", "op"))["error"]["kind"] == "not_allowed"
    assert run(d, "robots.r1.ops.capture", encode_request("bob", "viewer"))["error"]["kind"] == "not_allowed"
    assert run(d, "robots.r1.ops.restart_app", encode_request("alice", "op"))["error"]["kind"] == "not_allowed"
    assert run(d, "robots.r1.ops.list_graph", b"\xc1garbage")["error"]["kind"] == "bad_request"
    assert run(d, "robots.r2.ops.list_graph", encode_request("bob", "viewer"))["error"]["kind"] == "bad_request"
    assert d.served == 1 and d.refused == 5


class AuditLines(list):
    def __bool__(self) -> bool:  # a logger stand-in, even while empty
        return True

    def info(self, line: str) -> None:
        self.append(line)

    warning = info


@pytest.mark.parametrize("user", ["u" * 60_000, "bob\nrobot_agent: ops action restart_app by admin done"])
def test_oversized_or_multiline_names_are_refused_with_a_short_audit_line(user: str) -> None:
    """A 60 kB user name was repeated in every refusal's audit line, which went to /rosout (held in DDS
    history) and back into the agent's log forwarding: its memory stayed 2.5x up after a flood."""
    audit = AuditLines()
    d = ActionDispatcher("r1", ["list_graph"], ROLES, {}, audit=audit)
    reply = run(d, "robots.r1.ops.list_graph", encode_request(user, "viewer"))
    assert reply["error"]["kind"] == "bad_request" and "printable" in reply["error"]["message"]
    assert len(audit) == 1 and len(audit[0]) < 300 and "\n" not in audit[0]


def test_ops_requests_wait_in_a_bounded_queue() -> None:
    """robot_agent's ops subscription gives nats-py explicit pending limits (not 512k msgs / 128 MB)."""
    from robot_platform.messaging.connect import Credentials
    from robot_platform.ops.agent import OPS_PENDING_BYTES, OPS_PENDING_MSGS, AgentLink, AgentSettings

    class FakeNc:
        def __init__(self) -> None:
            self.subscribed: list[dict] = []

        def jetstream(self) -> None:
            raise RuntimeError("not needed")

        async def subscribe(self, subject: str, **kw: object) -> object:
            self.subscribed.append({"subject": subject, **kw})
            return object()

    link = AgentLink(AgentSettings("r1", "nats://127.0.0.1:1", Credentials()), ActionDispatcher("r1", [], ROLES, {}),
                     AuditLines())  # fmt: skip
    nc = FakeNc()

    async def connected() -> None:
        async def no_stream(*_a: object) -> None:
            return None

        import robot_platform.ops.agent as agent_module

        original = agent_module.ensure_stream
        agent_module.ensure_stream = no_stream
        try:
            await link._on_connected(nc)
        finally:
            agent_module.ensure_stream = original

    asyncio.run(connected())
    [sub] = nc.subscribed
    assert sub["subject"] == "robots.r1.ops.*"
    assert sub["pending_msgs_limit"] == OPS_PENDING_MSGS <= 64
    assert sub["pending_bytes_limit"] == OPS_PENDING_BYTES <= 8 * 1024 * 1024


def test_operator_permissions_only_grant_role_actions() -> None:
    perms = operator_permissions("bob", ROLES.roles["viewer"])
    assert '"robots.*.ops.list_graph"' in perms and "capture" not in perms and '"$JS.API.>"' not in perms
    # replies: bob's own inbox only, never every operator's
    assert 'subscribe: { allow: ["_INBOX.bob.>"] }' in perms and '"_INBOX.>"' not in perms


def test_rolling_buffer_window_size_and_capture() -> None:
    DEFS = MessageDefinitions()
    buf = RollingBuffer(window_s=10.0, max_bytes=100)
    for i in range(30):
        buf.add("/a", b"0123456789", now=float(i))
    assert buf.size <= 100 and buf.dropped > 0
    assert [t for t, _, _ in buf.snapshot(["/a"], 3.0, now=29.0)] == [26.0, 27.0, 28.0, 29.0]
    with pytest.raises(ActionError):
        build_capture("r1", buf, {"/a": "std_msgs/msg/String"}, ["/b"], 1.0, 10_000, DEFS)
    with pytest.raises(ActionError):
        build_capture("r1", buf, {"/a": "std_msgs/msg/String"}, ["/a"], 60.0, 10_000, DEFS)


def test_tunnel_lines_refuse_injection() -> None:
    line = robot_authorized_key("r1", 2201, KEY)
    assert line.startswith('restrict,port-forwarding,permitlisten="127.0.0.1:2201",command="/bin/false" ssh-ed25519 ')
    with pytest.raises(TunnelConfigError):
        robot_authorized_key("r1", 2201, KEY + '\ncommand="/bin/sh" ' + KEY)
    spec = TunnelSpec("r1", "bastion.lan", 22, "rptunnel", 2201, "/k", "/kh", 22)
    assert "127.0.0.1:2201:127.0.0.1:22" in autossh_argv(spec)
    with pytest.raises(TunnelConfigError):
        TunnelSpec("r1", "bastion.lan -oProxyCommand=x", 22, "rptunnel", 2201, "/k", "/kh").check()
    access = AccessConfig("bastion.lan", 22, "rptunnel", "/id", "/kh", "robot", {"r1": 2201})
    text = ssh_config(access, "r1", 2201)
    assert "ProxyJump rp-bastion" in text and "StrictHostKeyChecking yes" in text
    with pytest.raises(TunnelConfigError):
        ssh_config(AccessConfig("b", 22, "u", "/id\nProxyCommand x", "/kh", "robot", {}), "r1", 2201)
