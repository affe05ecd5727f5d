"""Remote access without inbound ports on robots: reverse SSH tunnels to a bastion (OpenSSH + autossh).

* Each robot holds a **reverse tunnel** to the bastion: ``autossh -M 0 -N -R 127.0.0.1:<port>:127.0.0.1:22``
  as the bastion's tunnel account, with its **own key**. The bastion's ``authorized_keys`` entry of that
  key is ``restrict,port-forwarding,permitlisten="127.0.0.1:<port>",command="/bin/false"``: no shell, no
  pty, no agent/X11, and it may listen on exactly its own loopback port (r1 cannot take r2's port).
* Operators reach a robot with ``robot-platform ssh r1``: ``ssh`` with a generated config that uses
  ``ProxyJump`` to the bastion (operator key entry: ``restrict,port-forwarding,permitopen=<robot
  ports>,command="/bin/false"``, i.e. it may only open connections to the robots' tunnel ports) and then
  logs into the robot's own sshd through the forwarded port, with strict host-key checking on both hops.
* **Keys** are made by ``robot-platform ops keys robot r1 --out DIR`` / ``... operator alice --out DIR``
  (ssh-keygen, ed25519, private key mode 0600, never overwritten). ``--out`` is required and belongs
  outside the checkout (e.g. /etc/robot_platform/ssh on a robot, ~/.ssh/robot_platform for an operator):
  keys are never committed.
* **Access is logged** twice: the bastion's sshd (``LogLevel VERBOSE``) logs every accepted key with its
  fingerprint and every forwarding, and ``robot-platform ssh`` appends a JSON line (time, local user,
  robot, port, command) to its access log.

Everything here builds argument vectors and files; nothing goes through a shell.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from robot_platform.messaging.subjects import check_robot_id
from robot_platform.ops.errors import TunnelConfigError

HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PUBKEY_RE = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) [A-Za-z0-9+/=]+( [^\n\r\"]*)?$")
SERVER_ALIVE_INTERVAL_S = 10
SERVER_ALIVE_COUNT = 3
CONNECT_TIMEOUT_S = 10
KEYGEN_TIMEOUT_S = 30


def check_host(value: str, key: str = "host") -> str:
    if not isinstance(value, str) or not HOST_RE.fullmatch(value):
        raise TunnelConfigError(key, value, "must be a host name or IPv4 address")
    return value


def check_user(value: str, key: str = "user") -> str:
    if not isinstance(value, str) or not USER_RE.fullmatch(value):
        raise TunnelConfigError(key, value, "must be a POSIX user name")
    return value


def check_port(value: int, key: str = "port") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise TunnelConfigError(key, value, "must be a TCP port 1-65535")
    return value


def check_path(value: str | Path, key: str) -> str:
    text = str(value)
    if not text or any(c in text for c in '\n\r"\0') or text != text.strip() or " " in text:
        raise TunnelConfigError(key, text, "paths must not contain spaces, quotes or newlines")
    return text


# ----------------------------------------------------------------------------------------------- keys
def generate_key(out_dir: Path, name: str, comment: str) -> tuple[Path, Path]:
    """ed25519 key pair ``<out_dir>/<name>`` (0600) + ``.pub``; refuses to overwrite an existing key."""
    if not NAME_RE.fullmatch(name):
        raise TunnelConfigError("name", name, "key names are [A-Za-z0-9_.-]")
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = out_dir / name
    if private.exists():
        raise TunnelConfigError("key", str(private), "already exists; delete it first to rotate the key")
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(private)],
        check=True, capture_output=True, timeout=KEYGEN_TIMEOUT_S,
    )  # fmt: skip
    os.chmod(private, 0o600)
    return private, private.with_name(name + ".pub")


def read_public_key(path: Path) -> str:
    text = Path(path).read_text(encoding="utf-8").strip()
    if not PUBKEY_RE.fullmatch(text):
        raise TunnelConfigError("public_key", str(path), "not a single OpenSSH public key line")
    return text


# -------------------------------------------------------------------------------- bastion account
def robot_authorized_key(robot_id: str, port: int, public_key: str) -> str:
    """authorized_keys line of a robot's tunnel key: may only listen on its own loopback port."""
    check_robot_id(robot_id)
    check_port(port, f"{robot_id}.port")
    if not PUBKEY_RE.fullmatch(public_key):
        raise TunnelConfigError(f"{robot_id}.public_key", public_key[:32], "not an OpenSSH public key line")
    key = " ".join(public_key.split()[:2])
    return f'restrict,port-forwarding,permitlisten="127.0.0.1:{port}",command="/bin/false" {key} tunnel-{robot_id}'


def operator_authorized_key(name: str, robot_ports: list[int], public_key: str) -> str:
    """authorized_keys line of an operator's key: may only open connections to the robots' tunnel ports."""
    if not NAME_RE.fullmatch(name):
        raise TunnelConfigError("operator", name, "operator names are [A-Za-z0-9_.-]")
    if not robot_ports:
        raise TunnelConfigError("robot_ports", robot_ports, "an operator needs at least one robot port")
    if not PUBKEY_RE.fullmatch(public_key):
        raise TunnelConfigError(f"{name}.public_key", public_key[:32], "not an OpenSSH public key line")
    opens = ",".join(f'permitopen="127.0.0.1:{check_port(p)}"' for p in sorted(set(robot_ports)))
    key = " ".join(public_key.split()[:2])
    return f'restrict,port-forwarding,{opens},command="/bin/false" {key} operator-{name}'


def bastion_sshd_config(
    port: int, host_key: Path, authorized_keys: Path, pid_file: Path, user: str, listen: str = "127.0.0.1"
) -> str:
    """sshd_config of the bastion: keys only, one account, forwarding only (the keys restrict it further).

    Written for a dedicated sshd instance (``sshd -f <this> -E <log>``), so the host's own sshd and
    /etc/ssh stay untouched.
    """
    check_port(port)
    check_host(listen, "listen")
    return "\n".join([
        f"ListenAddress {listen}:{port}",
        f"HostKey {check_path(host_key, 'host_key')}",
        f"PidFile {check_path(pid_file, 'pid_file')}",
        f"AuthorizedKeysFile {check_path(authorized_keys, 'authorized_keys')}",
        f"AllowUsers {check_user(user, 'bastion_user')}",
        "AuthenticationMethods publickey", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "UsePAM no",
        "StrictModes no", "AllowTcpForwarding yes", "GatewayPorts no", "X11Forwarding no",
        "AllowAgentForwarding no", "PermitTunnel no", "PermitTTY no", "PermitUserRC no",
        "ClientAliveInterval 15", "ClientAliveCountMax 3", "MaxStartups 20:50:100",
        "LogLevel VERBOSE", "",
    ])  # fmt: skip


# ---------------------------------------------------------------------------------- robot side
@dataclass(frozen=True)
class TunnelSpec:
    """The robot's reverse tunnel: where the bastion is, which port it holds there, which local sshd."""

    robot_id: str
    bastion_host: str
    bastion_port: int
    bastion_user: str
    remote_port: int
    key_file: str
    known_hosts: str
    local_ssh_port: int = 22

    def check(self) -> TunnelSpec:
        check_robot_id(self.robot_id)
        check_host(self.bastion_host, "bastion_host")
        check_port(self.bastion_port, "bastion_port")
        check_user(self.bastion_user, "bastion_user")
        check_port(self.remote_port, "remote_port")
        check_port(self.local_ssh_port, "local_ssh_port")
        check_path(self.key_file, "key_file")
        check_path(self.known_hosts, "known_hosts")
        return self


def autossh_argv(spec: TunnelSpec, autossh: str = "autossh") -> list[str]:
    """autossh command of the reverse tunnel (``-M 0``: liveness by ServerAlive, restarts on failure)."""
    spec.check()
    return [
        autossh, "-M", "0", "-N", "-T",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", f"IdentityFile={spec.key_file}",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={spec.known_hosts}",
        "-o", "ExitOnForwardFailure=yes", "-o", f"ServerAliveInterval={SERVER_ALIVE_INTERVAL_S}",
        "-o", f"ServerAliveCountMax={SERVER_ALIVE_COUNT}", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
        "-p", str(spec.bastion_port),
        "-R", f"127.0.0.1:{spec.remote_port}:127.0.0.1:{spec.local_ssh_port}",
        f"{spec.bastion_user}@{spec.bastion_host}",
    ]  # fmt: skip


AUTOSSH_ENV = {"AUTOSSH_GATETIME": "0", "AUTOSSH_POLL": "30"}  # retry even if the first attempt fails


# ------------------------------------------------------------------------------- operator side
@dataclass(frozen=True)
class AccessConfig:
    """What ``robot-platform ssh`` needs: the bastion, the operator's key, known hosts, the robots' ports."""

    bastion_host: str
    bastion_port: int
    bastion_user: str
    identity: str
    known_hosts: str
    robot_user: str
    ports: dict[str, int]

    def check(self) -> AccessConfig:
        check_host(self.bastion_host, "bastion_host")
        check_port(self.bastion_port, "bastion_port")
        check_user(self.bastion_user, "bastion_user")
        check_user(self.robot_user, "robot_user")
        check_path(self.identity, "identity")
        check_path(self.known_hosts, "known_hosts")
        for robot, port in self.ports.items():
            check_robot_id(robot)
            check_port(port, f"ports.{robot}")
        return self


BASTION_ALIAS = "rp-bastion"


def robot_alias(robot_id: str) -> str:
    """Host alias of a robot, also its HostKeyAlias in known_hosts (``rp-robot-r1``)."""
    return f"rp-robot-{check_robot_id(robot_id)}"


def ssh_config(config: AccessConfig, robot_id: str, port: int) -> str:
    """ssh_config for one connection: bastion hop, then the robot's sshd through its tunnel port."""
    config.check()
    check_port(port, "robot port")
    common = [
        f"  IdentityFile {config.identity}", "  IdentitiesOnly yes", "  BatchMode yes",
        f"  UserKnownHostsFile {config.known_hosts}", "  StrictHostKeyChecking yes",
        f"  ConnectTimeout {CONNECT_TIMEOUT_S}", "  ForwardAgent no", "  ForwardX11 no",
    ]  # fmt: skip
    return "\n".join([
        f"Host {BASTION_ALIAS}", f"  HostName {config.bastion_host}", f"  Port {config.bastion_port}",
        f"  User {config.bastion_user}", *common,
        f"Host {robot_alias(robot_id)}", "  HostName 127.0.0.1", f"  Port {port}", f"  User {config.robot_user}",
        f"  ProxyJump {BASTION_ALIAS}", f"  HostKeyAlias {robot_alias(robot_id)}", *common, "",
    ])  # fmt: skip


def ssh_argv(config_file: Path, robot_id: str, command: list[str], ssh: str = "ssh") -> list[str]:
    """``ssh -F <config> rp-robot-<id> [-- command...]`` (the command runs on the robot, not locally)."""
    argv = [ssh, "-F", check_path(config_file, "ssh_config"), robot_alias(robot_id)]
    if command:
        argv += ["--", *command]
    return argv


def log_access(log_file: Path, robot_id: str, port: int, command: list[str]) -> None:
    """Append one JSON line per ``robot-platform ssh`` (who, when, which robot, what command)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "user": os.environ.get("USER") or str(os.getuid()),
        "robot": robot_id, "port": port, "command": command,
    }  # fmt: skip
    fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
