"""The registry's console API logic (no servers except ``nats-server -t``): log query arguments, the
registry event throttle, the NATS users of the console agent and fleet_registry."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from robot_platform.ops import log_query, logs
from robot_platform.ops.errors import LogQueryError
from robot_platform.ops.registry import OFFLINE, Announcement, EventThrottle, Registry
from robot_platform.ops.registry_service import decode_request
from robot_platform.site_setup.nats_config import (
    CONSOLE_PUBLISH,
    CONSOLE_SUBSCRIBE,
    REGISTRY_SUBSCRIBE,
    Endpoint,
    Fleet,
    main,
    render_hub,
    service_user_entry,
)  # fmt: skip
from robot_platform.ws.topics import FLEET_SERVICES, FLEET_TOPICS
from robot_platform.ws.user_roles import ADMIN_JOBS_CALL, DEFAULT_ROLES, subject_matches


# ---------------------------------------------------------------------------------------- log query
def test_query_defaults_and_full_spec() -> None:
    assert log_query.parse_query({}) == log_query.QuerySpec("*", "debug", "", "", None, 200)
    spec = log_query.parse_query({"robot": "r1", "level": "WARNING", "node": "nav", "grep": "bat+ery",
                                  "since_s": 60, "limit": 1000})  # fmt: skip
    assert spec == log_query.QuerySpec("r1", "warn", "nav", "bat+ery", 60.0, 1000)
    flt = spec.log_filter(now=1000.0)
    assert flt.since == 940.0 and flt.node == "nav" and flt.grep is not None


@pytest.mark.parametrize(
    ("args", "field", "reason"),
    [
        ([1], "", "must be an object"),
        ({"level": "loud"}, "level", "unknown log level"),
        ({"limit": 1001}, "limit", "from 1 to 1000"),
        ({"limit": 0}, "limit", "from 1 to 1000"),
        ({"limit": "10"}, "limit", "integer"),
        ({"limit": True}, "limit", "integer"),
        ({"since_s": -1}, "since_s", ">= 0"),
        ({"since_s": "1h"}, "since_s", "number"),
        ({"robot": "r.1"}, "robot", "robot id must be"),
        ({"grep": "("}, "grep", "regular expression"),
        ({"grep": "x" * 300}, "grep", "at most"),
        ({"node": 3}, "node", "string"),
        ({"levle": "warn"}, "levle", "unknown argument"),
    ],
)
def test_bad_query_arguments_name_the_field(args: Any, field: str, reason: str) -> None:
    with pytest.raises(LogQueryError, match=reason) as info:
        log_query.parse_query(args)
    assert info.value.field == field and info.value.kind == "bad_query"


def test_entry_dict_is_what_the_console_gets() -> None:
    body = logs.encode_record(10, 250_000_000, 40, "nav", "stuck", "nav.py", "plan", 7)
    entry = logs.decode_entry("robots.r2.logs.error", {"Robot-Id": "r2"}, body)
    assert entry.to_dict() == {"robot": "r2", "stamp": 10.25, "level": "error", "node": "nav", "msg": "stuck",
                               "file": "nav.py", "function": "plan", "line": 7}  # fmt: skip


def test_request_bodies() -> None:
    assert decode_request(b"") == {} and decode_request(b'{"limit": 3}') == {"limit": 3}
    with pytest.raises(LogQueryError, match="neither msgpack nor JSON"):
        decode_request(b"\xc1not")
    with pytest.raises(LogQueryError, match="larger than"):
        decode_request(b" " * (70 * 1024))


# ---------------------------------------------------------------------------------------- registry events
def test_event_throttle_publishes_changes_at_once_and_refreshes_at_most_every_interval() -> None:
    reg = Registry(offline_after_s=10.0)
    throttle = EventThrottle(refresh_s=5.0)
    record, _ = reg.apply(Announcement("r1", site="a", uptime_s=1.0, sent_at=1.0), now=100.0)
    assert throttle.should_publish(record, 100.0)  # new robot
    reg.apply(Announcement("r1", site="a", uptime_s=2.0, sent_at=2.0), now=101.0)
    assert not throttle.should_publish(record, 101.0)  # only last_seen / uptime moved
    reg.apply(Announcement("r1", site="b", uptime_s=3.0), now=102.0)
    assert throttle.should_publish(record, 102.0)  # content changed
    reg.apply(Announcement("r1", site="b", uptime_s=4.0), now=103.0)
    assert not throttle.should_publish(record, 103.0)
    assert throttle.should_publish(record, 107.5)  # refresh: last_seen after refresh_s
    assert [r.robot_id for r in reg.sweep(now=120.0)] == ["r1"] and record.status == OFFLINE
    assert throttle.should_publish(record, 120.1)  # offline at once
    reg.apply(Announcement("r1", site="b"), now=121.0)
    assert throttle.should_publish(record, 121.0)  # back online at once
    assert throttle.suppressed == 2
    with pytest.raises(ValueError):
        EventThrottle(0.0)


# ---------------------------------------------------------------------------------------- NATS users
def test_console_user_may_do_what_the_agent_roles_allow_and_the_fleet_services() -> None:
    """Every subject a built-in ws role may reach must be allowed to the agent's NATS user, or the
    agent would accept an operation that the hub then silently refuses."""
    for role in DEFAULT_ROLES.values():
        for pattern in role.get("subscribe", []):
            assert any(subject_matches(p, pattern) for p in CONSOLE_SUBSCRIBE), pattern
        for pattern in (*role.get("publish", []), *role.get("call", [])):
            assert any(subject_matches(p, pattern) for p in CONSOLE_PUBLISH), pattern
    for subject in (*FLEET_SERVICES.values(), *ADMIN_JOBS_CALL):
        assert subject in CONSOLE_PUBLISH
    for subject in FLEET_TOPICS.values():
        assert subject in CONSOLE_SUBSCRIBE
    # the agent reads a robot's telemetry from its overview copy while every client is slow (ws/overview.py)
    assert any(subject_matches(p, "robots.*.overview.>") for p in CONSOLE_SUBSCRIBE)
    assert "_INBOX.>" not in CONSOLE_PUBLISH and ">" not in CONSOLE_PUBLISH  # it answers no requests
    assert {"fleet.registry.list", "fleet.logs.query"} <= set(REGISTRY_SUBSCRIBE)


def test_service_user_entries_parse_in_nats_server(tmp_path: Path) -> None:
    exe = shutil.which("nats-server")
    assert exe, "nats-server not on PATH"
    extra = [service_user_entry(u, u[0] * 20) for u in ("console", "fleet_registry", "jobs")]
    conf = tmp_path / "hub.conf"
    conf.write_text(
        render_hub(Fleet({"r1": "a" * 20}, "b" * 20), Endpoint(port=4000), 7000, str(tmp_path), extra_users=extra)
    )
    result = subprocess.run([exe, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr + result.stdout
    with pytest.raises(ValueError, match="unknown service user"):
        service_user_entry("root", "c" * 20)
    with pytest.raises(ValueError):
        service_user_entry("console", 'x"y' * 8)


def test_cli_service_users_flag_writes_their_passwords(tmp_path: Path) -> None:
    main(["--robots", "r1", "--out", str(tmp_path / "out"), "--service-users"])
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["console.password", "control.password", "fleet_registry.password", "hub.conf",
                     "jobs.password", "r1.conf", "r1.password"]  # fmt: skip
    hub = (tmp_path / "out" / "hub.conf").read_text()
    assert "user: console," in hub and "user: fleet_registry," in hub and "user: jobs," in hub
    assert (tmp_path / "out" / "console.password").read_text().strip() in hub
