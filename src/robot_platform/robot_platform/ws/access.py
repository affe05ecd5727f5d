"""Who may do what: users and roles from a YAML file, credentials of a request, login checks.

Users file (see config/users.example.yaml)::

    users:
      alice: {role: operator, secret_hash: "scrypt$16384$8$1$<salt b64>$<hash b64>"}
    roles:                       # optional: replaces the built-in rules of a role
      operator: {inherits: viewer, publish: [...], call: [...]}

Secrets are only stored hashed (scrypt, or pbkdf2_sha256 with >= 100k iterations; random 16-byte salt)
and compared in constant time; an unknown user costs the same hash as a known one. Make a hash with
``python -m robot_platform.ws.access hash`` (reads the secret from stdin, prints the line to paste).

Credentials over rosbridge (chosen: on the WebSocket upgrade, so an unauthorized client never gets a
socket): ``Authorization: Bearer <user>:<secret>``, ``Authorization: Basic ...`` or, for browsers
(which cannot set headers on a WebSocket), the query parameter ``?token=<user>:<secret>``. The rosbridge
``auth`` op (``{"op": "auth", "user", "secret"}`` or rosauth's ``client``/``mac``) is accepted as the
first message of a connection opened without credentials when ``anonymous_role`` is empty. Query strings are
never logged (see http_api.py). Secret hashes: hashing.py (checked on its bounded pool); limits on
failed logins: login_limiter.py; Host/Origin rules: origin.py; audit events: audit.py.

Roles and their rules: roles.py.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from robot_platform.ws.errors import AccessDeniedError, AuthError, UsersFileError
from robot_platform.ws.hashing import HashPool, check_hash_line, hash_secret
from robot_platform.ws.user_roles import Role, resolve_roles

MAX_SECRET_CHARS = 1024


@dataclass(frozen=True)
class User:
    name: str
    role: str
    secret_hash: str = field(repr=False)


@dataclass(frozen=True)
class Principal:
    """An authenticated client (or the anonymous role)."""

    user: str
    role: Role


class AccessControl:
    """Authenticates users and checks each operation against their role."""

    def __init__(self, users: dict[str, User], roles: dict[str, Role], anonymous_role: str = "",
                 hasher: HashPool | None = None) -> None:  # fmt: skip
        self.users = users
        self.hasher = hasher or HashPool()
        self.roles = roles
        if anonymous_role and anonymous_role not in roles:
            raise UsersFileError("<parameters>", f"anonymous_role {anonymous_role!r} is not a role")
        self.anonymous = Principal("anonymous", roles[anonymous_role]) if anonymous_role else None
        self._dummy_hash = hash_secret(secrets.token_hex(8))

    @classmethod
    def from_file(cls, path: str | Path, anonymous_role: str = "", hasher: HashPool | None = None) -> AccessControl:
        source = str(path)
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise UsersFileError(source, f"cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise UsersFileError(source, f"not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise UsersFileError(source, "top level must be a mapping with 'users' (and optional 'roles')")
        roles = resolve_roles(data.get("roles") or {}, source)
        users: dict[str, User] = {}
        raw_users = data.get("users") or {}
        if not isinstance(raw_users, dict):
            raise UsersFileError(source, "'users' must map user names to {role, secret_hash}")
        for name, spec in raw_users.items():
            if not isinstance(spec, dict) or not isinstance(name, str) or ":" in name:
                raise UsersFileError(source, f"users.{name}: need a name without ':' and {{role, secret_hash}}")
            role = spec.get("role")
            if role not in roles:
                raise UsersFileError(source, f"users.{name}.role {role!r} is not one of {sorted(roles)}")
            try:
                check_hash_line(spec.get("secret_hash", ""))
            except ValueError as exc:
                raise UsersFileError(source, f"users.{name}.secret_hash: {exc}") from None
            users[name] = User(name, role, spec["secret_hash"])
        return cls(users, roles, anonymous_role, hasher)

    def authenticate(self, user: str, secret: str) -> Principal:
        """The principal for valid credentials; AuthError (same cost for unknown users) otherwise.

        Blocks while the hash pool checks the secret: call it from a worker thread, never the event
        loop. AuthBusyError when the pool is full (not a failed login)."""
        if not user or not secret or len(secret) > MAX_SECRET_CHARS:
            raise AuthError("missing or over-long credentials", user[:64])
        record = self.users.get(user)
        ok = self.hasher.verify(record.secret_hash if record else self._dummy_hash, secret)
        if record is None or not ok:
            raise AuthError("unknown user or wrong secret", user[:64])
        return Principal(user, self.roles[record.role])

    def authenticate_token(self, token: str) -> Principal:
        """``<user>:<secret>`` as sent in a Bearer header or the ``token`` query parameter."""
        user, sep, secret = token.partition(":")
        if not sep:
            raise AuthError("token must be <user>:<secret>")
        return self.authenticate(user, secret)

    def check(self, principal: Principal, action: str, subject: str, request_id: str | None = None) -> None:
        if not principal.role.allows(action, subject):
            raise AccessDeniedError(principal.user, principal.role.name, action, subject, request_id)


def credentials_from_request(authorization: str | None, token_param: str | None) -> str | None:
    """``<user>:<secret>`` from an Authorization header (Bearer or Basic) or the ``token`` parameter."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
        if scheme.lower() == "basic":
            try:
                return base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise AuthError("malformed Basic credentials") from None
        raise AuthError(f"unsupported Authorization scheme {scheme[:20]!r}; use Bearer or Basic")
    return token_param or None


def _main(argv: list[str]) -> int:
    """``python -m robot_platform.ws.access hash [scrypt|pbkdf2_sha256]``: secret on stdin -> hash line."""
    if not argv or argv[0] != "hash":
        sys.stderr.write("usage: python -m robot_platform.ws.access hash [scrypt|pbkdf2_sha256] < secret\n")
        return 2
    secret = sys.stdin.readline().rstrip("\n")
    if not secret:
        sys.stderr.write("empty secret on stdin\n")
        return 2
    sys.stdout.write(hash_secret(secret, argv[1] if len(argv) > 1 else "scrypt") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
