"""ws_agent's HTTP side as plain logic: routes, and the admission of a WebSocket upgrade.

No sockets here: :meth:`HttpApi.handle` takes the parsed request (method, target, headers, remote
address) and returns an :class:`HttpReply` to send, or an :class:`Admitted` upgrade for ``/ws``. It may
block (a login hashes on the hash pool), so the server calls it from a worker thread.

Routes:  GET /            web/index.html;  GET /<path>  files under web/ (see static_files.py)
         GET /healthz     aggregate counters as JSON (no user names, no secrets)
         GET /whoami      who the given credentials are: {user, role, mode, robot_id, rules}, in fleet mode
                          also {fleet: {call: {name: bool}, subscribe: {name: bool}}}
         GET /site        the site map (site_map.py: robots' odometry origins, floor plan), for any logged-in
                          user; GET /site/floor_plan its image (404 without one)
         GET /fleet/alerts/export?alert_id=&minutes=, GET /fleet/alerts/export/<id>  (fleet mode) one MCAP
                          file around an alert, started then fetched (alert_export_http.py)
         GET /ws          rosbridge v2 WebSocket (credentials as described in access.py)

Every request must name an allowed host (origin.py: DNS rebinding); ``/ws`` also needs an allowed Origin,
a free client slot, and valid credentials when it carries any. Every login path (upgrade token,
/whoami, and the gateway's ``auth`` op) asks the one LoginLimiter first. Nothing logs a request line or a
query string (tokens travel there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from robot_platform.ws.access import AccessControl, Principal, credentials_from_request
from robot_platform.ws.alert_export_http import EXPORT_PATH, EXPORT_SUBJECT, AlertExports
from robot_platform.ws.audit import Auditor
from robot_platform.ws.errors import AuthBusyError, AuthError
from robot_platform.ws.http_reply import HttpReply, json_reply, text
from robot_platform.ws.login_limiter import LoginLimiter
from robot_platform.ws.origin import HostPolicy, OriginPolicy
from robot_platform.ws.site_map import FLOOR_PLAN_PATH, SiteMap
from robot_platform.ws.static_files import StaticFiles
from robot_platform.ws.topics import FLEET_SERVICES, FLEET_TOPICS, Mode
from robot_platform.ws.user_roles import Role

WS_PATH = "/ws"
MAX_QUERY_CHARS = 4096
SINGLE_HEADERS = ("Host", "Origin", "Authorization")


@dataclass(frozen=True)
class Admitted:
    """A ``/ws`` upgrade let through; ``principal`` None: the first message must be an ``auth`` op."""

    principal: Principal | None
    client: str  # host:port, for audit lines
    address: str  # host, for login limits


def fleet_permissions(role: Role) -> dict[str, dict[str, bool]]:
    """What the role may do with each fleet name (same rules as the gateway applies to them)."""
    calls = {**FLEET_SERVICES, EXPORT_PATH: EXPORT_SUBJECT}  # the export is an HTTP route (alert_export_http.py)
    return {
        "call": {name: role.allows("call", subject) for name, subject in calls.items()},
        "subscribe": {name: role.allows("subscribe", subject) for name, subject in FLEET_TOPICS.items()},
    }


def _repeated_header(headers: Mapping[str, str]) -> str:
    """The first of the headers we decide on (Host, Origin, Authorization) that the request sends twice."""
    get_all = getattr(headers, "get_all", None)  # websockets' Headers; a plain dict cannot repeat a key
    if get_all is None:
        return ""
    return next((name for name in SINGLE_HEADERS if len(get_all(name)) > 1), "")


class HttpApi:
    """See the module docstring. ``refuse(kind)`` counts a refusal; ``stats()`` is the /healthz body."""

    def __init__(self, *, mode: Mode, robot_id: str, access_control: AccessControl, logins: LoginLimiter,
                 hosts: HostPolicy, origins: OriginPolicy, static: StaticFiles, auditor: Auditor,
                 client_slots: Callable[[], bool], stats: Callable[[], dict[str, Any]],
                 refuse: Callable[[str], None], log: Callable[[str], None],
                 site_map: SiteMap | None = None, exports: AlertExports | None = None) -> None:  # fmt: skip
        self.mode, self.robot_id = mode, robot_id
        self.access, self.logins, self.hosts, self.origins = access_control, logins, hosts, origins
        self.static, self.auditor = static, auditor
        self._client_slots, self._stats, self._refuse, self._log = client_slots, stats, refuse, log
        self.site_map = site_map or SiteMap()
        self.exports = exports if mode is Mode.FLEET else None

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], remote: tuple[str, int]
    ) -> HttpReply | Admitted:
        addr, client = str(remote[0]), f"{remote[0]}:{remote[1]}"
        repeated = _repeated_header(headers)
        if repeated:  # which of two Hosts or Origins would we check? Neither: refuse (was a 500 and a traceback)
            return self.refused(400, f"more than one {repeated} header", client, "bad_request")
        if not self.hosts.allows(headers.get("Host")):
            return self.refused(421, "host not allowed (allowed_hosts)", client, "host")
        if method != "GET":
            return text(405, "method not allowed", Allow="GET")
        url = urlsplit(target)
        query = parse_qs(url.query[:MAX_QUERY_CHARS])
        token = (query.get("token") or [None])[0]
        if url.path == WS_PATH:
            return self._admit(headers, token, addr, client)
        if url.path == "/healthz":
            return json_reply(200, self._stats())
        if url.path == "/whoami":
            return self._whoami(headers, token, addr, client)
        if url.path in ("/site", FLOOR_PLAN_PATH):
            return self._site(url.path, headers, token, addr, client)
        if url.path == EXPORT_PATH or url.path.startswith(EXPORT_PATH + "/"):
            return self._export(url.path, query, headers, token, addr, client)
        found = self.static.get(url.path)
        if found is None:
            return text(404, "not found")
        return HttpReply(200, found.body, found.content_type, {"X-Content-Type-Options": "nosniff"})

    def refused(self, status: int, message: str, client: str, kind: str, **headers: str) -> HttpReply:
        self._refuse(kind)
        self._log(f"refused request from {client}: {message}")
        return text(status, message, **headers)

    # ------------------------------------------------------------------ logins
    def _login(
        self, headers: Mapping[str, str], token: str | None, addr: str, client: str
    ) -> Principal | HttpReply | None:
        """The principal of the request's credentials, None without any, or the refusal to send."""
        try:
            creds = credentials_from_request(headers.get("Authorization"), token)
        except AuthError:
            self.logins.failed(addr)
            return self.refused(401, "authentication failed", client, "auth")
        if not creds:
            return None
        user = creds.partition(":")[0]
        wait = self.logins.retry_after(addr, user)
        if wait > 0:
            return self.refused(429, f"too many failed logins; retry in {wait:.0f} s", client, "auth_blocked",
                                **{"Retry-After": str(max(1, round(wait)))})  # fmt: skip
        try:
            principal = self.access.authenticate_token(creds)
        except AuthBusyError:
            return self.refused(503, "too many logins at once; retry", client, "auth_busy", **{"Retry-After": "1"})
        except AuthError as exc:
            self.logins.failed(addr, user)
            self.auditor.record(robot="", session="", user=exc.user, role="", client=client, op="connect",
                                target=WS_PATH, allowed=False, reason=exc.reason)  # fmt: skip
            return self.refused(401, "authentication failed", client, "auth")
        self.logins.succeeded(addr, principal.user)
        return principal

    def _admit(self, headers: Mapping[str, str], token: str | None, addr: str, client: str) -> HttpReply | Admitted:
        if not self.origins.check(headers.get("Origin"), headers.get("Host")):
            return self.refused(403, "origin not allowed", client, "origin")
        if not self._client_slots():
            return self.refused(503, "too many clients", client, "capacity")
        wait = self.logins.retry_after(addr)
        if wait > 0:
            return self.refused(429, f"too many failed logins; retry in {wait:.0f} s", client, "auth_blocked",
                                **{"Retry-After": str(max(1, round(wait)))})  # fmt: skip
        principal = self._login(headers, token, addr, client)
        if isinstance(principal, HttpReply):
            return principal
        return Admitted(principal or self.access.anonymous, client, addr)

    def _site(self, path: str, headers: Mapping[str, str], token: str | None, addr: str, client: str) -> HttpReply:
        """The site map for anyone /whoami would answer 200 (a floor plan is not for anonymous strangers)."""
        principal = self._login(headers, token, addr, client)
        if isinstance(principal, HttpReply):
            return principal
        if (principal or self.access.anonymous) is None:
            return json_reply(401, {"login_required": True})
        plan = self.site_map.floor_plan
        if path == "/site":
            return json_reply(200, self.site_map.to_json())
        if plan is None:
            return text(404, "no floor plan (site_map_file)")
        return HttpReply(200, plan.image, plan.content_type,
                         {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=300"})  # fmt: skip

    def _export(self, path: str, query: dict[str, list[str]], headers: Mapping[str, str], token: str | None,
                addr: str, client: str) -> HttpReply:  # fmt: skip
        """The alert export routes (fleet mode only) for a logged-in user whose role may export."""
        if self.exports is None:
            return text(404, "alert exports are served by the control server's agent (fleet mode)")
        principal = self._login(headers, token, addr, client)
        if isinstance(principal, HttpReply):
            return principal
        principal = principal or self.access.anonymous
        if principal is None:
            return json_reply(401, {"login_required": True})
        return self.exports.handle(path, query, principal, client)

    def _whoami(self, headers: Mapping[str, str], token: str | None, addr: str, client: str) -> HttpReply:
        """Lets a page learn its role before it draws controls; 401 with ``login_required`` when there are
        no credentials and no anonymous role. Never echoes a secret."""
        principal = self._login(headers, token, addr, client)
        if isinstance(principal, HttpReply):
            return principal
        principal = principal or self.access.anonymous
        body: dict[str, Any] = {"mode": self.mode.value, "robot_id": self.robot_id}
        if principal is None:
            body.update(login_required=True)
            return json_reply(401, body)
        rules = {action: list(patterns) for action, patterns in principal.role.rules.items()}
        body.update(user=principal.user, role=principal.role.name, rules=rules)
        if self.mode is Mode.FLEET:
            body["fleet"] = fleet_permissions(principal.role)
        return json_reply(200, body)
