"""Typed errors of the health monitor (all derive from :class:`RobotPlatformError`)."""

from __future__ import annotations

from robot_platform.exceptions import RobotPlatformError


class HealthConfigError(RobotPlatformError):
    """The health tree configuration is invalid; the node refuses to start.

    Attributes:
        source: file path or ``"<parameter checks_yaml>"`` the config came from.
        line: 1-based line of the offending item, or ``None`` when unknown (dict configs).
        key: dotted path of the offending item, e.g. ``checks[2].timeout_s``.
        reason: what is wrong and what to do.
    """

    def __init__(self, source: str, line: int | None, key: str, reason: str) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: health config error at {key or '<root>'}: {reason}")
        self.source = source
        self.line = line
        self.key = key
        self.reason = reason


class HealthConfigSyntaxError(HealthConfigError):
    """The YAML text does not parse."""


class UnknownCheckKindError(HealthConfigError):
    """A check names a ``kind`` that no check class implements.

    Attributes:
        kind: the unknown kind.
        known: the kinds that exist.
    """

    def __init__(self, source: str, line: int | None, key: str, kind: str, known: list[str]) -> None:
        super().__init__(source, line, key, f"unknown check kind {kind!r}; known kinds: {', '.join(known)}")
        self.kind = kind
        self.known = known


class UnknownCheckError(RobotPlatformError):
    """An acknowledge/silence request names a check or alert that does not exist or is not active."""

    def __init__(self, what: str, name: str) -> None:
        super().__init__(f"no {what} named {name!r}; list the tree snapshot for valid names")
        self.what = what
        self.name = name
