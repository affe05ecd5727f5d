"""Errors of captures and recordings (MCAP files)."""

from __future__ import annotations

from robot_platform.exceptions import RobotPlatformError


class RecordingError(RobotPlatformError):
    """Base of the recording errors."""


class RecordingFullError(RecordingError):
    """A message would take the recording past its byte limit: the recording ends there."""

    def __init__(self, limit: int, size: int) -> None:
        super().__init__(f"recording reached its {limit}-byte limit ({size} bytes of messages written)")
        self.limit = limit
        self.size = size


class TopicTypeError(RecordingError):
    """A topic's messages changed type mid-recording: one MCAP channel has one schema."""

    def __init__(self, topic: str, recorded: str, received: str) -> None:
        super().__init__(f"{topic} is recorded as {recorded}; a {received} message was skipped")
        self.topic = topic
        self.recorded = recorded
        self.received = received


class RecordSpecError(RecordingError):
    """A recording was asked with a bad argument: which one, and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"record: {field}: {reason}")
        self.field = field
        self.reason = reason


class SerializeError(RecordingError):
    """A decoded message could not be serialized to CDR (a value the ROS serializer refuses)."""

    def __init__(self, subject: str, cause: Exception) -> None:
        super().__init__(f"{subject}: cannot serialize to CDR: {type(cause).__name__}: {str(cause)[:200]}")
        self.subject = subject
