"""Reply inboxes: a NATS user reads replies to its own requests only, and a robot writes only into the
reply slots meant for its own answers.

NATS request/reply sends the answer to the requester's inbox subject (``_INBOX.<random>`` by default).
A user allowed to subscribe ``_INBOX.>`` could therefore read the replies of every other user (remote
action results, log queries, job details), and one allowed to publish ``_INBOX.>`` could forge them.

* Each platform client uses the prefix ``_INBOX.<owner>`` and the hub lets that user subscribe
  ``_INBOX.<owner>.>`` only. The owner is the user it logs in as on the hub, or, for the nodes on a robot
  (which connect to the robot's own server without a user), the robot id: their replies then come back
  over the leaf link, whose hub user is the robot. A '.' in a user name (operator names allow it) becomes
  '~' (not allowed in user names), so one user's inbox can never sit inside another's: ``alice`` gets
  ``_INBOX.alice.>``, ``alice.smith`` gets ``_INBOX.alice~smith.>``.
* A request addressed to robot ``<id>`` (subject ``robots.<id>....``) carries the reply subject
  ``_INBOX.<owner>.~<id>.<unique>`` (:func:`request`): the requester's own inbox, in the slot reserved
  for that robot's answers. The robot's hub user may publish ``_INBOX.*.~<id>.>`` and no other inbox
  subject, so r1 can answer the console but cannot write a reply to any request it was not sent, nor
  anything into another robot's slot or an inbox's own random part. (NATS ``allow_responses`` would be
  the natural control, but nats-server 2.15 does not carry those replies back over a leaf link.)
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import nats.errors

ROOT = "_INBOX"
ROBOT_SLOT_MARK = "~"  # never in a nats-py nuid nor at the start of a mapped user name: no collisions
NO_RESPONDERS_STATUS = "503"
_ROBOT_SUBJECT_RE = re.compile(r"^robots\.([A-Za-z0-9][A-Za-z0-9_-]{0,63})\.")


def inbox_prefix(owner: str) -> str:
    """The inbox prefix of ``owner`` (for nats-py's ``connect(inbox_prefix=...)``)."""
    return f"{ROOT}.{owner.replace('.', '~')}"


def inbox_subjects(owner: str) -> str:
    """The subscribe permission that covers ``owner``'s replies and nobody else's."""
    return f"{inbox_prefix(owner)}.>"


def robot_reply_subjects(robot_id: str) -> str:
    """The publish permission of robot ``robot_id``'s hub user for its answers: its slot in every inbox."""
    return f"{ROOT}.*.{ROBOT_SLOT_MARK}{robot_id}.>"


def connect_options(user: str, password: str, inbox_owner: str = "") -> dict[str, Any]:
    """``nats.connect`` keyword arguments: the user's credentials and the inbox prefix of ``inbox_owner``
    (default: the user). Without either: an open server, the default inbox."""
    options: dict[str, Any] = {"user": user, "password": password} if user else {}
    owner = inbox_owner or user
    if owner:
        options["inbox_prefix"] = inbox_prefix(owner)
    return options


def target_robot(subject: str) -> str | None:
    """The robot a request on ``subject`` is addressed to (``robots.<id>.…``), or None."""
    match = _ROBOT_SUBJECT_RE.match(subject)
    return match.group(1) if match else None


def reply_subject(nc: Any, subject: str) -> str:
    """A fresh reply subject in ``nc``'s inbox; in the target robot's slot if ``subject`` goes to one."""
    inbox = nc.new_inbox()  # "<prefix>.<nuid>"
    robot = target_robot(subject)
    if robot is None:
        return inbox
    prefix, _, unique = inbox.rpartition(".")
    return f"{prefix}.{ROBOT_SLOT_MARK}{robot}.{unique}"


async def request(
    nc: Any, subject: str, payload: bytes = b"", timeout: float = 1.0, headers: dict[str, str] | None = None
) -> Any:
    """``nc.request`` whose reply subject a robot's hub user may answer on (see the module docstring).

    Requests to anything but a robot use nats-py's own request. Raises what nats-py raises:
    ``nats.errors.TimeoutError``, ``nats.errors.NoRespondersError``, connection errors.
    """
    if target_robot(subject) is None:
        return await nc.request(subject, payload, timeout=timeout, headers=headers)
    inbox = reply_subject(nc, subject)
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    sub = await nc.subscribe(inbox, future=future, max_msgs=1)
    try:
        await nc.publish(subject, payload, reply=inbox, headers=headers)
        try:
            msg = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise nats.errors.TimeoutError from None
    finally:
        if not future.done():
            future.cancel()
        with contextlib.suppress(nats.errors.Error):  # already gone after its one message, or closed
            await sub.unsubscribe()
    if msg.headers and msg.headers.get("Status") == NO_RESPONDERS_STATUS:
        raise nats.errors.NoRespondersError
    return msg
