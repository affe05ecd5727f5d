"""Base error of robot_platform.

Every error the platform raises on purpose derives from :class:`RobotPlatformError`, carries the data
that explains it as attributes, and has a stable message that tells the user what to do. Areas define
their own subclasses next to their code (``messaging/errors.py``, ``deploy/errors.py``...).
"""

from __future__ import annotations


class RobotPlatformError(Exception):
    """Base class of every deliberate robot_platform error."""


class ConfigError(RobotPlatformError):
    """A configuration value is missing or invalid.

    Attributes:
        key: the parameter or file key at fault.
        value: the rejected value (never a secret).
    """

    def __init__(self, key: str, value: object, reason: str) -> None:
        super().__init__(f"invalid configuration {key}={value!r}: {reason}")
        self.key = key
        self.value = value
        self.reason = reason


class ParameterError(ConfigError):
    """A ROS parameter is missing, of the wrong type or outside its range (the message says which)."""

    def __init__(self, key: str, reason: str) -> None:
        RobotPlatformError.__init__(self, f"{key} {reason}")
        self.key = key
        self.value = None
        self.reason = reason


class MissingParameterError(ParameterError):
    """A parameter without a default was not set; ``hint`` says how to set it."""

    def __init__(self, key: str, hint: str) -> None:
        super().__init__(key, f"is required: {hint}")
        self.hint = hint
