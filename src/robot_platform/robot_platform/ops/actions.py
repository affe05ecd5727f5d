"""Safe remote actions: allowlisted, role-checked request/reply on ``robots.<id>.ops.<action>``.

Request (msgpack map): ``{user, role, args: {...}}``. Reply (msgpack map): ``{ok: true, result}`` or
``{ok: false, error: {kind, message}}``. No action opens a shell or runs a command line.

Actions (the robot's ``allowed_actions`` parameter narrows them further):

* ``list_graph``   nodes and topics (types, publisher counts) with measured rates of buffered topics
* ``capture``      ``{topics: [...], seconds: N}`` -> an MCAP file (profile ros2: ``ros2msg`` schemas,
                    CDR messages) of the last N seconds of the chosen topics from the rolling in-memory
                    buffer; opens in Foxglove, ``ros2 bag`` (mcap storage), the ``mcap`` and rosbags
                    libraries
* ``restart_app``  ``{package}`` -> asks deploy_service (NATS ``robots.<id>.deploy.restart.<package>``)

Role check: the request names ``user`` and ``role``; the robot's roles file must list that user with
that role, and the role must grant the action. That check is advisory (a client could claim any name):
the *enforcement* is the NATS permission of the operator's user on the hub, which lets a user publish
only ``robots.*.ops.<action>`` for the actions of their role (see :mod:`.operator_roles`).
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack
import nats.errors

from robot_platform.messaging import inbox, subjects
from robot_platform.messaging.errors import UnknownTypeError
from robot_platform.ops.errors import ActionError, ActionNotAllowedError, OpsError, RemoteActionFailed
from robot_platform.ops.operator_roles import Roles

if TYPE_CHECKING:
    from robot_platform.recording.msgdefs import MessageDefinitions

ACTIONS = ("list_graph", "capture", "restart_app")
MAX_CAPTURE_TOPICS = 64  # topics of one capture request (the buffer holds capture_topics, a short list)
MAX_TOPIC_CHARS = 256
MAX_REQUEST_BYTES = 64 * 1024
MAX_NAME_CHARS = 64  # user and role names: they go into every audit line (and, via /rosout, LOGS_<id>)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


def action_subject(robot_id: str, action: str) -> str:
    if action not in ACTIONS:
        raise ActionNotAllowedError(action, f"unknown action; known: {', '.join(ACTIONS)}")
    return f"{subjects.ROOT}.{subjects.check_robot_id(robot_id)}.ops.{action}"


def encode_request(user: str, role: str, args: dict[str, Any] | None = None) -> bytes:
    return msgpack.packb({"user": user, "role": role, "args": args or {}})


def encode_reply(result: Any = None, error: OpsError | None = None) -> bytes:
    if error is not None:
        return msgpack.packb({"ok": False, "error": {"kind": error.kind, "message": str(error)}})
    return msgpack.packb({"ok": True, "result": result}, use_bin_type=True)


@dataclass(frozen=True)
class ActionRequest:
    action: str
    user: str
    role: str
    args: dict[str, Any]


def decode_request(action: str, data: bytes) -> ActionRequest:
    if len(data) > MAX_REQUEST_BYTES:
        raise ActionError(action, f"request larger than {MAX_REQUEST_BYTES} bytes")
    try:
        body = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ActionError(action, f"request is not msgpack ({type(exc).__name__})") from None
    if not isinstance(body, dict):
        raise ActionError(action, "request must be a map {user, role, args}")
    user, role, args = body.get("user"), body.get("role"), body.get("args", {})
    if not isinstance(user, str) or not user or not isinstance(role, str) or not role:
        raise ActionError(action, "request needs non-empty 'user' and 'role'")
    for name, value in (("user", user), ("role", role)):
        if len(value) > MAX_NAME_CHARS or not value.isprintable():
            raise ActionError(action, f"'{name}' must be 1-{MAX_NAME_CHARS} printable characters")
    if not isinstance(args, dict):
        raise ActionError(action, "'args' must be a map")
    return ActionRequest(action, user, role, args)


class ActionDispatcher:
    """Checks allowlist and role, runs the handler, turns typed errors into error replies; audits all."""

    def __init__(
        self,
        robot_id: str,
        allowed: Iterable[str],
        roles: Roles,
        handlers: dict[str, Handler],
        audit: logging.Logger | Any | None = None,
    ) -> None:
        self.robot_id = subjects.check_robot_id(robot_id)
        self.allowed = frozenset(allowed)
        unknown = self.allowed - set(ACTIONS)
        if unknown:
            raise ActionNotAllowedError(",".join(sorted(unknown)), f"unknown action; known: {', '.join(ACTIONS)}")
        self.roles = roles
        self.handlers = handlers
        self.audit = audit or logging.getLogger(__name__)
        self.served = 0
        self.refused = 0

    def subscription(self) -> str:
        return f"{subjects.ROOT}.{self.robot_id}.ops.*"

    async def handle(self, subject: str, data: bytes) -> bytes:
        action = subject.rsplit(".", 1)[-1]
        who = "?"
        try:
            if subject != f"{subjects.ROOT}.{self.robot_id}.ops.{action}":
                raise ActionError(action, f"subject {subject} is not for robot {self.robot_id}")
            request = decode_request(action, data)
            who = f"{request.user} ({request.role})"
            if action not in self.allowed or action not in self.handlers:
                raise ActionNotAllowedError(action, "not in this robot's allowed_actions")
            self.roles.check(request.user, request.role, action)
            result = await self.handlers[action](request.args)
        except OpsError as exc:
            self.refused += 1
            self.audit.warning(f"ops action {action} by {who} refused: {exc}")
            return encode_reply(error=exc)
        self.served += 1
        self.audit.info(f"ops action {action} by {who} done")
        return encode_reply(result)


class RollingBuffer:
    """Last ``window_s`` seconds of serialized messages per topic, at most ``max_bytes`` in all.

    Drop policy: messages older than the window are evicted; past ``max_bytes`` the oldest message of
    the topic being added to is dropped (counted in ``dropped``). Thread-safe: ROS callbacks add, the
    action handler reads.
    """

    RATE_WINDOW_S = 5.0

    def __init__(self, window_s: float, max_bytes: int) -> None:
        if window_s <= 0 or max_bytes <= 0:
            raise ValueError("window_s and max_bytes must be > 0")
        self.window_s = window_s
        self.max_bytes = max_bytes
        self.size = 0
        self.dropped = 0
        self._topics: dict[str, deque[tuple[float, bytes]]] = {}
        self._lock = threading.Lock()

    def add(self, topic: str, data: bytes, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            queue = self._topics.setdefault(topic, deque())
            queue.append((now, data))
            self.size += len(data)
            self._evict(now)
            while self.size > self.max_bytes and queue:
                _, old = queue.popleft()
                self.size -= len(old)
                self.dropped += 1

    def _evict(self, now: float) -> None:
        horizon = now - self.window_s
        for queue in self._topics.values():
            while queue and queue[0][0] < horizon:
                self.size -= len(queue.popleft()[1])

    def snapshot(
        self, topics: Iterable[str], seconds: float, now: float | None = None
    ) -> list[tuple[float, str, bytes]]:
        """Messages of ``topics`` from the last ``seconds`` s, in time order."""
        now = time.time() if now is None else now
        since = now - seconds
        with self._lock:
            self._evict(now)
            out = [(t, topic, d) for topic in topics for t, d in self._topics.get(topic, ()) if t >= since]
        out.sort(key=lambda item: item[0])
        return out

    def rates(self, now: float | None = None) -> dict[str, float]:
        """Messages per second of each buffered topic over the last RATE_WINDOW_S (or the window)."""
        now = time.time() if now is None else now
        span = min(self.RATE_WINDOW_S, self.window_s)
        with self._lock:
            return {
                topic: round(sum(1 for t, _ in queue if t >= now - span) / span, 2)
                for topic, queue in self._topics.items()
            }


def build_capture(
    robot_id: str,
    buffer: RollingBuffer,
    types: dict[str, str],
    topics: Any,
    seconds: Any,
    max_bytes: int,
    definitions: MessageDefinitions,
) -> dict[str, Any]:
    """Validate a capture request and build the MCAP file (returned as ``{file, messages, bytes}``).

    The buffer already holds the CDR bytes rclpy received, so the file is written without decoding a
    message; ``definitions`` gives each topic's ``ros2msg`` schema from the installed ``.msg`` files.
    """
    if (not isinstance(topics, list) or not 0 < len(topics) <= MAX_CAPTURE_TOPICS
            or not all(isinstance(t, str) and 0 < len(t) <= MAX_TOPIC_CHARS for t in topics)):  # fmt: skip
        raise ActionError("capture", f"'topics' must be a list of 1-{MAX_CAPTURE_TOPICS} topic names "
                                     f"(at most {MAX_TOPIC_CHARS} characters each)")  # fmt: skip
    topics = list(dict.fromkeys(topics))  # a topic named twice is captured once
    missing = [t for t in topics if t not in types]
    if missing:  # a few of the names as sent, printable only (no newline reaches a log line)
        shown = ", ".join("".join(c if c.isprintable() else "?" for c in t[:60]) for t in missing[:5])
        shown += f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ActionError("capture", f"not buffered here: {shown}; buffered: {', '.join(sorted(types))}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= buffer.window_s:
        raise ActionError("capture", f"'seconds' must be a number in (0, {buffer.window_s:g}]")
    from robot_platform.recording.mcap_out import RosMcapWriter  # mcap, lz4, zstd: at the first capture

    now = time.time()
    entries = buffer.snapshot(topics, float(seconds), now)
    stream = io.BytesIO()
    metadata = {"robot_id": robot_id, "created": f"{now:.3f}", "seconds": f"{float(seconds):g}"}
    writer = RosMcapWriter(stream, definitions, metadata=metadata)
    try:
        for t, topic, data in entries:
            writer.add(topic, types[topic], data, int(t * 1e9))
    except UnknownTypeError as exc:
        raise ActionError("capture", f"no message definition to write: {exc}") from None
    writer.finish()
    body = stream.getvalue()
    if len(body) > max_bytes:
        raise ActionError("capture", f"capture is {len(body)} bytes, over the {max_bytes} limit: ask fewer seconds")
    return {"file": body, "messages": len(entries), "bytes": len(body), "format": "mcap"}


async def call_action(
    nc: Any, robot: str, action: str, user: str, role: str, args: dict[str, Any], timeout: float
) -> Any:
    """Request/reply to ``robots.<robot>.ops.<action>``; RemoteActionFailed if the robot refused it."""
    subject = action_subject(robot, action)
    try:
        reply = await inbox.request(nc, subject, encode_request(user, role, args), timeout=timeout)  # robot reply slot
    except nats.errors.NoRespondersError:
        raise RemoteActionFailed(robot, action, "no_responders", "robot_agent is not reachable") from None
    except (TimeoutError, nats.errors.TimeoutError):
        raise RemoteActionFailed(
            robot, action, "timeout", f"no reply within {timeout:g}s (offline, or not permitted for your NATS user)"
        ) from None
    body = msgpack.unpackb(reply.data, raw=False)
    if not isinstance(body, dict) or not body.get("ok"):
        error = (body.get("error") if isinstance(body, dict) else None) or {}
        raise RemoteActionFailed(robot, action, str(error.get("kind", "?")), str(error.get("message", "")))
    return body.get("result")
