"""What the Foxglove side of ws_agent offers: channels, client-publishable commands and services.

Why from the bridge config: a Foxglove channel needs its schema up front (before any message), and
the bridge's parameters are the one place that says which ROS topics leave the robot with which type
(``out.<name>.{topic,type}``), which commands may enter (``in.<name>``, the allowlist) and which services
are callable (``services.<name>``). ws_agent reads the same file nats_bridge is started with
(``foxglove_bridge_config``; default: the installed config/robot.yaml). Topics the bridge finds through
``out.allow`` globs have no type in the config and get no channel (rosbridge still reaches them).
Entries with their own ``subject`` are skipped too (the agent maps names to the default subjects only).

Robot mode offers this robot's names as ROS names (``/odom``); fleet mode offers every robot's under
``/robots/<id>/...``: a robot is added the first time any ``robots.<id>.health...`` message arrives
(nats_bridge reports every ``health_period_s``), so a robot that joins later gets its channels then.
Robot ids that are not valid ROS name tokens (``-``) cannot be named and are skipped (counted).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from robot_platform.exceptions import ConfigError
from robot_platform.messaging import subjects
from robot_platform.ws.ros_schemas import SchemaError, SchemaStore
from robot_platform.ws.topics import Mode

MAX_ROBOTS = 1000  # fleet mode: robots given channels (more are counted, not added)
ROS_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@dataclass(frozen=True)
class Route:
    name: str  # ROS topic or service name on the robot
    type_name: str


@dataclass(frozen=True)
class BridgeRoutes:
    topics: tuple[Route, ...] = ()
    commands: tuple[Route, ...] = ()
    services: tuple[Route, ...] = ()


@dataclass(frozen=True)
class Channel:
    id: int
    name: str  # the client's name (robot mode: /odom; fleet mode: /robots/r1/odom)
    type_name: str
    schema: str


@dataclass(frozen=True)
class Service:
    id: int
    name: str
    type_name: str
    request: str
    response: str


def _routes(params: dict, group: str, key: str) -> tuple[Route, ...]:
    section = params.get(group) or {}
    routes = []
    for entry_name in section.get("names") or []:
        entry = section.get(entry_name) or {}
        if entry.get("subject"):
            continue  # a custom subject: not reachable by the default name mapping
        name, type_name = entry.get(key), entry.get("type")
        if not isinstance(name, str) or not isinstance(type_name, str) or not name or not type_name:
            raise ConfigError(f"{group}.{entry_name}", entry, f"needs '{key}' and 'type'")
        routes.append(Route(name if name.startswith("/") else "/" + name, type_name))
    return tuple(routes)


def load_bridge_routes(path: str | Path) -> BridgeRoutes:
    """The nats_bridge section of a ROS parameters YAML (key ``/**/nats_bridge`` or ``nats_bridge``)."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError("foxglove_bridge_config", str(path), f"cannot read: {exc}") from None
    sections = [v for k, v in doc.items() if isinstance(k, str) and k.rstrip("/").endswith("nats_bridge")]
    if not sections or not isinstance(sections[0], dict):
        raise ConfigError("foxglove_bridge_config", str(path), "no nats_bridge section")
    params = sections[0].get("ros__parameters") or {}
    return BridgeRoutes(_routes(params, "out", "topic"), _routes(params, "in", "topic"),
                        _routes(params, "services", "service"))  # fmt: skip


class Catalog:
    """Channels and services per robot, with ids stable for the agent's lifetime. Thread-safe."""

    def __init__(self, mode: Mode, routes: BridgeRoutes, schemas: SchemaStore | None = None) -> None:
        self.mode, self.routes = mode, routes
        self.schemas = schemas or SchemaStore()
        self._lock = threading.Lock()
        self._robots: set[str] = set()
        self.channels: dict[int, Channel] = {}
        self.services: dict[int, Service] = {}
        self._next = 1
        self.skipped_robots = 0
        self.schema_errors: list[str] = []
        # types checked once at start: a type whose definition is not installed gets no channel (logged
        # by the agent from schema_errors; rosbridge still serves it), the others are served
        topics, services = [], []
        for route in routes.topics:
            if self._found(route, self.schemas.message):
                topics.append(route)
        for route in routes.services:
            if self._found(route, self.schemas.service):
                services.append(route)
        self.routes = BridgeRoutes(tuple(topics), routes.commands, tuple(services))

    def _found(self, route: Route, definition: Callable[[str], object]) -> bool:
        try:
            definition(route.type_name)
        except SchemaError as exc:
            self.schema_errors.append(f"{route.name}: {exc}")
            return False
        return True

    def _name(self, robot_id: str, ros_name: str) -> str:
        return ros_name if self.mode is Mode.ROBOT else f"/robots/{robot_id}{ros_name}"

    def add_robot(self, robot_id: str) -> tuple[list[Channel], list[Service]]:
        """Channels and services new with this robot (empty if known, invalid or beyond MAX_ROBOTS)."""
        with self._lock:
            if robot_id in self._robots:
                return [], []
            if len(self._robots) >= MAX_ROBOTS or not set(robot_id) <= ROS_TOKEN_CHARS:
                self.skipped_robots += 1
                return [], []
            subjects.check_robot_id(robot_id)
            self._robots.add(robot_id)
            channels, services = [], []
            for route in self.routes.topics:
                channel = Channel(self._next, self._name(robot_id, route.name), route.type_name,
                                  self.schemas.message(route.type_name))  # fmt: skip
                self.channels[channel.id] = channel
                channels.append(channel)
                self._next += 1
            for route in self.routes.services:
                request, response = self.schemas.service(route.type_name)
                svc = Service(self._next, self._name(robot_id, route.name), route.type_name, request, response)
                self.services[svc.id] = svc
                services.append(svc)
                self._next += 1
            return channels, services

    def snapshot(self) -> tuple[list[Channel], list[Service]]:
        with self._lock:
            return list(self.channels.values()), list(self.services.values())

    def command_type(self, ros_name: str) -> str | None:
        """The allowlisted type of command topic ``ros_name`` (the name on the robot), None if not allowed."""
        for route in self.routes.commands:
            if route.name == ros_name:
                return route.type_name
        return None

    def robots(self) -> list[str]:
        with self._lock:
            return sorted(self._robots)
