"""The NATS subject scheme of the fleet, and the allowlist of commands into ROS.

Scheme (``<id>`` is the robot id, ``<topic>`` the ROS topic with ``/`` as ``.``)::

    robots.<id>.ros.<topic>        telemetry from the robot's ROS graph   (/odom -> robots.r1.ros.odom)
    robots.<id>.overview.<topic>   a rate-limited copy of chosen telemetry for fleet overviews (2 Hz odom:
                                   a console showing the fleet takes that instead of the full rate)
    robots.<id>.cmd.<topic>        commands into the robot's ROS graph    (allowlisted: subject + type)
    robots.<id>.alerts             alerts (JetStream: must not be lost)
    robots.<id>.deploy.<event>     deployment events (JetStream)
    robots.<id>.srv.<service>      ROS service calls (NATS request/reply, allowlisted: subject + type)
    robots.<id>.frames.<camera>    camera frames, on demand (leases: robots.<id>.frames.<camera>.lease)
    robots.<id>.health[.<part>]    health summaries; the bridge's own counters on robots.<id>.health.nats_bridge
    robots.<id>.presence           presence / heartbeat

Every piece put into a subject is validated first, so a topic or robot id can never inject a wildcard
(``*``, ``>``), an extra token (``.``) or whitespace into a subject, and per-robot NATS permissions
(``robots.r1.>``) stay meaningful.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from robot_platform.messaging.errors import NotAllowedError, SubjectError

ROOT = "robots"
KINDS = ("ros", "overview", "cmd", "srv", "alerts", "deploy", "frames", "health", "presence")
PATH_KINDS = ("ros", "overview", "cmd", "srv")  # the rest of the subject is a ROS name (topic or service)
ROBOT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
TOPIC_RE = re.compile(r"^(/[A-Za-z_][A-Za-z0-9_]*)+$")  # fully qualified, expanded ROS 2 topic name
TYPE_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)/(?:msg/)?([A-Z][A-Za-z0-9]*)$")


def check_robot_id(robot_id: str) -> str:
    """Return ``robot_id`` if it is one safe subject token (letters, digits, ``_``, ``-``)."""
    if not isinstance(robot_id, str) or not ROBOT_ID_RE.fullmatch(robot_id):
        raise SubjectError(str(robot_id), "robot id must be 1-64 of [A-Za-z0-9_-], starting alphanumeric")
    return robot_id


def check_token(token: str) -> str:
    """Return ``token`` if it is one safe subject token (no ``.``, ``*``, ``>`` or whitespace)."""
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        raise SubjectError(str(token), "subject token must be 1-128 of [A-Za-z0-9_-]")
    return token


def check_topic(topic: str) -> str:
    """Return ``topic`` if it is a fully qualified ROS 2 topic name (``/a/b_c``)."""
    if not isinstance(topic, str) or not TOPIC_RE.fullmatch(topic) or "__" in topic:
        raise SubjectError(str(topic), "topic must be a fully qualified ROS 2 name like /odom or /a/b")
    return topic


def normalize_type(type_name: str) -> str:
    """'pkg/Type' or 'pkg/msg/Type' -> 'pkg/msg/Type'; SubjectError if it is neither."""
    match = TYPE_RE.fullmatch(type_name or "")
    if not match:
        raise SubjectError(str(type_name), "type must look like pkg/msg/Type")
    return f"{match.group(1)}/msg/{match.group(2)}"


def topic_tokens(topic: str) -> str:
    """'/a/b' -> 'a.b' (validated)."""
    return check_topic(topic)[1:].replace("/", ".")


def telemetry(robot_id: str, topic: str) -> str:
    """Subject carrying ROS topic ``topic`` out of robot ``robot_id``."""
    return f"{ROOT}.{check_robot_id(robot_id)}.ros.{topic_tokens(topic)}"


def overview(robot_id: str, topic: str) -> str:
    """Subject of the decimated copy of ROS topic ``topic`` (nats_bridge ``out.<n>.overview_rate_hz``)."""
    return f"{ROOT}.{check_robot_id(robot_id)}.overview.{topic_tokens(topic)}"


def overview_of(subject: str) -> str | None:
    """``robots.<id>.ros.<topic>`` -> ``robots.<id>.overview.<topic>`` (the robot token may be ``*``);
    None if ``subject`` is not a telemetry subject."""
    parts = subject.split(".")
    if len(parts) < 4 or parts[0] != ROOT or parts[2] != "ros":
        return None
    return ".".join((ROOT, parts[1], "overview", *parts[3:]))


def command(robot_id: str, topic: str) -> str:
    """Subject carrying commands for ROS topic ``topic`` into robot ``robot_id``."""
    return f"{ROOT}.{check_robot_id(robot_id)}.cmd.{topic_tokens(topic)}"


def service(robot_id: str, service_name: str) -> str:
    """Request subject of ROS service ``service_name`` on robot ``robot_id`` (``/robot_sim/estop`` ->
    ``robots.<id>.srv.robot_sim.estop``); service names follow the topic name rules."""
    return f"{ROOT}.{check_robot_id(robot_id)}.srv.{topic_tokens(service_name)}"


def alerts(robot_id: str) -> str:
    return f"{ROOT}.{check_robot_id(robot_id)}.alerts"


def deploy(robot_id: str, event: str) -> str:
    return f"{ROOT}.{check_robot_id(robot_id)}.deploy.{check_token(event)}"


def frames(robot_id: str, camera: str) -> str:
    return f"{ROOT}.{check_robot_id(robot_id)}.frames.{check_token(camera)}"


def health(robot_id: str, part: str | None = None) -> str:
    base = f"{ROOT}.{check_robot_id(robot_id)}.health"
    return base if part is None else f"{base}.{check_token(part)}"


def presence(robot_id: str) -> str:
    return f"{ROOT}.{check_robot_id(robot_id)}.presence"


def robot_wildcard(robot_id: str, kind: str) -> str:
    """Wildcard subscription for one kind of one robot, e.g. ``robots.r1.cmd.>``."""
    if kind not in KINDS:
        raise SubjectError(kind, f"kind must be one of {', '.join(KINDS)}")
    return f"{ROOT}.{check_robot_id(robot_id)}.{kind}.>"


@dataclass(frozen=True)
class ParsedSubject:
    robot_id: str
    kind: str
    rest: tuple[str, ...]

    @property
    def topic(self) -> str:
        """ROS topic (``ros``/``cmd``) or service name (``srv``): tokens joined with ``/``."""
        return "/" + "/".join(self.rest)


def parse(subject: str) -> ParsedSubject:
    """Split a concrete (wildcard-free) subject of the scheme; SubjectError if it is not one."""
    parts = subject.split(".") if isinstance(subject, str) else []
    if len(parts) < 3 or parts[0] != ROOT or parts[2] not in KINDS:
        raise SubjectError(str(subject), f"not a {ROOT}.<id>.<kind>... subject")
    check_robot_id(parts[1])
    for token in parts[3:]:
        check_token(token)
    if parts[2] in PATH_KINDS:
        if len(parts) < 4:
            raise SubjectError(subject, "ros/cmd/srv subjects need a topic or service name")
        check_topic("/" + "/".join(parts[3:]))
    return ParsedSubject(parts[1], parts[2], tuple(parts[3:]))


@dataclass(frozen=True)
class CommandRule:
    """One allowlisted command: NATS subject -> ROS topic, with the only type accepted."""

    topic: str
    type_name: str
    subject: str
    allow_non_finite: bool = False  # NaN/inf in float fields reach ROS only where a site opted in


class CommandAllowlist:
    """Commands accepted into ROS: exact subjects with exact types, nothing else (no patterns)."""

    def __init__(self, robot_id: str, rules: list[tuple[str, str]] | list[tuple[str, str, bool]]) -> None:
        """``rules``: (topic, type) or (topic, type, allow_non_finite) per allowlisted command."""
        self.robot_id = check_robot_id(robot_id)
        self._by_subject: dict[str, CommandRule] = {}
        for topic, type_name, *opt_in in rules:
            rule = CommandRule(
                check_topic(topic), normalize_type(type_name), command(robot_id, topic), bool(opt_in and opt_in[0])
            )
            self._by_subject[rule.subject] = rule

    @property
    def rules(self) -> list[CommandRule]:
        return list(self._by_subject.values())

    def check(self, subject: str, type_name: str | None) -> CommandRule:
        """The rule granting this command; NotAllowedError if the subject or the type is not granted."""
        rule = self._by_subject.get(subject)
        if rule is None:
            raise NotAllowedError(subject, str(type_name), "subject not in the command allowlist")
        try:
            normalized = normalize_type(type_name or "")
        except SubjectError:
            raise NotAllowedError(subject, str(type_name), f"type header must be {rule.type_name}") from None
        if normalized != rule.type_name:
            raise NotAllowedError(subject, str(type_name), f"only {rule.type_name} is accepted here")
        return rule
