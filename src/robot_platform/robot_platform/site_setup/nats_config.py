"""Render the secured NATS configs of a fleet: one hub (control server) and one server per robot.

Topology: every robot runs its own nats-server (the bridge and the other nodes always publish locally)
and links to the hub as a *leaf node*, so local traffic keeps flowing while the link is down and the
robot dials out (robots need no open port). Each robot authenticates on the hub with its own user; the
user's permissions are what crosses the leaf link: it may publish only ``robots.<id>.>`` (exported to
the hub) and receives only ``robots.<id>.cmd.>`` (imported into the robot). A robot therefore cannot
impersonate another one, and a command for r2 never reaches r1's server. The operator side uses the
``control`` user (unrestricted); with ``--service-users`` the console's ws_agent (user ``console``),
fleet_registry (user ``fleet_registry``) and jobs_service (user ``jobs``) get users limited to what they
do (:func:`service_user_entry`).

Passwords are generated (``secrets.token_urlsafe``) and written only into the rendered files (mode
0600); they are never logged. Usage::

    python -m robot_platform.site_setup.nats_config --robots r1,r2 --out /etc/robot_platform/nats
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from robot_platform.messaging.inbox import inbox_subjects, robot_reply_subjects
from robot_platform.messaging.subjects import check_robot_id

PASSWORD_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")  # nothing that needs quoting in a NATS config
# How long the hub waits for a robot's leaf CONNECT. nats-server's default (2 s, 1 s before TLS) was too
# short when a hundred robots (re)connect at once to a busy hub (bench/fleet_scale.py): links timed
# out, the robots redialled every second and each new link cost the hub its setup again (interest,
# JetStream domain, the sources of FLEET_EVENTS/FLEET_LOGS), so the storm fed itself.
LEAF_AUTH_TIMEOUT_S = 10
# A robot's server pings the hub every 10 s and gives up after 6 unanswered pings (a minute). With
# nats-server's defaults (2.15.1) the robots declared a hub that was busy with a reconnect storm stale
# within seconds and redialled: 100 robots made ~2700 leaf connections in 30 s; with these, 211 (each robot
# at most one redial). Local traffic never depends on the link, so a slower verdict costs nothing there.
LEAF_PING_INTERVAL = '"10s"'
LEAF_PING_MAX = 6


@dataclass(frozen=True)
class Endpoint:
    host: str = "127.0.0.1"
    port: int = 4222
    monitor_port: int = 0  # 0 = no monitoring endpoint


@dataclass
class Fleet:
    """Robot ids with their passwords, plus the control user's password."""

    robots: dict[str, str] = field(default_factory=dict)
    control_password: str = ""

    @classmethod
    def generate(cls, robot_ids: list[str]) -> Fleet:
        return cls({check_robot_id(r): secrets.token_urlsafe(24) for r in robot_ids}, secrets.token_urlsafe(24))

    def check(self) -> None:
        for robot_id, password in self.robots.items():
            check_robot_id(robot_id)
            if not PASSWORD_RE.fullmatch(password):
                raise ValueError(f"password of {robot_id} must be 16-128 of [A-Za-z0-9_-]")
        if not PASSWORD_RE.fullmatch(self.control_password):
            raise ValueError("control password must be 16-128 of [A-Za-z0-9_-]")


def robot_permissions(robot_id: str) -> str:
    """Permissions of a robot's user on the hub (what may cross its leaf link, each way).

    Besides its own subjects, the leaf link carries the hub's JetStream sourcing of the robot's event
    stream: API requests into the robot's domain (``$JS.<id>.API.>``), their replies (``$JSC.R.>``),
    the sourced messages (``$JS.S.>``, random deliver subjects) and flow control (``$JS.FC.>``).
    ``robots.<id>.ops.>`` carries the allowlisted remote-action requests served by robot_agent (ops/);
    ``robots.<id>.srv.>`` the service requests answered by nats_bridge (only allowlisted services are
    called); ``robots.<id>.frames.*.lease`` the viewers' lease requests to frame_publisher (never the
    frames themselves: those only flow from the robot to the hub).

    Reply inboxes (:mod:`.inbox`): the robot receives replies only in its own inbox ``_INBOX.<id>.>``
    (its nodes use that prefix) and answers only into its own slot of the requesters' inboxes,
    ``_INBOX.*.~<id>.>``: it can neither read the console's replies nor forge a reply to a request that was
    not sent to it.
    """
    publish = [f"robots.{robot_id}.>", robot_reply_subjects(robot_id), "$JSC.R.>", "$JS.S.>", "$JS.FC.>"]
    subscribe = [
        f"robots.{robot_id}.cmd.>", f"robots.{robot_id}.ops.>", f"robots.{robot_id}.srv.>",
        f"robots.{robot_id}.frames.*.lease", inbox_subjects(robot_id), f"$JS.{robot_id}.API.>", "$JS.FC.>",
    ]  # fmt: skip
    return f"{{ publish: {{ allow: {_list(publish)} }}, subscribe: {{ allow: {_list(subscribe)} }} }}"


# ws_agent in fleet mode (the operator console): reads every robot's subjects and the fleet's events,
# sends the commands and service calls its users' roles allow (ws/access.py checks each one), and calls
# the fleet services (jobs API, registry list, log query). It never answers requests and reads only its
# own reply inbox (_INBOX.console.>, see inbox.py). Audit events go to audit.<robot>.
CONSOLE_PUBLISH = (
    "robots.*.cmd.>", "robots.*.srv.>", "robots.*.frames.*.lease", "audit.>",
    "jobs.create", "jobs.get", "jobs.list", "jobs.cancel", "fleet.registry.list", "fleet.logs.query",
    "fleet.alerts.query",
)  # fmt: skip
CONSOLE_SUBSCRIBE = (
    "robots.*.ros.>", "robots.*.alerts", "robots.*.health", "robots.*.health.>", "robots.*.presence",
    "robots.*.frames.*", "robots.*.deploy.>", "robots.*.logs.>", "jobs.events", "fleet.registry.events",
    inbox_subjects("console"),
)  # fmt: skip
# fleet_registry (ops/registry_service.py): folds presence into its KV bucket, keeps the FLEET_LOGS
# stream, serves fleet.registry.list / fleet.logs.query (replies go to the requester's _INBOX) and
# publishes fleet.registry.events. Its JetStream API access is limited to its two streams.
_REGISTRY_JS = [
    f"$JS.API.STREAM.{op}.{stream}" for stream in ("KV_FLEET_REGISTRY", "FLEET_LOGS")
    for op in ("CREATE", "UPDATE", "INFO")
] + [
    "$JS.API.INFO", "$JS.API.STREAM.MSG.GET.KV_FLEET_REGISTRY", "$JS.API.DIRECT.GET.KV_FLEET_REGISTRY.>",
    "$JS.API.CONSUMER.*.KV_FLEET_REGISTRY", "$JS.API.CONSUMER.*.KV_FLEET_REGISTRY.>",
    "$JS.API.CONSUMER.*.FLEET_LOGS", "$JS.API.CONSUMER.*.FLEET_LOGS.>", "$JS.API.CONSUMER.MSG.NEXT.FLEET_LOGS.>",
    # fleet.alerts.query reads the alert history from FLEET_EVENTS (read-only: consumers, no stream ops)
    "$JS.API.CONSUMER.*.FLEET_EVENTS", "$JS.API.CONSUMER.*.FLEET_EVENTS.>",
    "$JS.API.CONSUMER.MSG.NEXT.FLEET_EVENTS.>",
    "$KV.FLEET_REGISTRY.>", "$JS.FC.>",
]  # fmt: skip
REGISTRY_PUBLISH = (*_REGISTRY_JS, "fleet.registry.events", "_INBOX.>")
REGISTRY_SUBSCRIBE = (
    "robots.*.presence", "fleet.registry.list", "fleet.logs.query", "fleet.alerts.query",
    inbox_subjects("fleet_registry"),
)  # fmt: skip
SERVICE_USERS = ("console", "fleet_registry", "jobs")  # written by --service-users
# jobs: jobs_service's console API (jobs/nats_api.py): answers jobs.{create,get,list,cancel}, publishes
# jobs.events (its nats_user / nats_password_file parameters).
JOBS_PUBLISH = ("jobs.events", "_INBOX.>")
JOBS_SUBSCRIBE = ("jobs.create", "jobs.get", "jobs.list", "jobs.cancel")


def permissions(publish: Sequence[str], subscribe: Sequence[str]) -> str:
    """A permissions block in hub config syntax."""
    return f"{{ publish: {{ allow: {_list(list(publish))} }}, subscribe: {{ allow: {_list(list(subscribe))} }} }}"


def service_user_entry(user: str, password: str) -> str:
    """Hub user entry (for ``render_hub(extra_users=...)``) of a control-side service with least privilege:
    ``console`` (ws_agent, fleet mode), ``fleet_registry`` or ``jobs``. ``control`` stays unrestricted."""
    if not PASSWORD_RE.fullmatch(password):
        raise ValueError(f"password of {user} must be 16-128 of [A-Za-z0-9_-]")
    if user == "console":
        perms = permissions(CONSOLE_PUBLISH, CONSOLE_SUBSCRIBE)
    elif user == "fleet_registry":
        perms = permissions(REGISTRY_PUBLISH, REGISTRY_SUBSCRIBE)
    elif user == "jobs":
        perms = permissions(JOBS_PUBLISH, JOBS_SUBSCRIBE)
    else:
        raise ValueError(f"unknown service user {user!r}; use one of {', '.join(SERVICE_USERS)}")
    return f'{{ user: {user}, password: "{password}", permissions: {perms} }}'


def _list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def render_hub(
    fleet: Fleet,
    client: Endpoint,
    leaf_port: int,
    store_dir: str,
    max_payload: str = "8MB",
    extra_users: Sequence[str] = (),
) -> str:
    """nats-server config of the control server's hub.

    ``extra_users`` are further, already rendered user entries of account FLEET (e.g. the role-limited
    operator users of :mod:`robot_platform.ops.operator_roles`).
    """
    fleet.check()
    # Passwords are quoted: an unquoted value starting with '-' or a digit parses as a number.
    users = [f'      {{ user: control, password: "{fleet.control_password}" }}']
    users += [f"      {entry}" for entry in extra_users]
    for robot_id, password in sorted(fleet.robots.items()):
        users.append(
            f'      {{ user: {robot_id}, password: "{password}", permissions: {robot_permissions(robot_id)} }}'
        )
    monitor = f"http: {client.host}:{client.monitor_port}\n" if client.monitor_port else ""
    return (
        "# Generated by robot_platform.site_setup.nats_config: the hub of the control server.\n"
        "server_name: control_hub\n"
        f"listen: {client.host}:{client.port}\n{monitor}"
        f"max_payload: {max_payload}\n"
        f'jetstream {{ domain: hub, store_dir: "{store_dir}" }}\n'
        "accounts {\n  FLEET {\n    jetstream: enabled\n    users = [\n" + "\n".join(users) + "\n    ]\n  }\n}\n"
        # no_advertise: robots keep dialling the configured URL (a proxy or NAT address), not the hub's own.
        f"leafnodes {{ listen: {client.host}:{leaf_port}, no_advertise: true,"
        f" authorization {{ timeout: {LEAF_AUTH_TIMEOUT_S} }} }}\n"
    )


def render_robot(
    robot_id: str, password: str, client: Endpoint, hub_leaf: str, store_dir: str, max_payload: str = "8MB"
) -> str:
    """nats-server config of one robot: local clients only, leaf link to the hub with the robot's user."""
    check_robot_id(robot_id)
    if not PASSWORD_RE.fullmatch(password):
        raise ValueError(f"password of {robot_id} must be 16-128 of [A-Za-z0-9_-]")
    host, _, port = hub_leaf.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"hub leaf address must be host:port, got {hub_leaf!r}")
    monitor = f"http: {client.host}:{client.monitor_port}\n" if client.monitor_port else ""
    return (
        f"# Generated by robot_platform.site_setup.nats_config: the local server of robot {robot_id}.\n"
        f"server_name: {robot_id}\n"
        f"listen: {client.host}:{client.port}\n{monitor}"
        f"max_payload: {max_payload}\n"
        f'jetstream {{ domain: {robot_id}, store_dir: "{store_dir}" }}\n'
        f"ping_interval: {LEAF_PING_INTERVAL}\nping_max: {LEAF_PING_MAX}\n"
        "leafnodes {\n  reconnect: 1s\n"
        f'  remotes [ {{ url: "nats-leaf://{robot_id}:{password}@{hub_leaf}" }} ]\n}}\n'
    )


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only (the file holds passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Render secured NATS configs for a hub and its robots.")
    parser.add_argument("--robots", required=True, help="comma-separated robot ids, e.g. r1,r2")
    parser.add_argument("--out", required=True, type=Path, help="output directory (created, files mode 0600)")
    parser.add_argument("--hub-host", default="127.0.0.1")
    parser.add_argument("--hub-port", type=int, default=4222)
    parser.add_argument("--leaf-port", type=int, default=7422)
    parser.add_argument("--robot-port", type=int, default=4222, help="client port of each robot's server")
    parser.add_argument("--store-dir", default="/var/lib/robot_platform/nats")
    parser.add_argument("--service-users", action="store_true",
                        help="also users console (ws_agent), fleet_registry and jobs with least privilege")  # fmt: skip
    args = parser.parse_args(argv)
    fleet = Fleet.generate([r for r in args.robots.split(",") if r])
    args.out.mkdir(parents=True, exist_ok=True, mode=0o700)
    services = {u: secrets.token_urlsafe(24) for u in SERVICE_USERS} if args.service_users else {}
    extra = [service_user_entry(u, p) for u, p in services.items()]
    hub = render_hub(
        fleet, Endpoint(args.hub_host, args.hub_port), args.leaf_port, f"{args.store_dir}/hub", extra_users=extra
    )
    for user, password in services.items():
        write_private(args.out / f"{user}.password", password + "\n")
    write_private(args.out / "hub.conf", hub)
    for robot_id, password in fleet.robots.items():
        text = render_robot(
            robot_id, password, Endpoint("127.0.0.1", args.robot_port), f"{args.hub_host}:{args.leaf_port}",
            f"{args.store_dir}/{robot_id}",
        )  # fmt: skip
        write_private(args.out / f"{robot_id}.conf", text)
        write_private(args.out / f"{robot_id}.password", password + "\n")
    write_private(args.out / "control.password", fleet.control_password + "\n")


if __name__ == "__main__":
    main()
