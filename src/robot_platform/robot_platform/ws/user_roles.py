"""Roles: which subjects each role may subscribe to, publish on and call.

Rules are NATS subject patterns (``*`` one token, ``>`` the rest) per action: ``subscribe``,
``publish`` (commands), ``call`` (services). Built-in roles: viewer reads (telemetry, alerts, health,
presence, frames, deploy events, robots' logs, jobs and registry events) and calls the fleet's read
services (registry list, log query, jobs get/list); operator also teleops (cmd_vel), e-stops, pauses,
acknowledges alerts, silences checks (``robots.*.health.ack|silence``) and exports the data around an
alert as a file (``fleet.alerts.export``); admin may also send any
command, call any robot service (deploy, rollback, fault injection), create and cancel jobs and search
the audit trail (``fleet.audit.query``). The rule subject of a fleet name (``/fleet/...``, see topics.py)
is its NATS subject: ``/fleet/jobs/create`` is ``call jobs.create``.

A users file may replace a role's rules (``roles:`` there, see access.py); :func:`resolve_roles`
flattens inheritance and refuses cycles, unknown parents and unknown actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from robot_platform.ws.errors import UsersFileError

ACTIONS = ("subscribe", "publish", "call")
ROLES = ("viewer", "operator", "admin")

VIEWER_SUBSCRIBE = (
    "robots.*.ros.>", "robots.*.alerts", "robots.*.health", "robots.*.health.>", "robots.*.presence",
    "robots.*.frames.*", "robots.*.deploy.>", "robots.*.logs.>", "jobs.events", "fleet.registry.events",
)  # fmt: skip
VIEWER_CALL = ("fleet.registry.list", "fleet.logs.query", "fleet.alerts.query", "jobs.get", "jobs.list")
OPERATOR_PUBLISH = (
    "robots.*.cmd.cmd_vel", "robots.*.cmd.estop", "robots.*.cmd.e_stop", "robots.*.cmd.pause",
    "robots.*.cmd.resume", "robots.*.cmd.alerts.ack", "robots.*.cmd.alert_ack",
)  # fmt: skip
OPERATOR_CALL = (
    "robots.*.srv.*.estop", "robots.*.srv.*.pause", "robots.*.srv.*.acknowledge_alert",
    "robots.*.srv.estop", "robots.*.srv.pause", "robots.*.srv.acknowledge_alert",
    "robots.*.health.ack", "robots.*.health.silence",
    # "Export ±N min" around an alert (ws/alert_export_http.py): a file of the robot's logs and telemetry
    # that leaves the console, and a capture the robot has to make: operators and admins, not viewers.
    "fleet.alerts.export",
)  # fmt: skip
# The audit trail names users, their addresses and what they did: admin only (least privilege).
# The package catalogue only serves whoever deploys (admin).
ADMIN_JOBS_CALL = ("jobs.create", "jobs.cancel", "jobs.catalogue", "fleet.audit.query")
DEFAULT_ROLES: dict[str, dict[str, Any]] = {
    "viewer": {"subscribe": list(VIEWER_SUBSCRIBE), "publish": [], "call": list(VIEWER_CALL)},
    "operator": {"inherits": "viewer", "publish": list(OPERATOR_PUBLISH), "call": list(OPERATOR_CALL)},
    "admin": {"inherits": "operator", "publish": ["robots.*.cmd.>"], "call": ["robots.*.srv.>", *ADMIN_JOBS_CALL]},
}


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard match: ``*`` matches one token, a final ``>`` one or more tokens."""
    pt, st = pattern.split("."), subject.split(".")
    for i, part in enumerate(pt):
        if part == ">":
            return i == len(pt) - 1 and len(st) > i
        if i >= len(st) or (part != "*" and part != st[i]):
            return False
    return len(pt) == len(st)


@dataclass(frozen=True)
class Role:
    name: str
    rules: dict[str, tuple[str, ...]]

    def allows(self, action: str, subject: str) -> bool:
        return any(subject_matches(p, subject) for p in self.rules.get(action, ()))


def resolve_roles(defined: dict[str, Any], source: str = "<built-in>") -> dict[str, Role]:
    """Roles with inherited rules flattened; UsersFileError on cycles, unknown actions or parents."""
    merged = {**DEFAULT_ROLES, **defined}
    out: dict[str, Role] = {}

    def build(name: str, seen: tuple[str, ...]) -> Role:
        if name in out:
            return out[name]
        if name in seen:
            raise UsersFileError(source, f"roles: inheritance cycle {' -> '.join((*seen, name))}")
        spec = merged.get(name)
        if not isinstance(spec, dict):
            raise UsersFileError(source, f"roles: {name!r} is not defined")
        unknown = set(spec) - {*ACTIONS, "inherits"}
        if unknown:
            raise UsersFileError(source, f"roles.{name}: unknown keys {sorted(unknown)}; use {ACTIONS}")
        rules: dict[str, list[str]] = {a: [] for a in ACTIONS}
        parent = spec.get("inherits")
        if parent:
            for action, patterns in build(str(parent), (*seen, name)).rules.items():
                rules[action].extend(patterns)
        for action in ACTIONS:
            patterns = spec.get(action, [])
            if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
                raise UsersFileError(source, f"roles.{name}.{action} must be a list of subject patterns")
            rules[action].extend(patterns)
        role = Role(name, {a: tuple(p) for a, p in rules.items()})
        out[name] = role
        return role

    for name in merged:
        build(name, ())
    return out
