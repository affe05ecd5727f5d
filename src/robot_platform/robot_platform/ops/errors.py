"""Errors of the ops area (registry, logs, remote access, remote actions)."""

from __future__ import annotations

from robot_platform.exceptions import RobotPlatformError


class OpsError(RobotPlatformError):
    """Base of every ops error; ``kind`` is a stable machine-readable name sent in action replies."""

    kind = "ops_error"


class AnnouncementError(OpsError):
    """A presence announcement is malformed or claims another robot's identity."""

    kind = "bad_announcement"

    def __init__(self, subject: str, reason: str) -> None:
        super().__init__(f"announcement on {subject} rejected: {reason}")
        self.subject = subject
        self.reason = reason


class LogRecordError(OpsError):
    """A log record on NATS cannot be decoded."""

    kind = "bad_log_record"

    def __init__(self, subject: str, reason: str) -> None:
        super().__init__(f"log record on {subject} rejected: {reason}")
        self.subject = subject
        self.reason = reason


class LogQueryError(OpsError):
    """A log query's arguments are invalid (``fleet.logs.query``): which argument, and why."""

    kind = "bad_query"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"log query: {field}: {reason}" if field else f"log query: {reason}")
        self.field = field
        self.reason = reason

    @classmethod
    def check_arguments(cls, args: object, keys: tuple[str, ...]) -> dict:
        """``args`` as a dict of known keys only; else this error naming the first unknown argument (the
        shared prologue of the log and alert queries)."""
        if not isinstance(args, dict):
            raise cls("", f"arguments must be an object, not {type(args).__name__}")
        unknown = sorted(str(k) for k in args if k not in keys)
        if unknown:
            raise cls(unknown[0], f"unknown argument; use {', '.join(keys)}")
        return args


class HubUnavailableError(OpsError):
    kind = "hub_unavailable"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the NATS hub at {url}: {reason} (check --url / --user / --password-file)")
        self.url = url


class HubRequestError(OpsError):
    """A request to the hub failed (often: your NATS user is not permitted to do that)."""

    kind = "hub_request"

    def __init__(self, reason: str) -> None:
        super().__init__(f"request to the NATS hub failed: {reason} (is your NATS user permitted to do this?)")
        self.reason = reason


class ActionError(OpsError):
    """A remote-action request is malformed or its arguments are invalid."""

    kind = "bad_request"

    def __init__(self, action: str, reason: str) -> None:
        super().__init__(f"action {action}: {reason}")
        self.action = action
        self.reason = reason


class ActionNotAllowedError(ActionError):
    """The action is not allowlisted on this robot, or the caller's role does not grant it."""

    kind = "not_allowed"


class ActionUnavailableError(ActionError):
    """The action is allowlisted but what it needs is not running (e.g. deploy_service for restart_app)."""

    kind = "unavailable"


class TunnelConfigError(OpsError):
    """A value for the SSH tunnel/bastion configuration is unsafe or missing."""

    kind = "tunnel_config"

    def __init__(self, key: str, value: object, reason: str) -> None:
        super().__init__(f"invalid ssh setting {key}={value!r}: {reason}")
        self.key = key
        self.value = value
        self.reason = reason


class RemoteActionFailed(OpsError):
    """The robot answered a remote action with an error (CLI side)."""

    kind = "remote_error"

    def __init__(self, robot_id: str, action: str, error_kind: str, message: str) -> None:
        super().__init__(f"{robot_id} refused {action} ({error_kind}): {message}")
        self.robot_id = robot_id
        self.action = action
        self.error_kind = error_kind
        self.remote_message = message
