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
