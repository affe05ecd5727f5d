"""Per-user reply inboxes: a NATS user may read replies to its own requests only.

NATS request/reply sends the answer to the requester's inbox subject (``_INBOX.<random>`` by default).
A user allowed to subscribe ``_INBOX.>`` could therefore read the replies of every other user (remote
action results, log queries, job details). Each authenticated platform client instead uses the prefix
``_INBOX.<user>`` and the hub lets that user subscribe ``_INBOX.<user>.>`` only. A '.' in a user name
(operator names allow it) becomes '~' (not allowed in user names), so one user's inbox can never sit
inside another's: ``alice`` gets ``_INBOX.alice.>``, ``alice.smith`` gets ``_INBOX.alice~smith.>``.
"""

from __future__ import annotations

from typing import Any

ROOT = "_INBOX"


def inbox_prefix(user: str) -> str:
    """The inbox prefix of ``user`` (for nats-py's ``connect(inbox_prefix=...)``)."""
    return f"{ROOT}.{user.replace('.', '~')}"


def inbox_subjects(user: str) -> str:
    """The subscribe permission that covers ``user``'s replies and nobody else's."""
    return f"{inbox_prefix(user)}.>"


def connect_options(user: str, password: str) -> dict[str, Any]:
    """``nats.connect`` keyword arguments for a user (none without one: an open server, the default inbox)."""
    if not user:
        return {}
    return {"user": user, "password": password, "inbox_prefix": inbox_prefix(user)}
