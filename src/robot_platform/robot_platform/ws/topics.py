"""rosbridge topic and service names <-> NATS subjects (built with the bridge's :mod:`subjects`).

Browser-side names are ROS-style; the robot is named in the path, the subject kind comes from the
direction and the first path element:

    subscribe  /robots/r1/odom                -> robots.r1.ros.odom          (telemetry, any ROS topic)
               /robots/r1/scan/front          -> robots.r1.ros.scan.front
               /robots/r1/alerts              -> robots.r1.alerts
               /robots/r1/health[/<part>]     -> robots.r1.health[.<part>]
               /robots/r1/presence            -> robots.r1.presence
               /robots/r1/frames/<camera>     -> robots.r1.frames.<camera>   (binary frame messages,
                                                 see frame_relay.py; never .../<camera>/lease)
               /robots/r1/deploy/<event>      -> robots.r1.deploy.<event>
               /robots/r1/logs                -> robots.r1.logs.>            (ROS log records, each as
                                                 {robot, stamp, level, node, msg, file, function, line})
    publish    /robots/r1/cmd_vel             -> robots.r1.cmd.cmd_vel       (commands into ROS)
    service    /robots/r1/robot_sim/estop     -> robots.r1.srv.robot_sim.estop   (NATS request/reply)
               /robots/r1/health/ack          -> robots.r1.health.ack      (health_monitor_tree's operator
               /robots/r1/health/silence      -> robots.r1.health.silence   requests, health/operator_requests.py;
                                                 the agent puts the logged-in user into ``user``)

Fleet services (fleet mode only; the control server's services, not a robot's):

    call_service /fleet/registry/list   -> fleet.registry.list   (fleet_registry: {} -> {robots: [...]})
                 /fleet/logs/query      -> fleet.logs.query      (fleet_registry, see ops/log_query.py)
                 /fleet/alerts/query    -> fleet.alerts.query    (fleet_registry, ops/alert_history.py)
                 /fleet/audit/query     -> fleet.audit.query     (fleet_registry, ops/audit_query.py)
                 /fleet/jobs/create|get|list|cancel|catalogue -> jobs.<op> (jobs/nats_api.py)
    subscribe    /fleet/jobs/events     -> jobs.events           (each jobs event as the msg)
                 /fleet/registry/events -> fleet.registry.events (a robot's record on every change)

These answer ``{ok: true, result}`` / ``{ok: false, code, error}``: ``result`` becomes the rosbridge
``values``, an error a ``result: false`` response with the reason. Their topics carry plain msgpack
maps (no platform envelope). The role rules for them are these subjects (see access.py).

Fleet mode also accepts ``/robots/*/<rest>`` for subscribe (e.g. ``/robots/*/presence`` for the
fleet overview): one NATS wildcard subscription; each ``publish`` to the client then carries the extra
field ``"robot": "<id>"`` (roslibjs users read it with ``ros.on('/robots/*/presence', m => m.robot)``).

In robot mode (the touch panel) a name without the ``/robots/<id>`` prefix means this robot: ``/odom``
is ``robots.<this>.ros.odom``; another robot's name is refused. In fleet mode every name must carry
the prefix. Consequences: a ROS topic whose first element is ``alerts``, ``health``, ``presence``,
``frames``, ``deploy`` or ``logs`` is reached under ``/robots/<id>/...`` only if the bridge publishes it
under that kind; robot ids with ``-`` cannot be written in a ROS name, so fleet names need
``[A-Za-z0-9_]`` ids.

Service subjects come from :func:`robot_platform.messaging.subjects.service`; nats_bridge answers them
for its allowlisted services (see bridge/services.py for the reply format).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from robot_platform.messaging import subjects
from robot_platform.messaging.errors import SubjectError
from robot_platform.ws.errors import TopicError

PREFIX = "robots"
SINGLE_KINDS = ("alerts", "presence")  # subject has no further tokens
PART_KINDS = ("frames", "deploy")  # exactly one further token
LOGS = "logs"  # no further token in the name; the subject covers every level: robots.<id>.logs.>
FLEET = "fleet"
JOBS_PREFIX = "jobs"  # jobs.nats_api.SUBJECT_PREFIX (not imported: that pulls in the jobs service)
FLEET_SERVICES = {
    "/fleet/registry/list": "fleet.registry.list",  # ops.registry.LIST_SUBJECT
    "/fleet/logs/query": "fleet.logs.query",  # ops.log_query.QUERY_SUBJECT
    "/fleet/alerts/query": "fleet.alerts.query",  # ops.alert_history.QUERY_SUBJECT
    "/fleet/audit/query": "fleet.audit.query",  # ops.audit_query.QUERY_SUBJECT (admin only by default)
    **{f"/fleet/jobs/{op}": f"{JOBS_PREFIX}.{op}" for op in ("create", "get", "list", "cancel", "catalogue")},
}
FLEET_TOPICS = {
    "/fleet/jobs/events": f"{JOBS_PREFIX}.events",
    "/fleet/registry/events": "fleet.registry.events",  # ops.registry.EVENTS_SUBJECT
}
PLAIN_SUBJECTS = frozenset(FLEET_TOPICS.values())  # msgpack maps without the platform envelope
HEALTH = "health"  # zero or one further token
OPERATOR_REQUESTS = ("ack", "silence")  # /robots/<id>/health/<op>: health_monitor_tree's NATS requests
ANY_ROBOT = "*"  # fleet mode, subscribe only: /robots/*/presence -> robots.*.presence
PLACEHOLDER = "robot"  # a valid robot id used to validate the rest of a wildcard name


class Mode(Enum):
    ROBOT = "robot"
    FLEET = "fleet"


@dataclass(frozen=True)
class Target:
    """Where a client name points: the robot, the ROS-side name on that robot, the NATS subject."""

    robot_id: str
    ros_name: str
    subject: str
    frames: bool = False  # a camera: binary frame messages, latest only, leased (see frame_relay.py)
    api: bool = False  # a fleet service: reply {ok, result} / {ok: false, code, error} (see module docstring)
    as_user: bool = False  # an operator request: its ``user`` argument is the caller's login, not the client's


def _is_fleet(name: str) -> bool:
    return name == f"/{FLEET}" or name.startswith(f"/{FLEET}/")


def payload_kind(subject: str) -> str:
    """How the hub reads a concrete subject's messages: ``frame``, ``log``, ``plain`` or ``envelope``."""
    if subject in PLAIN_SUBJECTS:
        return "plain"
    parts = subject.split(".")
    if len(parts) == 4 and parts[0] == PREFIX and "*" not in parts:
        if parts[2] == "frames":
            return "frame"
        if parts[2] == LOGS:
            return "log"
    return "envelope"


class TopicMapper:
    """Maps client names to subjects for one agent (mode and, in robot mode, its robot id)."""

    def __init__(self, mode: Mode, robot_id: str = "") -> None:
        self.mode = mode
        self.robot_id = subjects.check_robot_id(robot_id) if mode is Mode.ROBOT else robot_id

    def _fleet(self, name: str, table: dict[str, str], what: str) -> Target | None:
        """The target of a ``/fleet/...`` name (None: not a fleet name); TopicError if unknown or robot mode."""
        if not _is_fleet(name):
            return None
        if self.mode is not Mode.FLEET:
            raise TopicError(name, "fleet services are served by the control server's agent (fleet mode)")
        subject = table.get(name)
        if subject is None:
            raise TopicError(name, f"not a fleet {what}; use one of {', '.join(sorted(table))}")
        return Target("", name, subject, api=table is FLEET_SERVICES)

    def _split(self, name: str, wildcard: bool = False) -> tuple[str, list[str]]:
        star = f"/{PREFIX}/{ANY_ROBOT}/"
        if wildcard and self.mode is Mode.FLEET and name.startswith(star):
            return ANY_ROBOT, self._split(f"/{PREFIX}/{PLACEHOLDER}/" + name[len(star) :])[1]
        try:
            subjects.check_topic(name)
        except SubjectError:
            raise TopicError(name, "use a fully qualified ROS name like /odom or /robots/r1/odom") from None
        parts = name[1:].split("/")
        if parts[0] == PREFIX and len(parts) >= 3:
            robot, rest = parts[1], parts[2:]
            if self.mode is Mode.ROBOT and robot != self.robot_id:
                raise TopicError(name, f"this agent serves robot {self.robot_id!r} only")
            return robot, rest
        if self.mode is Mode.FLEET:
            raise TopicError(name, "fleet mode: name the robot, e.g. /robots/r1" + name)
        return self.robot_id, parts

    def subscribe(self, name: str) -> Target:
        """Subject to receive for a ``subscribe`` of ``name`` (fleet mode: ``/robots/*/...`` = every robot)."""
        fleet = self._fleet(name, FLEET_TOPICS, "topic")
        if fleet is not None:
            return fleet
        robot, rest = self._split(name, wildcard=True)
        if robot == ANY_ROBOT and rest[:1] == ["frames"]:
            raise TopicError(name, "camera frames are watched one robot at a time: /robots/<id>/frames/<camera>")
        if robot == ANY_ROBOT:  # same validation and shape as one robot's subject, robot token a wildcard
            target = self.subscribe(f"/{PREFIX}/{PLACEHOLDER}/" + "/".join(rest))
            parts = target.subject.split(".")
            parts[1] = ANY_ROBOT
            return Target(ANY_ROBOT, target.ros_name, ".".join(parts))
        kind = rest[0]
        try:
            if kind in SINGLE_KINDS and len(rest) == 1:
                subject = subjects.alerts(robot) if kind == "alerts" else subjects.presence(robot)
            elif kind == HEALTH and len(rest) <= 2:
                subject = subjects.health(robot, rest[1] if len(rest) == 2 else None)
            elif kind == "frames" and len(rest) == 2:
                return Target(robot, "/" + "/".join(rest), subjects.frames(robot, rest[1]), frames=True)
            elif kind in PART_KINDS and len(rest) == 2:
                subject = subjects.deploy(robot, rest[1])
            elif kind == LOGS and len(rest) == 1:
                subject = f"{PREFIX}.{subjects.check_robot_id(robot)}.{LOGS}.>"
            elif kind in SINGLE_KINDS or kind in PART_KINDS or kind in (HEALTH, LOGS):
                raise TopicError(name, f"'{kind}' names take {self._shape(kind)}")
            else:
                subject = subjects.telemetry(robot, "/" + "/".join(rest))
        except SubjectError as exc:
            raise TopicError(name, exc.reason) from None
        return Target(robot, "/" + "/".join(rest), subject)

    def publish(self, name: str) -> Target:
        """Command subject for a ``publish`` to ``name``."""
        if _is_fleet(name):
            raise TopicError(name, "fleet names cannot be published to (fleet services: call_service)")
        robot, rest = self._split(name)
        ros_name = "/" + "/".join(rest)
        try:
            return Target(robot, ros_name, subjects.command(robot, ros_name))
        except SubjectError as exc:
            raise TopicError(name, exc.reason) from None

    def service(self, name: str) -> Target:
        """Request subject for a ``call_service`` of ``name``."""
        fleet = self._fleet(name, FLEET_SERVICES, "service")
        if fleet is not None:
            return fleet
        robot, rest = self._split(name)
        ros_name = "/" + "/".join(rest)
        if len(rest) == 2 and rest[0] == HEALTH and rest[1] in OPERATOR_REQUESTS:
            return Target(robot, ros_name, subjects.health(robot, rest[1]), as_user=True)
        try:
            subject = subjects.service(robot, ros_name)
        except SubjectError as exc:
            raise TopicError(name, exc.reason) from None
        return Target(robot, ros_name, subject)

    @staticmethod
    def _shape(kind: str) -> str:
        if kind in SINGLE_KINDS or kind == LOGS:
            return f"no sub-path (/robots/<id>/{kind})"
        if kind == HEALTH:
            return "at most one part (/robots/<id>/health/<part>)"
        return f"exactly one part (/robots/<id>/{kind}/<name>)"

    def name_for(self, subject: str) -> str:
        """Client name of a concrete subject (the reverse mapping; fleet-style, with the robot prefix)."""
        try:
            parsed = subjects.parse(subject)
        except SubjectError as exc:
            raise TopicError(subject, exc.reason) from None
        path_kind = parsed.kind in ("ros", "overview", "cmd")  # an overview copy is named as its topic
        tail = parsed.topic if path_kind else "/" + "/".join((parsed.kind, *parsed.rest))
        return f"/{PREFIX}/{parsed.robot_id}{tail}"
