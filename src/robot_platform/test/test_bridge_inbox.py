"""Per-user reply inboxes (bridge/inbox.py): one user's permission never covers another's replies."""

from __future__ import annotations

import itertools

from robot_platform.bridge.inbox import connect_options, inbox_prefix, inbox_subjects


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


def test_connect_options_set_the_inbox_with_credentials_only() -> None:
    assert connect_options("", "") == {}
    options = connect_options("console", "pw")
    assert options == {"user": "console", "password": "pw", "inbox_prefix": "_INBOX.console"}
