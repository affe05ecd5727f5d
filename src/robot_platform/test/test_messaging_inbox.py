"""Per-user reply inboxes (messaging/inbox.py): one user's permission never covers another's replies."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import nats.errors
import pytest

from robot_platform.messaging import inbox
from robot_platform.messaging.inbox import (
    connect_options,
    inbox_prefix,
    inbox_subjects,
    reply_subject,
    robot_reply_subjects,
    target_robot,
)


def covers(pattern: str, subject: str) -> bool:
    """NATS subject matching for the patterns used here (``*`` one token, ``>`` the rest)."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def test_each_user_reads_only_its_own_replies() -> None:
    users = ["alice", "alice.smith", "alice.smith.x", "alice_smith", "bob", "console", "fleet_registry"]
    for owner, other in itertools.permutations(users, 2):
        reply = f"{inbox_prefix(other)}.AbCdEf.1"
        assert not covers(inbox_subjects(owner), reply), (owner, other)
    for user in users:
        assert covers(inbox_subjects(user), f"{inbox_prefix(user)}.AbCdEf.1")


def test_connect_options_set_the_inbox_of_the_user_or_the_robot() -> None:
    assert connect_options("", "") == {}
    options = connect_options("console", "pw")
    assert options == {"user": "console", "password": "pw", "inbox_prefix": "_INBOX.console"}
    assert connect_options("", "", "r1") == {"inbox_prefix": "_INBOX.r1"}  # a node on robot r1, no user
    assert connect_options("local", "pw", "r1")["inbox_prefix"] == "_INBOX.r1"


class FakeNc:
    """Just enough of nats-py's client for :func:`inbox.request` (the real servers are in test/)."""

    def __init__(self, answer: dict[str, str] | None = None, reply: bool = True) -> None:
        self.published: list[tuple[str, str]] = []
        self.answer, self.reply = answer, reply
        self.plain_requests: list[str] = []
        self.unsubscribed = 0
        self.is_closed = False

    def new_inbox(self) -> str:
        return "_INBOX.console.NUIDNUIDNUIDNUIDNUIDNU"

    async def subscribe(self, subject: str, future: asyncio.Future[Any], max_msgs: int) -> Any:
        self._future, nc = future, self

        class Sub:
            async def unsubscribe(self) -> None:
                nc.unsubscribed += 1

        return Sub()

    async def publish(self, subject: str, payload: bytes, reply: str, headers: dict[str, str] | None) -> None:
        self.published.append((subject, reply))
        if self.reply:
            self._future.set_result(type("Msg", (), {"headers": self.answer, "data": b"ok", "subject": reply})())

    async def request(self, subject: str, payload: bytes, timeout: float, headers: Any) -> str:
        self.plain_requests.append(subject)
        return "plain"


def test_requests_to_a_robot_reply_into_its_slot_only() -> None:
    assert target_robot("robots.r1.srv.robot_sim.estop") == "r1"
    assert target_robot("jobs.list") is None and target_robot("robots.*.srv.x") is None
    reply = reply_subject(FakeNc(), "robots.r1.ops.list_graph")
    assert reply == "_INBOX.console.~r1.NUIDNUIDNUIDNUIDNUIDNU"
    assert covers(robot_reply_subjects("r1"), reply) and covers(inbox_subjects("console"), reply)
    assert not covers(robot_reply_subjects("r2"), reply)
    # r1's slot never reaches into a plain reply of nats-py's request mux (prefix.nuid.token)
    assert not covers(robot_reply_subjects("r1"), "_INBOX.console.NUIDNUIDNUIDNUIDNUIDNU.tok1")
    assert not covers(robot_reply_subjects("r1"), "_INBOX.r1.NUID.tok1")


def test_request_uses_the_robot_slot_and_plain_request_otherwise() -> None:
    nc = FakeNc()
    msg = asyncio.run(inbox.request(nc, "robots.r1.srv.x", b"", timeout=1.0))
    assert msg.data == b"ok" and nc.published == [("robots.r1.srv.x", "_INBOX.console.~r1.NUIDNUIDNUIDNUIDNUIDNU")]
    assert nc.unsubscribed == 1
    assert asyncio.run(inbox.request(nc, "jobs.list", b"", timeout=1.0)) == "plain"


def test_request_raises_like_nats_py() -> None:
    with pytest.raises(nats.errors.NoRespondersError):
        asyncio.run(inbox.request(FakeNc({"Status": "503"}), "robots.r1.srv.x", timeout=1.0))
    nc = FakeNc(reply=False)
    with pytest.raises(nats.errors.TimeoutError):
        asyncio.run(inbox.request(nc, "robots.r1.srv.x", timeout=0.05))
    assert nc.unsubscribed == 1
