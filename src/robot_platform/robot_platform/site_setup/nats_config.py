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

Clustered hub (``--cluster-hosts h1,h2,h3``, :class:`HubCluster`): the control server's NATS as three
nodes of one JetStream cluster (route block with its own route user, a server name per node). Every node
carries the same accounts, users and permissions as the single hub, so a client or robot may use any of
them; robots list every node's leaf address and re-link to a live one when theirs dies. Streams and KV
buckets of the control services are created with three replicas (:mod:`robot_platform.messaging.streams`).

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
NODE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
CLUSTER_NAME = "control_hub"  # the clustered hub's cluster name (the single hub's server_name)
ROUTE_USER = "route"  # the user the hub nodes' routes authenticate with (cluster block only)
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
    called); ``robots.<id>.health.ack|silence`` the operators' acknowledgements and silences (health
    node); ``robots.<id>.frames.*.lease`` the viewers' lease requests to frame_publisher (never the
    frames themselves: those only flow from the robot to the hub).

    Reply inboxes (:mod:`.inbox`): the robot receives replies only in its own inbox ``_INBOX.<id>.>``
    (its nodes use that prefix) and answers only into its own slot of the requesters' inboxes,
    ``_INBOX.*.~<id>.>``: it can neither read the console's replies nor forge a reply to a request that was
    not sent to it.
    """
    publish = [f"robots.{robot_id}.>", robot_reply_subjects(robot_id), "$JSC.R.>", "$JS.S.>", "$JS.FC.>"]
    subscribe = [
        f"robots.{robot_id}.cmd.>", f"robots.{robot_id}.ops.>", f"robots.{robot_id}.srv.>",
        f"robots.{robot_id}.health.ack", f"robots.{robot_id}.health.silence", f"robots.{robot_id}.frames.*.lease",
        inbox_subjects(robot_id), f"$JS.{robot_id}.API.>", "$JS.FC.>",
    ]  # fmt: skip
    return f"{{ publish: {{ allow: {_list(publish)} }}, subscribe: {{ allow: {_list(subscribe)} }} }}"


# ws_agent in fleet mode (the operator console): reads every robot's subjects and the fleet's events,
# sends the commands and service calls its users' roles allow (ws/access.py checks each one), and calls
# the fleet services (jobs API, registry list, log query). It never answers requests and reads only its
# own reply inbox (_INBOX.console.>, see inbox.py). Audit events go to audit.<robot> (kept in FLEET_AUDIT).
CONSOLE_PUBLISH = (
    "robots.*.cmd.>", "robots.*.srv.>", "robots.*.health.ack", "robots.*.health.silence",
    "robots.*.frames.*.lease", "audit.>", "jobs.create", "jobs.get", "jobs.list", "jobs.cancel", "jobs.catalogue",
    "fleet.registry.list", "fleet.logs.query", "fleet.alerts.query", "fleet.audit.query", "fleet.alerts.export",
)  # fmt: skip
CONSOLE_SUBSCRIBE = (  # robots.*.overview.>: the decimated copies a fleet overview reads (ws/overview.py)
    "robots.*.ros.>", "robots.*.overview.>", "robots.*.alerts", "robots.*.health", "robots.*.health.>",
    "robots.*.presence", "robots.*.frames.*", "robots.*.deploy.>", "robots.*.logs.>", "jobs.events",
    "fleet.registry.events", inbox_subjects("console"),
)  # fmt: skip
# fleet_registry (ops/registry_service.py): folds presence into its KV bucket, keeps the FLEET_LOGS
# and FLEET_AUDIT streams, serves fleet.registry.list / fleet.logs.query / fleet.alerts.query /
# fleet.audit.query (replies go to the requester's _INBOX) and publishes fleet.registry.events. Its
# JetStream API access is limited to its three streams (and read-only consumers on FLEET_EVENTS).
_REGISTRY_JS = [
    f"$JS.API.STREAM.{op}.{stream}" for stream in ("KV_FLEET_REGISTRY", "FLEET_LOGS", "FLEET_AUDIT")
    for op in ("CREATE", "UPDATE", "INFO")
] + [
    "$JS.API.INFO", "$JS.API.STREAM.MSG.GET.KV_FLEET_REGISTRY", "$JS.API.DIRECT.GET.KV_FLEET_REGISTRY.>",
    "$JS.API.CONSUMER.*.KV_FLEET_REGISTRY", "$JS.API.CONSUMER.*.KV_FLEET_REGISTRY.>",
    "$JS.API.CONSUMER.*.FLEET_LOGS", "$JS.API.CONSUMER.*.FLEET_LOGS.>", "$JS.API.CONSUMER.MSG.NEXT.FLEET_LOGS.>",
    # fleet.alerts.query reads the alert history from FLEET_EVENTS (read-only: consumers, no stream ops)
    "$JS.API.CONSUMER.*.FLEET_EVENTS", "$JS.API.CONSUMER.*.FLEET_EVENTS.>",
    "$JS.API.CONSUMER.MSG.NEXT.FLEET_EVENTS.>",
    "$JS.API.CONSUMER.*.FLEET_AUDIT", "$JS.API.CONSUMER.*.FLEET_AUDIT.>", "$JS.API.CONSUMER.MSG.NEXT.FLEET_AUDIT.>",
    "$KV.FLEET_REGISTRY.>", "$JS.FC.>",
]  # fmt: skip


def _kv_access(bucket: str, keys: str = ">") -> list[str]:
    """JetStream API subjects to create, read and write (``keys``) one KV bucket, nothing else.

    No ``STREAM.UPDATE``: buckets are created once and used as they are (streams.ensure_key_value), and
    CONTROL_LEASES is shared: with UPDATE, fleet_registry could change the bucket's subjects or seal it and
    so stop jobs_service from renewing its lease (and the other way round)."""
    stream = f"KV_{bucket}"
    return [
        *(f"$JS.API.STREAM.{op}.{stream}" for op in ("CREATE", "INFO")),
        f"$JS.API.STREAM.MSG.GET.{stream}", f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.CONSUMER.*.{stream}", f"$JS.API.CONSUMER.*.{stream}.>", f"$KV.{bucket}.{keys}",
    ]  # fmt: skip


# Active/standby (messaging/lease.py, ``ha``): each service reads and writes only its own lease key;
# jobs_service also replicates its state into JOBS_STATE (jobs/ha.py).
LEASE_BUCKET, JOBS_STATE_BUCKET = "CONTROL_LEASES", "JOBS_STATE"
# fleet.alerts.export also asks robots for their capture buffer (robots.*.ops.list_graph|capture, replies
# into its own inbox's robot slots).
REGISTRY_PUBLISH = (*_REGISTRY_JS, *_kv_access(LEASE_BUCKET, "fleet_registry"), "fleet.registry.events", "_INBOX.>",
                    "robots.*.ops.list_graph", "robots.*.ops.capture")  # fmt: skip
REGISTRY_SUBSCRIBE = (
    "robots.*.presence", "fleet.registry.list", "fleet.logs.query", "fleet.alerts.query", "fleet.audit.query",
    "fleet.alerts.export", inbox_subjects("fleet_registry"),
)  # fmt: skip
SERVICE_USERS = ("console", "fleet_registry", "jobs")  # written by --service-users
# jobs: jobs_service's console API (jobs/nats_api.py): answers jobs.{create,get,list,cancel,catalogue}, publishes
# jobs.events (its nats_user / nats_password_file parameters).
JOBS_PUBLISH = (
    "jobs.events", "_INBOX.>", "$JS.API.INFO", "$JS.FC.>", *_kv_access(LEASE_BUCKET, "jobs_service"),
    *_kv_access(JOBS_STATE_BUCKET),
)  # fmt: skip
JOBS_SUBSCRIBE = ("jobs.create", "jobs.get", "jobs.list", "jobs.cancel", "jobs.catalogue", inbox_subjects("jobs"))


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


@dataclass(frozen=True)
class HubNode:
    """One node of a clustered hub: its name (``server_name``), client endpoint, leaf and route ports."""

    name: str
    client: Endpoint
    leaf_port: int
    cluster_port: int


@dataclass(frozen=True)
class HubCluster:
    """The nodes of a clustered hub and the password of the route user they authenticate each other with."""

    nodes: tuple[HubNode, ...]
    route_password: str
    name: str = CLUSTER_NAME

    def check(self) -> None:
        if len(self.nodes) < 3:
            raise ValueError("a JetStream cluster needs at least 3 nodes (a quorum survives losing one)")
        if len({n.name for n in self.nodes}) != len(self.nodes):
            raise ValueError("hub node names must be unique")
        for node in self.nodes:
            if not NODE_NAME_RE.fullmatch(node.name):
                raise ValueError(f"hub node name {node.name!r} must be 1-32 of [A-Za-z0-9_-]")
        if not PASSWORD_RE.fullmatch(self.route_password):
            raise ValueError("route password must be 16-128 of [A-Za-z0-9_-]")

    def node(self, name: str) -> HubNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def leaf_addresses(self) -> list[str]:
        """``host:port`` of every node's leaf listener (what each robot's remote lists)."""
        return [f"{n.client.host}:{n.leaf_port}" for n in self.nodes]

    def client_urls(self) -> str:
        """Every node's client URL, comma-separated (the control services' ``nats_url``)."""
        return ",".join(f"nats://{n.client.host}:{n.client.port}" for n in self.nodes)

    @classmethod
    def local(cls, client_ports: Sequence[int], leaf_ports: Sequence[int], cluster_ports: Sequence[int],
              monitor_ports: Sequence[int] = ()) -> HubCluster:  # fmt: skip
        """Nodes ``hub-0``.. on 127.0.0.1 (tests, the demo's ``--ha``), with a generated route password."""
        monitors = list(monitor_ports) or [0] * len(client_ports)
        nodes = tuple(
            HubNode(f"hub-{i}", Endpoint(port=c, monitor_port=m), leaf, route)
            for i, (c, leaf, route, m) in enumerate(zip(client_ports, leaf_ports, cluster_ports, monitors, strict=True))
        )
        return cls(nodes, secrets.token_urlsafe(24))


def render_cluster_block(cluster: HubCluster, me: HubNode) -> str:
    """The ``cluster`` block of node ``me``: listen on its route port, routes to every other node."""
    routes = [
        f"nats-route://{ROUTE_USER}:{cluster.route_password}@{n.client.host}:{n.cluster_port}"
        for n in cluster.nodes
        if n.name != me.name
    ]
    return (
        f"cluster {{\n  name: {cluster.name}\n  listen: {me.client.host}:{me.cluster_port}\n"
        f'  authorization {{ user: {ROUTE_USER}, password: "{cluster.route_password}" }}\n'
        f"  routes: {_list(routes)}\n}}\n"
    )


def render_hub(
    fleet: Fleet,
    client: Endpoint,
    leaf_port: int,
    store_dir: str,
    max_payload: str = "8MB",
    extra_users: Sequence[str] = (),
    cluster: HubCluster | None = None,
    node: str = "",
) -> str:
    """nats-server config of the control server's hub, or of node ``node`` of a clustered hub.

    ``extra_users`` are further, already rendered user entries of account FLEET (e.g. the role-limited
    operator users of :mod:`robot_platform.ops.operator_roles`). With ``cluster``, ``client`` and
    ``leaf_port`` are ignored (the node's own are used): every node gets the same accounts and users.
    """
    fleet.check()
    # Passwords are quoted: an unquoted value starting with '-' or a digit parses as a number.
    users = [f'      {{ user: control, password: "{fleet.control_password}" }}']
    users += [f"      {entry}" for entry in extra_users]
    for robot_id, password in sorted(fleet.robots.items()):
        users.append(
            f'      {{ user: {robot_id}, password: "{password}", permissions: {robot_permissions(robot_id)} }}'
        )
    server_name, cluster_block = "control_hub", ""
    if cluster is not None:
        cluster.check()
        me = cluster.node(node)
        client, leaf_port, server_name = me.client, me.leaf_port, me.name
        cluster_block = render_cluster_block(cluster, me)
    monitor = f"http: {client.host}:{client.monitor_port}\n" if client.monitor_port else ""
    return (
        "# Generated by robot_platform.site_setup.nats_config: the hub of the control server.\n"
        f"server_name: {server_name}\n"
        f"listen: {client.host}:{client.port}\n{monitor}"
        f"max_payload: {max_payload}\n"
        f'jetstream {{ domain: hub, store_dir: "{store_dir}" }}\n'
        "accounts {\n  FLEET {\n    jetstream: enabled\n    users = [\n" + "\n".join(users) + "\n    ]\n  }\n}\n"
        # no_advertise: robots keep dialling the configured URL (a proxy or NAT address), not the hub's own.
        f"leafnodes {{ listen: {client.host}:{leaf_port}, no_advertise: true,"
        f" authorization {{ timeout: {LEAF_AUTH_TIMEOUT_S} }} }}\n" + cluster_block
    )


def render_robot(
    robot_id: str,
    password: str,
    client: Endpoint,
    hub_leaf: str | Sequence[str],
    store_dir: str,
    max_payload: str = "8MB",
) -> str:
    """nats-server config of one robot: local clients only, leaf link to the hub with the robot's user.

    ``hub_leaf``: ``host:port`` of the hub's leaf listener, or of every node of a clustered hub (a list or
    comma-separated): the remote lists them all and re-links to another one when its node dies."""
    check_robot_id(robot_id)
    if not PASSWORD_RE.fullmatch(password):
        raise ValueError(f"password of {robot_id} must be 16-128 of [A-Za-z0-9_-]")
    addresses = hub_leaf.split(",") if isinstance(hub_leaf, str) else list(hub_leaf)
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"hub leaf address must be host:port, got {address!r}")
    urls = [f"nats-leaf://{robot_id}:{password}@{address}" for address in addresses]
    remote = f'url: "{urls[0]}"' if len(urls) == 1 else f"urls: {_list(urls)}"
    monitor = f"http: {client.host}:{client.monitor_port}\n" if client.monitor_port else ""
    return (
        f"# Generated by robot_platform.site_setup.nats_config: the local server of robot {robot_id}.\n"
        f"server_name: {robot_id}\n"
        f"listen: {client.host}:{client.port}\n{monitor}"
        f"max_payload: {max_payload}\n"
        f'jetstream {{ domain: {robot_id}, store_dir: "{store_dir}" }}\n'
        f"ping_interval: {LEAF_PING_INTERVAL}\nping_max: {LEAF_PING_MAX}\n"
        "leafnodes {\n  reconnect: 1s\n"
        f"  remotes [ {{ {remote} }} ]\n}}\n"
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
    parser.add_argument("--cluster-hosts", default="",
                        help="clustered hub: comma-separated hosts of its 3+ nodes (hub-0.conf...); nodes on one "
                        "host get ports offset by their index")  # fmt: skip
    parser.add_argument("--cluster-port", type=int, default=6222, help="route port of each hub node")
    args = parser.parse_args(argv)
    fleet = Fleet.generate([r for r in args.robots.split(",") if r])
    args.out.mkdir(parents=True, exist_ok=True, mode=0o700)
    services = {u: secrets.token_urlsafe(24) for u in SERVICE_USERS} if args.service_users else {}
    extra = [service_user_entry(u, p) for u, p in services.items()]
    cluster = cluster_from_hosts(args.cluster_hosts, args.hub_port, args.leaf_port, args.cluster_port)
    if cluster is None:
        hub = Endpoint(args.hub_host, args.hub_port)
        text = render_hub(fleet, hub, args.leaf_port, f"{args.store_dir}/hub", extra_users=extra)
        write_private(args.out / "hub.conf", text)
        leafs = [f"{args.hub_host}:{args.leaf_port}"]
    else:
        for node in cluster.nodes:
            text = render_hub(fleet, node.client, node.leaf_port, f"{args.store_dir}/{node.name}", extra_users=extra,
                              cluster=cluster, node=node.name)  # fmt: skip
            write_private(args.out / f"{node.name}.conf", text)
        leafs = cluster.leaf_addresses()
        write_private(args.out / "hub-urls", cluster.client_urls() + "\n")
    for user, password in services.items():
        write_private(args.out / f"{user}.password", password + "\n")
    for robot_id, password in fleet.robots.items():
        text = render_robot(
            robot_id, password, Endpoint("127.0.0.1", args.robot_port), leafs, f"{args.store_dir}/{robot_id}",
        )  # fmt: skip
        write_private(args.out / f"{robot_id}.conf", text)
        write_private(args.out / f"{robot_id}.password", password + "\n")
    write_private(args.out / "control.password", fleet.control_password + "\n")


def cluster_from_hosts(hosts: str, client_port: int, leaf_port: int, cluster_port: int) -> HubCluster | None:
    """The clustered hub of ``--cluster-hosts`` (None when empty): node i is ``hub-<i>`` on the i-th host;
    nodes that share a host get every port offset by their index so they can run side by side."""
    names = [h.strip() for h in hosts.split(",") if h.strip()]
    if not names:
        return None
    shared = len(set(names)) < len(names)
    nodes = tuple(
        HubNode(f"hub-{i}", Endpoint(host, client_port + i * shared), leaf_port + i * shared, cluster_port + i * shared)
        for i, host in enumerate(names)
    )
    cluster = HubCluster(nodes, secrets.token_urlsafe(24))
    cluster.check()
    return cluster


if __name__ == "__main__":
    main()
