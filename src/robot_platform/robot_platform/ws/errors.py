"""Typed errors of ws_agent.

Each error has a stable ``kind`` (used as a counter name and in the rosbridge ``status`` message) and
carries the data that explains it. Every one of them is answered with a ``status`` message to the one
client at fault; none of them closes the connection or affects other clients.
"""

from __future__ import annotations

from robot_platform.exceptions import RobotPlatformError


class WsError(RobotPlatformError):
    """Base of every ws_agent error; ``kind`` names it in counters and status messages."""

    kind = "ws_error"
    level = "error"

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class ProtocolError(WsError):
    """A client message is not valid rosbridge v2 (bad JSON, unknown op, wrong field type...)."""

    kind = "protocol"
    protocol = "rosbridge"

    def __init__(self, reason: str, op: str = "", field: str = "", request_id: str | None = None) -> None:
        where = f"op {op!r}" if op else "message"
        if field:
            where += f", field {field!r}"
        super().__init__(f"invalid {self.protocol} message ({where}): {reason}", request_id)
        self.reason = reason
        self.op = op
        self.field = field


class FoxgloveProtocolError(ProtocolError):
    """A client message is not valid Foxglove WebSocket protocol (foxglove.websocket.v1)."""

    protocol = "Foxglove"


class FrameTooLargeError(ProtocolError):
    """A client frame is larger than ``max_frame_bytes``."""

    kind = "oversized"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes; send smaller messages")
        self.size = size
        self.limit = limit


class TopicError(WsError):
    """A topic or service name cannot be mapped to a NATS subject in this agent's mode."""

    kind = "bad_topic"

    def __init__(self, name: str, reason: str, request_id: str | None = None) -> None:
        super().__init__(f"cannot use {name!r}: {reason}", request_id)
        self.name = name
        self.reason = reason


class AccessDeniedError(WsError):
    """The client's role does not allow this operation on this subject."""

    kind = "denied"

    def __init__(self, user: str, role: str, op: str, target: str, request_id: str | None = None) -> None:
        super().__init__(
            f"user {user!r} (role {role}) may not {op} {target}; ask an admin for a role that grants it",
            request_id,
        )
        self.user = user
        self.role = role
        self.op = op
        self.target = target


class AuthError(WsError):
    """Authentication failed (unknown user, wrong secret, missing token). Never carries the secret."""

    kind = "auth"

    def __init__(self, reason: str, user: str = "") -> None:
        super().__init__(f"authentication failed: {reason}")
        self.reason = reason
        self.user = user


class UsersFileError(WsError):
    """The users/roles YAML file is missing or invalid."""

    kind = "users_file"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"users file {path}: {reason}")
        self.path = path
        self.reason = reason


class MessageError(WsError):
    """A published message does not fit its ROS type (wraps the bridge codec's error text)."""

    kind = "invalid_message"


class AuthBusyError(AuthError):
    """Too many logins are being checked at once; the client should retry (not counted as a failure)."""

    kind = "auth_busy"

    def __init__(self) -> None:
        super().__init__("too many logins at once; retry in a few seconds")
