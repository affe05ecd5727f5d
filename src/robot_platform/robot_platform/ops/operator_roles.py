"""Operator roles: which remote actions each role may run, and the NATS users that enforce it.

Roles file (YAML)::

    roles:
      viewer:   [list_graph]
      operator: [list_graph, capture, restart_app]
    users:
      alice: operator
      bob: viewer

Two layers: robot_agent checks the request's ``user``/``role`` against this file (clear refusals and an
audit line on the robot), and the hub's NATS permissions are the real enforcement: each operator gets a
NATS user whose publish permission covers only ``robots.*.ops.<action>`` for their role's actions plus
read-only access to the registry bucket and the log stream (:func:`operator_user_entry`, passed to
``bridge.fleet_nats.render_hub(extra_users=...)``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robot_platform.exceptions import ConfigError
from robot_platform.messaging.inbox import inbox_subjects
from robot_platform.ops.errors import ActionNotAllowedError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PASSWORD_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")

# Read-only JetStream API an operator needs for `robot-platform robots` and `robot-platform logs`.
READ_ONLY_JS = (
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.KV_FLEET_REGISTRY",
    "$JS.API.STREAM.INFO.FLEET_LOGS",
    "$JS.API.STREAM.MSG.GET.KV_FLEET_REGISTRY",
    "$JS.API.DIRECT.GET.KV_FLEET_REGISTRY.>",
    "$JS.API.CONSUMER.CREATE.KV_FLEET_REGISTRY",
    "$JS.API.CONSUMER.CREATE.KV_FLEET_REGISTRY.>",
    "$JS.API.CONSUMER.CREATE.FLEET_LOGS",
    "$JS.API.CONSUMER.CREATE.FLEET_LOGS.>",
    "$JS.API.CONSUMER.INFO.FLEET_LOGS.>",
    "$JS.API.CONSUMER.MSG.NEXT.FLEET_LOGS.>",
    "$JS.API.CONSUMER.DELETE.FLEET_LOGS.>",
    "$JS.API.CONSUMER.DELETE.KV_FLEET_REGISTRY.>",
    "$JS.API.CONSUMER.INFO.KV_FLEET_REGISTRY.>",
)


@dataclass
class Roles:
    roles: dict[str, frozenset[str]] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, body: Any, source: str = "roles") -> Roles:
        if not isinstance(body, dict):
            raise ConfigError(source, type(body).__name__, "roles file must be a map with roles and users")
        roles_raw, users_raw = body.get("roles") or {}, body.get("users") or {}
        if not isinstance(roles_raw, dict) or not isinstance(users_raw, dict):
            raise ConfigError(source, "roles/users", "both must be maps")
        roles = {}
        for role, actions in roles_raw.items():
            if not isinstance(role, str) or not NAME_RE.fullmatch(role):
                raise ConfigError(f"{source}.roles", role, "role names are [A-Za-z0-9_.-]")
            if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
                raise ConfigError(f"{source}.roles.{role}", actions, "must be a list of action names")
            roles[role] = frozenset(actions)
        users = {}
        for user, role in users_raw.items():
            if not isinstance(user, str) or not NAME_RE.fullmatch(user):
                raise ConfigError(f"{source}.users", user, "user names are [A-Za-z0-9_.-]")
            if role not in roles:
                raise ConfigError(f"{source}.users.{user}", role, "role is not defined under roles")
            users[user] = role
        return cls(roles, users)

    @classmethod
    def load(cls, path: str | Path) -> Roles:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(yaml.safe_load(f), str(path))

    def check(self, user: str, role: str, action: str) -> None:
        """ActionNotAllowedError unless ``user`` has ``role`` and ``role`` grants ``action``."""
        if self.users.get(user) != role:
            raise ActionNotAllowedError(action, f"user {user!r} does not have role {role!r}")
        if action not in self.roles.get(role, frozenset()):
            raise ActionNotAllowedError(action, f"role {role!r} does not grant it")


def operator_permissions(user: str, actions: frozenset[str]) -> str:
    """NATS permissions (hub config syntax) of an operator whose role grants ``actions``: its replies
    come to its own inbox (``_INBOX.<user>.>``, see messaging/inbox.py), never to another operator's."""
    publish = [f"robots.*.ops.{a}" for a in sorted(actions)] + list(READ_ONLY_JS)
    items = ", ".join(f'"{p}"' for p in publish)
    return f'{{ publish: {{ allow: [{items}] }}, subscribe: {{ allow: ["{inbox_subjects(user)}"] }} }}'


def operator_user_entry(user: str, password: str, roles: Roles) -> str:
    """One user entry for the hub's FLEET account (for ``render_hub(extra_users=...)``)."""
    if user not in roles.users:
        raise ConfigError("user", user, "not in the roles file")
    if not PASSWORD_RE.fullmatch(password):
        raise ConfigError("password", "***", "must be 16-128 of [A-Za-z0-9_-]")
    actions = roles.roles[roles.users[user]]
    return f'{{ user: "{user}", password: "{password}", permissions: {operator_permissions(user, actions)} }}'
