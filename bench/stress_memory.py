"""Bounded memory stress of robot_agent and nats_bridge on loopback: RSS before, during, after.

Starts a private nats-server (127.0.0.1, free port), robot_agent and nats_bridge (robot mode, own
ROS_DOMAIN_ID, discovery LOCALHOST), then floods them as an attacker on the robot's NATS would:

* robot_agent: ``--agent-requests`` requests on ``robots.r1.ops.list_graph`` from a role that is refused,
  each a valid msgpack map with a ``--agent-size`` byte user name (what the audit line repeats), or with
  ``--agent-pad args`` a short name and ``--agent-size`` bytes of args;
* nats_bridge: ``--bridge-commands`` commands on ``robots.r1.cmd.cmd_vel`` of ``--bridge-size`` bytes
  with a valid envelope: ``--bridge-kind`` malformed msgpack, a map with one huge unknown field name,
  or a small Twist with a NaN.

VmRSS (/proc/<pid>/status) is sampled before, every 0.1 s during the flood, and after ``--settle-s`` of
quiet. Everything is bounded in count and time and stops in ``finally``.

    . scripts/env.sh && python bench/stress_memory.py            # as shipped
    MALLOC_ARENA_MAX=2 python bench/stress_memory.py              # glibc arenas capped in the children
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgpack
import nats

from robot_platform.launcher.domains import DomainReservation
from robot_platform.messaging.envelope import Envelope

REPO = Path(__file__).resolve().parents[1]

AGENT = """
/**/robot_agent:
  ros__parameters:
    robot_id: r1
    nats_url: {url}
    announce_period_s: 1.0
    roles_file: {roles}
"""
BRIDGE = """
/**/nats_bridge:
  ros__parameters:
    robot_id: r1
    nats_url: {url}
    events_stream: false
    in:
      names: [cmd_vel]
      cmd_vel: {{topic: /cmd_vel, type: geometry_msgs/msg/Twist}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


async def wait_subscribed(url: str, subject: str, timeout: float = 30.0) -> None:
    """Until a request on ``subject`` gets an answer (the process is up and subscribed)."""
    nc = await nats.connect(url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                await nc.request(subject, b"\x80", timeout=0.5)
                return
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                await asyncio.sleep(0.2)
        raise TimeoutError(f"nothing answers on {subject}")
    finally:
        await nc.close()


async def flood(url: str, args: argparse.Namespace, pids: dict[str, int]) -> dict[str, float]:
    peak = {name: rss_mb(pid) for name, pid in pids.items()}
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            for name, pid in pids.items():
                peak[name] = max(peak[name], rss_mb(pid))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    try:
        if args.agent_pad == "user":
            request = msgpack.packb({"user": "u" * args.agent_size, "role": "intruder", "args": {}})
        else:
            request = msgpack.packb({"user": "mallory", "role": "intruder", "args": {"pad": "x" * args.agent_size}})
        if args.bridge_kind == "malformed":
            command = b"\xc1" * args.bridge_size
        elif args.bridge_kind == "unknown_field":  # the field name is echoed in the error (and the log)
            command = msgpack.packb({"x" * args.bridge_size: 1.0})
        else:  # a float far out of range in a 'data' list-like field: Twist has none, so a NaN per field
            command = msgpack.packb({"linear": {"x": float("nan")}, "angular": {"z": 1.0}})
        headers = Envelope(type_name="geometry_msgs/msg/Twist", msg_id="x", robot_id="r1").headers()
        n = max(args.agent_requests, args.bridge_commands)
        for i in range(n):
            if i < args.agent_requests:
                await nc.publish("robots.r1.ops.list_graph", request, reply=nc.new_inbox())
            if i < args.bridge_commands:
                headers["Nats-Msg-Id"] = uuid.uuid4().hex
                await nc.publish("robots.r1.cmd.cmd_vel", command, headers=dict(headers))
            if i % 200 == 0:
                await nc.flush(timeout=30)
        await nc.flush(timeout=60)
    finally:
        await nc.close()
    await asyncio.sleep(args.drain_s)  # let them work through what is queued
    stop.set()
    await sampler
    return peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agent-requests", type=int, default=3000)
    ap.add_argument("--agent-size", type=int, default=60_000)
    ap.add_argument("--agent-pad", choices=("user", "args"), default="user", help="where the agent's bytes go")
    ap.add_argument("--bridge-commands", type=int, default=600)
    ap.add_argument("--bridge-size", type=int, default=900_000)
    ap.add_argument("--bridge-kind", choices=("malformed", "unknown_field", "non_finite"), default="malformed")
    ap.add_argument("--drain-s", type=float, default=5.0)
    ap.add_argument("--settle-s", type=float, default=10.0)
    ap.add_argument("--smoke", action="store_true", help="a small flood, short settle: does the path work?")
    args = ap.parse_args()
    if args.smoke:
        args.agent_requests, args.agent_size, args.bridge_commands, args.bridge_size = 50, 2_000, 20, 20_000
        args.drain_s, args.settle_s = 1.0, 1.0
    if args.agent_requests > 20_000 or args.bridge_commands > 5_000:
        ap.error("keep the stress bounded (at most 20000 agent requests, 5000 bridge commands)")

    tmp = Path(tempfile.mkdtemp(prefix="stress_memory_"))
    domains = DomainReservation()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    src = REPO / "src" / "robot_platform"
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": str(domains.domain_id),
           "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}  # fmt: skip
    try:
        procs["nats-server"] = subprocess.Popen(
            [shutil.which("nats-server") or "nats-server", "-a", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        roles = tmp / "roles.yaml"
        roles.write_text("users: {}\n")
        for name, module, text in (
            ("robot_agent", "robot_platform.ops.node", AGENT.format(url=url, roles=roles)),
            ("nats_bridge", "robot_platform.bridge.node", BRIDGE.format(url=url)),
        ):
            params = tmp / f"{name}.yaml"
            params.write_text(text)
            log = (tmp / f"{name}.log").open("wb")
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", module, "--ros-args", "--params-file", str(params)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            time.sleep(0.1)
        asyncio.run(wait_subscribed(url, "robots.r1.ops.list_graph"))
        time.sleep(3.0)  # both connected and idle
        pids = {name: procs[name].pid for name in ("robot_agent", "nats_bridge")}
        before = {name: rss_mb(pid) for name, pid in pids.items()}
        t0 = time.monotonic()
        peak = asyncio.run(flood(url, args, pids))
        flood_s = time.monotonic() - t0
        time.sleep(args.settle_s)
        after = {name: rss_mb(pid) for name, pid in pids.items()}
        arena = os.environ.get("MALLOC_ARENA_MAX", "unset")
        print(f"MALLOC_ARENA_MAX={arena}; agent {args.agent_requests} x {args.agent_size} B, "
              f"bridge {args.bridge_commands} x {args.bridge_size} B, flood+drain {flood_s:.1f} s")  # fmt: skip
        for name in pids:
            alive = "alive" if procs[name].poll() is None else f"EXITED {procs[name].returncode}"
            ratio = after[name] / before[name]
            print(f"  {name:12s} RSS MB before {before[name]:7.1f}  peak {peak[name]:7.1f}  "
                  f"after {args.settle_s:g}s {after[name]:7.1f}  ({ratio:.2f}x)  {alive}")  # fmt: skip
        dead = [name for name in pids if procs[name].poll() is not None]
        return 1 if dead else 0
    finally:
        for proc in reversed(list(procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        domains.release()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
