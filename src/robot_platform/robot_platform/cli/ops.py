"""``robot-platform robots | logs | ssh | ops ...``: the operator's remote-operations commands.

* ``robots``                 the registry (hub KV bucket FLEET_REGISTRY), online/offline
* ``logs ROBOT``             search FLEET_LOGS: ``--level warn --grep TEXT --node N --since 10m --follow``
* ``ssh ROBOT [-- CMD...]``  through the bastion to the robot's reverse tunnel (access logged)
* ``ops keys robot|operator NAME --out DIR``   make an ed25519 key (never commit the directory)
* ``ops authorized-keys``    the bastion account's authorized_keys from those keys
* ``ops call ROBOT ACTION``  a safe remote action (list_graph, capture, restart_app); capture saves an
  MCAP file (``--out``)

NATS options (``--url``, ``--user``, ``--password-file``) default to ``$RP_NATS_URL``, ``$RP_NATS_USER``,
``$RP_NATS_PASSWORD_FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats.errors
import yaml

from robot_platform.exceptions import ConfigError
from robot_platform.ops import logs, tunnel
from robot_platform.ops.actions import ACTIONS
from robot_platform.ops.client import HubRequestError, call_action, connect, list_robots, query_logs
from robot_platform.ops.registry import OFFLINE_AFTER_S, format_table

DEFAULT_ACCESS_CONFIG = "~/.config/robot_platform/access.yaml"
DEFAULT_ACCESS_LOG = "~/.local/state/robot_platform/ssh-access.log"


def _nats_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("RP_NATS_URL", "nats://127.0.0.1:4222"), help="NATS hub")
    parser.add_argument("--user", default=os.environ.get("RP_NATS_USER", ""), help="NATS user")
    parser.add_argument("--password-file", default=os.environ.get("RP_NATS_PASSWORD_FILE", ""),
                        help="file holding the NATS password")  # fmt: skip


def _password(args: argparse.Namespace) -> str:
    return Path(args.password_file).expanduser().read_text(encoding="utf-8").strip() if args.password_file else ""


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        return 0
    except (nats.errors.Error, TimeoutError) as exc:
        raise HubRequestError(f"{type(exc).__name__}: {exc}") from None


# ------------------------------------------------------------------------------------ robots
def _cmd_robots(args: argparse.Namespace) -> int:
    async def run() -> int:
        nc = await connect(args.url, args.user, _password(args))
        try:
            records = await list_robots(nc)
        finally:
            await nc.close()
        now = time.time()
        if args.json:
            for r in records:
                r.status = r.effective_status(now, args.offline_after)
            print(json.dumps([r.__dict__ for r in records], indent=2, sort_keys=True))
        else:
            print(format_table(records, now, args.offline_after) if records else "no robots registered")
        return 0

    return int(_run(run()))


# -------------------------------------------------------------------------------------- logs
def _cmd_logs(args: argparse.Namespace) -> int:
    try:
        level = logs.parse_level(args.level)
        flt = logs.LogFilter(
            node=args.node, grep=re.compile(args.grep) if args.grep else None,
            since=logs.parse_time(args.since) if args.since else None,
            until=logs.parse_time(args.until) if args.until else None,
        )  # fmt: skip
    except (ValueError, re.error) as exc:
        raise ConfigError("logs", "", str(exc)) from None
    robot = "*" if args.robot in ("all", "*") else args.robot

    def emit(entry: logs.LogEntry) -> None:
        print(json.dumps(entry.__dict__) if args.json else entry.format(), flush=True)

    async def run() -> int:
        nc = await connect(args.url, args.user, _password(args))
        try:
            matched = await query_logs(nc, robot, level, flt, emit, follow=args.follow)
        finally:
            await nc.close()
        return 0 if matched or args.follow else 1

    return int(_run(run()))


# --------------------------------------------------------------------------------------- ssh
def load_access_config(path: str) -> tunnel.AccessConfig:
    file = Path(path).expanduser()
    if not file.exists():
        raise ConfigError("access_config", str(file), "missing; see README 'Remote access' for its fields")
    body = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    try:
        bastion = body["bastion"]
        return tunnel.AccessConfig(
            bastion_host=str(bastion["host"]),
            bastion_port=int(bastion.get("port", 22)),
            bastion_user=str(bastion.get("user", "rptunnel")),
            identity=str(Path(body["identity"]).expanduser()),
            known_hosts=str(Path(body["known_hosts"]).expanduser()),
            robot_user=str(body.get("robot_user", "robot")),
            ports={str(k): int(v) for k, v in (body.get("ports") or {}).items()},
        ).check()
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError("access_config", str(file), f"{type(exc).__name__}: {exc}") from None


def _robot_port(args: argparse.Namespace, config: tunnel.AccessConfig) -> int:
    if args.port:
        return int(args.port)
    if args.robot in config.ports:
        return config.ports[args.robot]

    async def from_registry() -> int:
        nc = await connect(args.url, args.user, _password(args))
        try:
            records = {r.robot_id: r for r in await list_robots(nc)}
        finally:
            await nc.close()
        record = records.get(args.robot)
        return int(record.last.get("ssh_port", 0)) if record else 0

    port = int(asyncio.run(from_registry()))
    if not port:
        raise ConfigError("robot", args.robot, "no tunnel port: not in the access config's ports, nor in the registry")
    return port


def _ssh_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--access-config", default=os.environ.get("RP_ACCESS_CONFIG", DEFAULT_ACCESS_CONFIG))
    parser.add_argument("--access-log", default=os.environ.get("RP_ACCESS_LOG", DEFAULT_ACCESS_LOG))
    parser.add_argument("--port", type=int, default=0, help="tunnel port (default: access config, then registry)")
    _nats_options(parser)


def _cmd_ssh(args: argparse.Namespace) -> int:
    rest = list(args.command)
    if rest and rest[0] != "--":  # options after the robot id: parse them, the command follows "--"
        split = rest.index("--") if "--" in rest else len(rest)
        options = argparse.ArgumentParser(prog="robot-platform ssh", add_help=False)
        _ssh_options(options)
        options.parse_args(rest[:split], namespace=args)
        rest = rest[split:]
    command = rest[1:] if rest[:1] == ["--"] else rest
    config = load_access_config(args.access_config)
    port = _robot_port(args, config)
    tunnel.log_access(Path(args.access_log).expanduser(), args.robot, port, command)
    with tempfile.TemporaryDirectory(prefix="rp-ssh-") as tmp:
        cfg = Path(tmp) / "ssh_config"
        fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(tunnel.ssh_config(config, args.robot, port))
        return subprocess.run(tunnel.ssh_argv(cfg, args.robot, command), check=False).returncode


# --------------------------------------------------------------------------------------- ops
def _cmd_keys(args: argparse.Namespace) -> int:
    name = f"tunnel-{args.name}" if args.kind == "robot" else f"operator-{args.name}"
    private, public = tunnel.generate_key(Path(args.out).expanduser(), name, f"robot_platform {name}")
    print(json.dumps({"private_key": str(private), "public_key": str(public),
                      "public": tunnel.read_public_key(public)}, indent=2))  # fmt: skip
    return 0


def _pairs(text: str, key: str) -> dict[str, int]:
    out = {}
    for item in filter(None, text.split(",")):
        name, _, port = item.partition("=")
        if not port.isdigit():
            raise ConfigError(key, item, "expected id=port")
        out[name] = int(port)
    return out


def _cmd_authorized_keys(args: argparse.Namespace) -> int:
    keys = Path(args.keys).expanduser()
    ports = _pairs(args.robots, "--robots")
    lines = [tunnel.robot_authorized_key(r, p, tunnel.read_public_key(keys / f"tunnel-{r}.pub"))
             for r, p in sorted(ports.items())]  # fmt: skip
    for name in filter(None, args.operators.split(",")):
        public = tunnel.read_public_key(keys / f"operator-{name}.pub")
        lines.append(tunnel.operator_authorized_key(name, list(ports.values()), public))
    text = "\n".join(lines) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).expanduser().write_text(text, encoding="utf-8")
    return 0


def operator_name() -> str:
    """Who runs ``ops call``: $RP_OPS_USER, else the login name from the password database (works when
    $USER is unset, as in containers and service shells)."""
    import getpass

    return os.environ.get("RP_OPS_USER") or getpass.getuser()


def _cmd_call(args: argparse.Namespace) -> int:
    try:
        call_args = json.loads(args.args) if args.args else {}
    except ValueError as exc:
        raise ConfigError("--args", args.args, f"not JSON: {exc}") from None

    async def run() -> Any:
        nc = await connect(args.url, args.user, _password(args))
        try:
            return await call_action(nc, args.robot, args.action, args.as_user or operator_name(), args.role, call_args,
                                     args.timeout)  # fmt: skip
        finally:
            await nc.close()

    result = _run(run())
    if args.action == "capture" and isinstance(result, dict) and "file" in result:
        out = Path(args.out or f"capture-{args.robot}-{int(time.time())}.mcap")
        out.write_bytes(result.pop("file"))
        result["saved_to"] = str(out)
    print(json.dumps(result, indent=2, default=str))
    return 0


def add_subparsers(subparsers: Any) -> None:
    robots = subparsers.add_parser("robots", help="list the fleet registry (online/offline, versions, uptime)")
    _nats_options(robots)
    robots.add_argument("--offline-after", type=float, default=OFFLINE_AFTER_S,
                        help="seconds of silence shown as offline")  # fmt: skip
    robots.add_argument("--json", action="store_true", help="print records as JSON")
    robots.set_defaults(func=_cmd_robots)

    log = subparsers.add_parser("logs", help="search the robots' ROS logs (FLEET_LOGS); --follow tails")
    log.add_argument("robot", help="robot id, or 'all'")
    _nats_options(log)
    log.add_argument("--level", default="info", help="lowest level shown: debug|info|warn|error|fatal")
    log.add_argument("--grep", default="", help="regular expression the message must match")
    log.add_argument("--node", default="", help="logger/node name (substring)")
    log.add_argument("--since", default="", help="10m, 2h, 1d, epoch seconds or ISO time")
    log.add_argument("--until", default="", help="same forms as --since")
    log.add_argument("-f", "--follow", action="store_true", help="keep printing new records")
    log.add_argument("--json", action="store_true", help="one JSON object per record")
    log.set_defaults(func=_cmd_logs)

    ssh = subparsers.add_parser("ssh", help="ssh into a robot through the bastion and its reverse tunnel")
    ssh.add_argument("robot")
    _ssh_options(ssh)
    ssh.add_argument("command", nargs=argparse.REMAINDER, help="[options] -- command to run on the robot")
    ssh.set_defaults(func=_cmd_ssh)

    ops = subparsers.add_parser("ops", help="remote-operations admin: keys, bastion keys, remote actions")
    sub = ops.add_subparsers(dest="ops_command", required=True)
    keys = sub.add_parser("keys", help="generate an ed25519 key for a robot's tunnel or an operator")
    keys.add_argument("kind", choices=("robot", "operator"))
    keys.add_argument("name", help="robot id or operator name")
    keys.add_argument("--out", required=True, help="key directory (outside the repository)")
    keys.set_defaults(func=_cmd_keys)
    ak = sub.add_parser("authorized-keys", help="render the bastion account's authorized_keys")
    ak.add_argument("--keys", required=True, help="directory with tunnel-<id>.pub and operator-<name>.pub")
    ak.add_argument("--robots", required=True, help="robot=port list, e.g. r1=2201,r2=2202")
    ak.add_argument("--operators", default="", help="operator names, e.g. alice,bob")
    ak.add_argument("--out", default="-", help="output file (default stdout)")
    ak.set_defaults(func=_cmd_authorized_keys)
    call = sub.add_parser("call", help="run a safe remote action on a robot")
    call.add_argument("robot")
    call.add_argument("action", choices=ACTIONS)
    call.add_argument("--args", default="", help='JSON arguments, e.g. \'{"topics": ["/odom"], "seconds": 5}\'')
    call.add_argument("--as-user", default=None,
                      help="your operator name (default: $RP_OPS_USER, else your login name)")
    call.add_argument("--role", required=True, help="your role (checked against the robot's roles file)")
    call.add_argument("--out", default="", help="capture: where to save the MCAP file")
    call.add_argument("--timeout", type=float, default=10.0)
    _nats_options(call)
    call.set_defaults(func=_cmd_call)
