"""Remote operations with real parts: hub + robot nats-servers (generated secured configs), robot_agent
and fleet_registry processes, real sshd instances as bastion and robot, autossh.

test_registry_logs_and_actions:
  r1 and r2 register and appear in `robot-platform robots` (read with a viewer operator's NATS user);
  an unknown robot (wrong leaf password) is refused by the hub and never appears; a warning logged on r1
  is found by `robot-platform logs r1 --level warn --grep`, and so is one logged while r1's link to the
  hub was cut (a TCP proxy in the leaf path is closed); r2's agent stops and r2 is marked offline after
  the timeout while r1 stays online; remote actions: list_graph with rates, a capture of the last seconds
  of /chatter saved to an MCAP file and decoded, a role that does not grant capture refused by the
  robot, a viewer's NATS user refused by the hub's permissions, restart_app without deploy_service
  answered "unavailable".
test_ssh_through_bastion:
  a bastion sshd and a "robot" sshd on loopback (own configs, host keys, authorized_keys); robot_agent
  keeps the reverse tunnel with autossh; `robot-platform ssh r1 -- echo ...` runs on the robot through
  ProxyJump; the access is logged (CLI log and bastion sshd log); an unknown robot key is refused, r1's
  key cannot take another port, and the operator key gets no shell on the bastion.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from std_msgs.msg import String

from helpers import REPO, DomainReservation, RosNodeThread, free_port, ros_env, wait_for, wait_port
from robot_platform.ops.operator_roles import Roles, operator_user_entry
from robot_platform.site_setup.nats_config import Endpoint, Fleet, render_hub, render_robot, write_private

SRC = str(REPO / "src" / "robot_platform")
WAIT_S = 30.0
OFFLINE_AFTER_S = 3.0
ROLES_YAML = """
roles:
  viewer: [list_graph]
  operator: [list_graph, capture, restart_app]
users:
  alice: operator
  bob: viewer
"""
AGENT_PARAMS = """
/**/robot_agent:
  ros__parameters:
    robot_id: {robot}
    site: test-site
    nats_url: {url}
    announce_period_s: 0.5
    capabilities: [sim, capture]
    report_packages: [nats-py, msgpack]
    roles_file: {roles}
    capture_topics: [/chatter]
    capture_window_s: 10.0
"""


def py_env(domain: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    return ros_env(domain, {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), **(extra or {})})


def cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "robot_platform.cli.main", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)


class LinkCutter:
    """TCP proxy in the leaf path: ``cut()`` drops every connection and refuses new ones until ``restore()``."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.is_cut = False
        self.stopped = False
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.is_cut:
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=2)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            server.settimeout(None)  # an idle leaf link must not time out in the proxy
            with self.lock:
                self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.is_cut = True
        with self.lock:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.sockets.clear()

    def restore(self) -> None:
        self.is_cut = False

    def close(self) -> None:
        self.stopped = True
        self.cut()
        self.listener.close()
        self.thread.join(timeout=2)


class RobotApp(RosNodeThread):
    """A ROS 'application' on the robot's graph: publishes /chatter at 10 Hz, logs on demand."""

    def __init__(self, domain: int) -> None:
        super().__init__("ops_test_app", domain)
        self.pub = self.node.create_publisher(String, "/chatter", 10)
        self.count = 0
        self.node.create_timer(0.1, self._tick)
        self.start()

    def _tick(self) -> None:
        self.count += 1
        self.pub.publish(String(data=f"hello {self.count}"))


def snoop_on_replies(hub_url: str, spy: tuple[str, str], victim: tuple[str, str]) -> tuple[list[str], list[str]]:
    """``spy`` subscribes to every inbox and to the victim's while the victim calls a remote action.
    Returns (subjects the spy received, the hub's errors to the spy)."""
    import asyncio

    import nats

    from robot_platform.messaging.inbox import inbox_subjects
    from robot_platform.ops import client

    async def run() -> tuple[list[str], list[str]]:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        received: list[str] = []

        async def on_message(msg: Any) -> None:
            received.append(msg.subject)

        spy_nc = await nats.connect(hub_url, user=spy[0], password=spy[1], error_cb=on_error,
                                    allow_reconnect=False)  # fmt: skip
        victim_nc = await client.connect(hub_url, *victim)
        try:
            for pattern in ("_INBOX.>", inbox_subjects(victim[0])):
                await spy_nc.subscribe(pattern, cb=on_message)
            await spy_nc.flush()
            graph = await client.call_action(victim_nc, "r1", "list_graph", victim[0], "operator", {}, 10.0)
            assert "/robot_agent" in graph["nodes"]
            await asyncio.sleep(0.5)
        finally:
            await victim_nc.close()
            await spy_nc.close()
        return received, errors

    return asyncio.run(run())


def leafz(monitor_port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/leafz", timeout=2) as response:
        body = json.loads(response.read())
    return sorted(leaf.get("name", "") for leaf in body.get("leafs") or [])


def robots(user_args: list[str]) -> dict[str, dict[str, Any]]:
    result = cli("robots", "--json", "--offline-after", str(OFFLINE_AFTER_S), *user_args)
    assert result.returncode == 0, result.stderr
    return {r["robot_id"]: r for r in json.loads(result.stdout)}


def find_log(user_args: list[str], robot: str, text: str) -> bool:
    result = cli("logs", robot, "--level", "warn", "--grep", text, *user_args)
    return result.returncode == 0 and text in result.stdout


def test_registry_logs_and_actions(procs: Any, tmp_path: Path) -> None:
    exe = shutil.which("nats-server")
    assert exe
    hub_port, hub_monitor, leaf_port = free_port(), free_port(), free_port()
    fleet = Fleet.generate(["r1", "r2"])
    roles_file = tmp_path / "roles.yaml"
    roles_file.write_text(ROLES_YAML)
    roles = Roles.load(roles_file)
    operators = {"alice": uuid.uuid4().hex, "bob": uuid.uuid4().hex}
    extra = [operator_user_entry(u, p, roles) for u, p in operators.items()]
    hub_conf = tmp_path / "hub.conf"
    text = render_hub(fleet, Endpoint(port=hub_port, monitor_port=hub_monitor), leaf_port, str(tmp_path / "js-hub"),
                      extra_users=extra)  # fmt: skip
    # The hub must not advertise its leaf address, or r1 would reconnect around the link cutter directly.
    # The link passes through a TCP proxy: the hub must not advertise its own leaf address.
    assert f"leafnodes {{ listen: 127.0.0.1:{leaf_port}, no_advertise: true," in text
    write_private(hub_conf, text)
    procs.start("hub", [exe, "-c", str(hub_conf)])
    wait_port(hub_port)
    cutter = LinkCutter(leaf_port)
    ports = {"r1": free_port(), "r2": free_port(), "r3": free_port()}
    passwords = {**fleet.robots, "r3": "unknown-robot-password-123"}  # r3: credentials the hub does not know
    for robot, port in ports.items():
        leaf = f"127.0.0.1:{cutter.port if robot == 'r1' else leaf_port}"
        conf = tmp_path / f"{robot}.conf"
        write_private(
            conf, render_robot(robot, passwords[robot], Endpoint(port=port), leaf, str(tmp_path / f"js-{robot}"))
        )
        procs.start(f"nats-{robot}", [exe, "-c", str(conf)])
        wait_port(port)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    pw = {}
    for user, password in {**operators, "control": fleet.control_password}.items():
        pw[user] = secrets_dir / f"{user}.password"
        write_private(pw[user], password)
    hub_url = f"nats://127.0.0.1:{hub_port}"
    viewer = ["--url", hub_url, "--user", "bob", "--password-file", str(pw["bob"])]
    operator = ["--url", hub_url, "--user", "alice", "--password-file", str(pw["alice"])]

    domains = [DomainReservation() for _ in range(3)]
    app = None
    try:
        registry_params = tmp_path / "registry.yaml"
        registry_params.write_text(
            "/**/fleet_registry:\n  ros__parameters:\n"
            f"    nats_url: {hub_url}\n    nats_user: control\n    nats_password_file: {pw['control']}\n"
            f"    offline_after_s: {OFFLINE_AFTER_S}\n    sweep_period_s: 0.5\n"
        )
        argv = [sys.executable, "-m", "robot_platform.ops.registry_node", "--ros-args", "--params-file"]
        procs.start("fleet_registry", [*argv, str(registry_params)], env=py_env(domains[2].domain_id))
        agents = {}
        for robot, domain in (("r1", domains[0]), ("r2", domains[1])):
            params = tmp_path / f"agent-{robot}.yaml"
            params.write_text(
                AGENT_PARAMS.format(robot=robot, url=f"nats://127.0.0.1:{ports[robot]}", roles=roles_file)
            )
            argv = [sys.executable, "-m", "robot_platform.ops.node", "--ros-args", "--params-file", str(params)]
            agents[robot] = procs.start(f"agent-{robot}", argv, env=py_env(domain.domain_id))
        app = RobotApp(domains[0].domain_id)

        # The unknown robot announces itself on its own server like any agent would; the hub refused its leaf.
        import asyncio

        import nats

        async def intruder_announces() -> None:
            nc = await nats.connect(f"nats://127.0.0.1:{ports['r3']}")
            for _ in range(5):
                await nc.publish("robots.r3.presence", json.dumps({"robot_id": "r3", "site": "rogue"}).encode())
                await asyncio.sleep(0.2)
            await nc.close()

        # 1. Registry: both robots appear, online, with what they announced.
        fleet_view = wait_for(
            lambda: (v := robots(viewer)) and {"r1", "r2"} <= set(v) and v, WAIT_S, "r1+r2 registered"
        )
        asyncio.run(intruder_announces())
        for robot in ("r1", "r2"):
            record = fleet_view[robot]
            assert record["status"] == "online"
            assert record["last"]["site"] == "test-site" and record["last"]["capabilities"] == ["sim", "capture"]
            assert record["last"]["packages"]["msgpack"] not in ("", "-")
        assert leafz(hub_monitor) == ["r1", "r2"], "the hub must accept exactly the known robots' leafs"
        assert "r3" not in robots(viewer)
        table = cli("robots", *viewer)
        assert table.returncode == 0 and "r1" in table.stdout and "online" in table.stdout

        # 2. Logs: a warning is found from the control side ...
        before = f"before-cut-{uuid.uuid4().hex[:8]}"
        app.node.get_logger().warning(f"battery low {before}")
        wait_for(lambda: find_log(viewer, "r1", before), WAIT_S, "warning found by robot-platform logs")
        # ... and so is one logged while r1's link to the hub is down.
        cutter.cut()
        wait_for(lambda: leafz(hub_monitor) == ["r2"], WAIT_S, "r1's leaf link down")
        during = f"during-cut-{uuid.uuid4().hex[:8]}"
        app.node.get_logger().warning(f"motor hot {during}")
        app.node.get_logger().info(f"info line {during}")  # below --level warn: must not be listed
        time.sleep(1.0)  # the record is stored on r1 meanwhile; the hub cannot have it
        assert not find_log(viewer, "r1", during)
        cutter.restore()
        wait_for(lambda: find_log(viewer, "r1", during), WAIT_S, "warning logged during the cut, after it")
        listed = cli("logs", "r1", "--level", "warn", "--grep", during, *viewer).stdout.strip().splitlines()
        assert len(listed) == 1 and "WARN" in listed[0] and "[ops_test_app]" in listed[0], listed
        assert find_log(viewer, "r1", before), "records from before the cut are still there"

        # 3. r2 stops and is marked offline after the timeout; r1 stays online.
        agents["r2"].send_signal(2)
        agents["r2"].wait(timeout=15)
        wait_for(lambda: robots(viewer)["r2"]["status"] == "offline", WAIT_S, "r2 marked offline")
        assert robots(viewer)["r1"]["status"] == "online"

        # 4. Safe remote actions.
        graph = json.loads(cli("ops", "call", "r1", "list_graph", "--as-user", "alice", "--role", "operator",
                               *operator).stdout)  # fmt: skip
        assert "/ops_test_app" in graph["nodes"] and "/robot_agent" in graph["nodes"]
        chatter = next(t for t in graph["topics"] if t["name"] == "/chatter")
        assert chatter["types"] == ["std_msgs/msg/String"] and 5.0 <= chatter["rate_hz"] <= 15.0, chatter
        out = tmp_path / "capture.mcap"
        result = cli("ops", "call", "r1", "capture", "--as-user", "alice", "--role", "operator", "--out", str(out),
                     "--args", json.dumps({"topics": ["/chatter"], "seconds": 2}), *operator)  # fmt: skip
        assert result.returncode == 0, result.stderr
        with out.open("rb") as f:
            captured = [(ch.topic, sc.name, msg) for sc, ch, _, msg in
                        make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages()]  # fmt: skip
        assert {(topic, schema) for topic, schema, _ in captured} == {("/chatter", "std_msgs/msg/String")}
        assert 10 <= len(captured) <= 40 and captured[0][2].data.startswith("hello "), captured[:3]
        refused = cli("ops", "call", "r1", "capture", "--as-user", "alice", "--role", "viewer",
                      "--args", json.dumps({"topics": ["/chatter"], "seconds": 1}), *operator)  # fmt: skip
        assert refused.returncode == 2 and "not_allowed" in refused.stderr, refused.stderr
        ok = cli("ops", "call", "r1", "list_graph", "--as-user", "bob", "--role", "viewer", *viewer)
        assert ok.returncode == 0, ok.stderr
        blocked = cli("ops", "call", "r1", "capture", "--as-user", "bob", "--role", "operator", "--timeout", "2",
                      "--args", json.dumps({"topics": ["/chatter"], "seconds": 1}), *viewer)  # fmt: skip
        assert blocked.returncode == 2 and "timeout" in blocked.stderr, blocked.stderr
        # Operators read only their own replies: bob cannot subscribe to alice's inbox (nor to all of them).
        received, errors = snoop_on_replies(hub_url, ("bob", operators["bob"]), ("alice", operators["alice"]))
        assert received == [], received
        assert sum("permissions violation for subscription" in e.lower() for e in errors) == 2, errors
        restart = cli("ops", "call", "r1", "restart_app", "--as-user", "alice", "--role", "operator",
                      "--args", json.dumps({"package": "nav_app"}), *operator)  # fmt: skip
        assert restart.returncode == 2 and "unavailable" in restart.stderr, restart.stderr
        assert agents["r1"].poll() is None, "r1's agent died"
    finally:
        if app is not None:
            app.close()
        cutter.close()
        for d in domains:
            d.release()


SSHD = "/usr/sbin/sshd"
ROBOT_SSHD_CONFIG = """ListenAddress 127.0.0.1:{port}
HostKey {host_key}
PidFile {pid}
AuthorizedKeysFile {authorized_keys}
AllowUsers {user}
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
LogLevel VERBOSE
"""
TUNNEL_AGENT_PARAMS = """
/**/robot_agent:
  ros__parameters:
    robot_id: r1
    nats_url: {url}
    announce_period_s: 5.0
    tunnel:
      enable: true
      bastion_host: 127.0.0.1
      bastion_port: {bastion_port}
      bastion_user: {user}
      remote_port: {remote_port}
      key_file: {key}
      known_hosts: {known_hosts}
      local_ssh_port: {robot_port}
"""


@pytest.fixture
def privsep_dir() -> Any:
    """sshd started as root needs /run/sshd; create it for the test if missing, remove it afterwards."""
    path = Path("/run/sshd")
    created = os.geteuid() == 0 and not path.exists()
    if created:
        path.mkdir(mode=0o755)
    try:
        yield
    finally:
        if created:
            with contextlib.suppress(OSError):
                path.rmdir()


def host_key(directory: Path, name: str) -> tuple[Path, str]:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    return key, " ".join((directory / f"{name}.pub").read_text().split()[:2])


def test_ssh_through_bastion(procs: Any, tmp_path: Path, nats_server: Any, ros_domain: int, privsep_dir: Any) -> None:
    if not (shutil.which("autossh") and Path(SSHD).exists()):
        pytest.fail("needs openssh-server and autossh: run `make setup` (requirements/apt.txt)")
    import getpass

    user = getpass.getuser()
    keys = tmp_path / "keys"
    for kind, name in (("robot", "r1"), ("robot", "r2"), ("robot", "rogue"), ("operator", "alice")):
        made = cli("ops", "keys", kind, name, "--out", str(keys))
        assert made.returncode == 0, made.stderr
    assert oct((keys / "tunnel-r1").stat().st_mode & 0o777) == "0o600"
    bastion_port, robot_port, r1_port, r2_port = free_port(), free_port(), free_port(), free_port()
    bastion_dir, robot_dir = tmp_path / "bastion", tmp_path / "robot"
    bastion_dir.mkdir()
    robot_dir.mkdir()
    authorized = bastion_dir / "authorized_keys"
    rendered = cli("ops", "authorized-keys", "--keys", str(keys), "--robots", f"r1={r1_port},r2={r2_port}",
                   "--operators", "alice", "--out", str(authorized))  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    assert f'permitlisten="127.0.0.1:{r1_port}",command="/bin/false"' in authorized.read_text()

    from robot_platform.ops.tunnel import bastion_sshd_config

    bastion_key, bastion_pub = host_key(bastion_dir, "host_ed25519")
    bastion_conf = bastion_dir / "sshd_config"
    bastion_conf.write_text(bastion_sshd_config(bastion_port, bastion_key, authorized, bastion_dir / "sshd.pid", user))
    bastion_log = bastion_dir / "sshd.log"
    procs.start("bastion-sshd", [SSHD, "-D", "-f", str(bastion_conf), "-E", str(bastion_log)])
    robot_key, robot_pub = host_key(robot_dir, "host_ed25519")
    robot_auth = robot_dir / "authorized_keys"
    robot_auth.write_text((keys / "operator-alice.pub").read_text())
    robot_conf = robot_dir / "sshd_config"
    robot_conf.write_text(ROBOT_SSHD_CONFIG.format(port=robot_port, host_key=robot_key, pid=robot_dir / "sshd.pid",
                                                   authorized_keys=robot_auth, user=user))  # fmt: skip
    procs.start("robot-sshd", [SSHD, "-D", "-f", str(robot_conf), "-E", str(robot_dir / "sshd.log")])
    wait_port(bastion_port)
    wait_port(robot_port)

    # The robot knows the bastion's host key; the operator knows the bastion's and the robot's.
    robot_known = robot_dir / "known_hosts"
    robot_known.write_text(f"[127.0.0.1]:{bastion_port} {bastion_pub}\n")
    operator_known = tmp_path / "operator_known_hosts"
    operator_known.write_text(f"[127.0.0.1]:{bastion_port} {bastion_pub}\nrp-robot-r1 {robot_pub}\n")

    params = tmp_path / "agent.yaml"
    params.write_text(TUNNEL_AGENT_PARAMS.format(
        url=nats_server.url, bastion_port=bastion_port, user=user, remote_port=r1_port,
        key=keys / "tunnel-r1", known_hosts=robot_known, robot_port=robot_port,
    ))  # fmt: skip
    argv = [sys.executable, "-m", "robot_platform.ops.node", "--ros-args", "--params-file", str(params)]
    agent = procs.start("agent-r1", argv, env=py_env(ros_domain))
    wait_port(r1_port, timeout=WAIT_S)  # the reverse tunnel listens on the bastion's loopback

    access = tmp_path / "access.yaml"
    access.write_text(json.dumps({
        "bastion": {"host": "127.0.0.1", "port": bastion_port, "user": user},
        "identity": str(keys / "operator-alice"), "known_hosts": str(operator_known),
        "robot_user": user, "ports": {"r1": r1_port},
    }))  # fmt: skip
    access_log = tmp_path / "access.log"
    marker = uuid.uuid4().hex[:8]
    result = cli("ssh", "r1", "--access-config", str(access), "--access-log", str(access_log),
                 "--", "echo", f"hello-from-robot-{marker}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"hello-from-robot-{marker}"
    logged = json.loads(access_log.read_text().splitlines()[-1])
    assert logged["robot"] == "r1" and logged["port"] == r1_port and logged["command"][0] == "echo"
    wait_for(lambda: "operator-alice" in bastion_log.read_text() or "Accepted publickey" in bastion_log.read_text(),
             10, "bastion logged the operator's access")  # fmt: skip
    assert "Accepted publickey" in bastion_log.read_text()

    def ssh_bastion(key: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        argv = ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={robot_known}", "-o", "StrictHostKeyChecking=yes",
                "-o", "ExitOnForwardFailure=yes", "-p", str(bastion_port), *extra, f"{user}@127.0.0.1"]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)

    # An unknown robot key is refused outright.
    rogue = ssh_bastion(keys / "tunnel-rogue", "-N", "-R", f"127.0.0.1:{free_port()}:127.0.0.1:{robot_port}")
    assert rogue.returncode == 255 and "Permission denied" in rogue.stderr, rogue.stderr
    # r2's key may listen on r2's port only: taking r1's or another port fails.
    other = ssh_bastion(keys / "tunnel-r2", "-N", "-R", f"127.0.0.1:{free_port()}:127.0.0.1:{robot_port}")
    assert other.returncode == 255 and "forwarding failed" in other.stderr, other.stderr
    # The operator key opens no shell on the bastion and cannot reach arbitrary ports through it.
    shell = ssh_bastion(keys / "operator-alice", "--", "id")
    assert shell.returncode != 0 and "uid=" not in shell.stdout
    assert agent.poll() is None, "robot_agent died"
