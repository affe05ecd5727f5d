"""fleet.audit.query without a server: argument validation, decoding of ws_agent's audit events, filters;
and the console's operator requests (/robots/<id>/health/ack|silence) stamped with the logged-in user."""

from __future__ import annotations

import msgpack
import pytest

from robot_platform.ops.audit_query import AuditQuery, AuditQueryError, decode_event, parse_query
from robot_platform.ws.topics import Mode, TopicMapper
from robot_platform.ws.user_roles import DEFAULT_ROLES


def event(user: str = "otto", op: str = "call_service", target: str = "/robots/r1/health/silence",
          allowed: bool = True, ts: float = 1000.0) -> bytes:  # fmt: skip
    return msgpack.packb({"ts_ns": int(ts * 1e9), "agent": "control", "session": "s1", "user": user, "role": "operator",
                          "client": "127.0.0.1:5", "op": op, "target": target, "subject": "robots.r1.health.silence",
                          "type": "", "allowed": allowed, "reason": "" if allowed else "role operator"})  # fmt: skip


@pytest.mark.parametrize(
    ("args", "field"),
    [([], ""), ({"who": "x"}, "who"), ({"robot": "a.b"}, "robot"), ({"verdict": "maybe"}, "verdict"),
     ({"since_s": -1}, "since_s"), ({"since_s": 10, "until_s": 20}, "until_s"), ({"limit": 0}, "limit"),
     ({"limit": 5000}, "limit"), ({"user": "x" * 300}, "user"), ({"target": 5}, "target")],
)  # fmt: skip
def test_bad_arguments_name_the_field(args: object, field: str) -> None:
    with pytest.raises(AuditQueryError) as err:
        parse_query(args)
    assert err.value.field == field


def test_decode_and_filter() -> None:
    q = parse_query({"robot": "r1", "user": "otto", "target": "HEALTH/", "verdict": "allowed", "since_s": 60})
    assert q == AuditQuery("r1", "otto", "", "HEALTH/", "allowed", 60.0, 0.0, 200)
    entry = decode_event("audit.r1", event())
    assert entry is not None and entry["robot"] == "r1" and entry["at"] == 1000.0 and entry["allowed"]
    assert q.matches(entry, 990.0, 1010.0)
    assert not q.matches(entry, 1001.0, 1010.0)  # outside the range
    assert not q.matches(decode_event("audit.r1", event(user="vera")), 990.0, 1010.0)
    refused = decode_event("audit.r1", event(allowed=False))
    assert not q.matches(refused, 990.0, 1010.0) and AuditQuery(verdict="refused").matches(refused, 0, 2000)
    assert decode_event("audit.r1", b"\xc1") is None and decode_event("audit.r1", msgpack.packb([1])) is None


def test_operator_requests_map_to_the_health_node_and_only_operators_may_call_them() -> None:
    mapper = TopicMapper(Mode.FLEET)
    ack = mapper.service("/robots/r1/health/ack")
    assert (ack.subject, ack.as_user) == ("robots.r1.health.ack", True)
    assert mapper.service("/robots/r1/health/silence").subject == "robots.r1.health.silence"
    assert not mapper.service("/robots/r1/robot_sim/estop").as_user
    assert "robots.*.health.silence" not in DEFAULT_ROLES["viewer"]["call"]
    assert "robots.*.health.silence" in DEFAULT_ROLES["operator"]["call"]
    assert "fleet.audit.query" not in DEFAULT_ROLES["operator"]["call"]  # admin only (inherits operator)
