"""Typed errors of the NATS bridge.

Every error carries the data that explains it (subject, type, field path, size, limit) so the node can
count it under a stable ``kind`` and log one clear line, then keep running. Messages say what to check.
"""

from __future__ import annotations

from robot_platform.exceptions import RobotPlatformError

MAX_ECHO_CHARS = 120  # a sender-chosen name echoed in an error (and so in a log line) is cut to this


def clip(text: str) -> str:
    """``text`` cut to MAX_ECHO_CHARS: error messages and logs never repeat a megabyte field name."""
    return text if len(text) <= MAX_ECHO_CHARS else f"{text[:MAX_ECHO_CHARS]}...[{len(text)} chars]"


class BridgeError(RobotPlatformError):
    """Base of every bridge error. ``kind`` is a stable label used as a counter name."""

    kind = "bridge_error"


class UnknownTypeError(BridgeError):
    """A ROS type string does not name an importable message type."""

    kind = "unknown_type"

    def __init__(self, type_name: str, reason: str) -> None:
        type_name = clip(type_name)
        super().__init__(
            f"unknown ROS message type {type_name!r}: {reason}; use the form 'pkg/msg/Type' and make sure"
            " the package is installed and sourced"
        )
        self.type_name = type_name
        self.reason = reason


class CodecError(BridgeError):
    """A dict does not match a ROS message type. ``field`` is the dotted path, e.g. ``pose.pose.x``."""

    kind = "invalid_message"

    def __init__(self, type_name: str, field: str, reason: str) -> None:
        field = clip(field)  # a path ends in a sender's key: an unknown field name may be any size
        where = field or "<message>"
        super().__init__(f"{type_name}: field {where}: {reason}")
        self.type_name = type_name
        self.field = field
        self.reason = reason


class UnknownFieldError(CodecError):
    """The dict has a key that the ROS type does not have."""

    kind = "unknown_field"

    def __init__(self, type_name: str, field: str, known: list[str]) -> None:
        super().__init__(type_name, field, f"no such field (known fields: {', '.join(known)})")
        self.known = known


class FieldTypeError(CodecError):
    """A value has the wrong Python/msgpack type for its field."""

    kind = "wrong_type"

    def __init__(self, type_name: str, field: str, expected: str, got: object) -> None:
        super().__init__(type_name, field, f"expected {expected}, got {type(got).__name__}")
        self.expected = expected
        self.got_type = type(got).__name__


class FieldRangeError(CodecError):
    """A value (or an array length, or a string length) is outside what the field can hold."""

    kind = "out_of_range"

    def __init__(self, type_name: str, field: str, value: object, low: object, high: object) -> None:
        super().__init__(type_name, field, f"value {value!r} outside [{low}, {high}]")
        self.value = value
        self.low = low
        self.high = high


class NonFiniteError(FieldRangeError):
    """A float field holds NaN or +-inf where the caller did not allow it (counted as ``out_of_range``)."""

    def __init__(self, type_name: str, field: str, value: float) -> None:
        CodecError.__init__(
            self,
            type_name,
            field,
            f"value {value!r} is not a finite number; NaN and infinities are refused (a site that needs them"
            " on this command sets allow_non_finite: true in its nats_bridge 'in' entry)",
        )
        self.value = value
        self.low = None
        self.high = None


class MalformedPayloadError(BridgeError):
    """A NATS payload is not a msgpack map (truncated, garbage, wrong top-level type...)."""

    kind = "malformed"

    def __init__(self, subject: str, reason: str) -> None:
        super().__init__(f"malformed payload on {subject!r}: {reason}; the body must be a msgpack map")
        self.subject = subject
        self.reason = reason


class PayloadTooLargeError(BridgeError):
    """A payload exceeds the configured maximum (``max_payload_bytes``, at most the server's max_payload)."""

    kind = "oversized"

    def __init__(self, subject: str, size: int, limit: int) -> None:
        super().__init__(
            f"payload of {size} bytes on {subject!r} exceeds the limit of {limit} bytes; lower the rate or"
            " resolution, or raise max_payload_bytes (and the server's max_payload)"
        )
        self.subject = subject
        self.size = size
        self.limit = limit


class EnvelopeError(BridgeError):
    """Headers are missing, malformed or contradict the allowlist / the local type definition."""

    kind = "bad_envelope"

    def __init__(self, subject: str, header: str, reason: str) -> None:
        super().__init__(f"bad envelope on {subject!r}: header {header}: {reason}")
        self.subject = subject
        self.header = header
        self.reason = reason


class SubjectError(BridgeError):
    """A robot id, topic name or subject is not valid for the subject scheme (wildcards, dots, spaces)."""

    kind = "bad_subject"

    def __init__(self, value: str, reason: str) -> None:
        super().__init__(f"invalid subject part {value!r}: {reason}")
        self.value = value
        self.reason = reason


class NotAllowedError(BridgeError):
    """A command arrived on a subject (or with a type) that the inbound allowlist does not grant."""

    kind = "not_allowed"

    def __init__(self, subject: str, type_name: str, reason: str) -> None:
        type_name = clip(type_name)  # straight from a sender's Ros-Type header
        super().__init__(
            f"command on {subject!r} (type {type_name!r}) refused: {reason}; add it to the bridge's"
            " 'in' allowlist if it is meant to reach ROS"
        )
        self.subject = subject
        self.type_name = type_name
        self.reason = reason


class ServiceCallError(BridgeError):
    """A service request through NATS could not be served. ``kind`` tells why: no_reply (not sent as a
    request), busy (too many calls in flight), unavailable (no service server), timeout, failed."""

    kind = "service_error"

    def __init__(self, subject: str, kind: str, reason: str) -> None:
        super().__init__(f"service request on {subject!r} failed: {reason}")
        self.kind = kind
        self.subject = subject
        self.reason = reason
