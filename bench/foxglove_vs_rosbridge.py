"""ws_agent's Foxglove path against its rosbridge path, one run, one agent: delivered msg/s and agent CPU.

Setup: nats-server, one ws_agent (python -m robot_platform.ws.standalone, robot mode, anonymous viewers,
Foxglove channels from a bridge config with /odom), and a NATS publisher in this process sending
nav_msgs/Odometry in nats_bridge's envelope (msgpack body, ~0.7 kB) on robots.r1.ros.odom. For each path
in turn, ``--clients`` Node connections (bench/foxglove_client.mjs) subscribe to /odom and decode every
message: ``foxglove`` (@foxglove/ws-protocol, CDR decoded with @foxglove/rosmsg2-serialization),
``json`` and ``cbor`` (rosbridge v2 subscribe, compression none / cbor). Each path gets a warm-up (the
first message proves it live), then ``--duration`` s of publishing at each ``--rates`` rate. Measured:
offered (rate x clients) and delivered msg/s, lost, the agent's CPU (utime+stime of its process) in % of
one core and in ms per 1,000 delivered messages. Same agent, same publisher, same client process for
every path: what differs is the agent's per-message work (CDR once per message + a 13-byte header per
client, against JSON or CBOR once per message).

Usage:  . scripts/env.sh && python bench/foxglove_vs_rosbridge.py [--clients 5] [--rates 200,1000]
        [--duration 10] [--smoke]
Needs:  nats-server on PATH, node, npm ci --prefix test/browser.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src" / "robot_platform"
sys.path.insert(0, str(REPO / "test"))
sys.path.insert(1, str(SRC))
from helpers import free_port, wait_port  # noqa: E402

PATHS = ("foxglove", "json", "cbor")
TICK_S = 0.01
READY_TIMEOUT_S = 90.0  # node start + connect + subscribe on a busy shared machine
ASK_TIMEOUT_S = 30.0
DRAIN_QUIET_S = 1.0  # no new message for this long: delivery is over
BRIDGE_YAML = """/**/nats_bridge:
  ros__parameters:
    out:
      names: [odom]
      odom: {topic: /odom, type: nav_msgs/msg/Odometry}
"""


class OdomSource:
    """One Odometry body (encoded once) and fresh envelope headers per message, like nats_bridge sends."""

    def __init__(self) -> None:
        from nav_msgs.msg import Odometry

        from robot_platform.messaging.codec import Codec
        from robot_platform.messaging.envelope import EnvelopeFactory

        codec = Codec()
        msg = Odometry()
        msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
        msg.pose.pose.position.x = 1.5
        msg.pose.pose.orientation.w = 1.0
        msg.pose.covariance = [0.01 * k for k in range(36)]
        msg.twist.covariance = [0.02 * k for k in range(36)]
        self.body = codec.encode(msg)
        self.type_hash = codec.registry.type_hash(Odometry)
        self.factory = EnvelopeFactory("r1")

    def headers(self) -> dict[str, str]:
        return self.factory.headers("nav_msgs/msg/Odometry", self.type_hash, "/odom")


def encode_costs(n: int) -> dict[str, float]:
    """CPU us per message of each path's once-per-message work in this process (msgpack body -> frame payload):
    what the agent pays per message whatever the number of clients; load-independent in ratio."""
    from rclpy.serialization import serialize_message

    from robot_platform.messaging.codec import Codec
    from robot_platform.ws.cdr import CdrEncoder
    from robot_platform.ws.outgoing import Outgoing

    src, codec = OdomSource(), Codec()
    cls, enc = codec.registry.load("nav_msgs/msg/Odometry"), CdrEncoder(codec.registry)
    ways = {
        "foxglove (cdr.py)": lambda o: enc.encode(cls, o.msg()),
        "foxglove via rclpy": lambda o: serialize_message(codec.from_dict(cls, o.msg(), allow_non_finite=True)),
        "json": lambda o: o.frame("/odom", "none"),
        "cbor": lambda o: o.frame("/odom", "cbor"),
    }
    costs = {}
    for name, way in ways.items():
        outs = [Outgoing("robots.r1.ros.odom", "nav_msgs/msg/Odometry", src.body, "r1") for _ in range(n)]
        t0 = time.process_time()
        for out in outs:
            way(out)
        costs[name] = 1e6 * (time.process_time() - t0) / n
    return costs


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Client:
    def __init__(self, url: str, kind: str, n: int) -> None:
        node = shutil.which("node") or "node"
        self.proc = subprocess.Popen([node, str(REPO / "bench" / "foxglove_client.mjs"), url, kind, "/odom", str(n)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            line = self._line(READY_TIMEOUT_S)
            if line != "READY":
                raise RuntimeError(f"{kind} client did not get ready: {line!r}")
        except BaseException:
            self.close()
            raise

    def _line(self, timeout: float) -> str:
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError("client did not answer")
        return self.proc.stdout.readline().strip()

    def ask(self, command: str) -> dict[str, Any]:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line(ASK_TIMEOUT_S))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


async def publish(nc: Any, src: OdomSource, rate: float, duration: float) -> int:
    """``rate`` msg/s for ``duration`` s, paced per TICK_S; returns how many were sent."""
    sent, t0 = 0, time.monotonic()
    while (elapsed := time.monotonic() - t0) < duration:
        due = int(elapsed * rate) + 1
        while sent < due:
            await nc.publish("robots.r1.ros.odom", src.body, headers=src.headers())
            sent += 1
        await asyncio.sleep(TICK_S)
    await nc.flush()
    return sent


async def drained(client: Client, quiet_s: float) -> int:
    """The client's count once it stopped growing for ``quiet_s`` (the agent's queues are empty)."""
    last, still = -1, time.monotonic()
    while time.monotonic() - still < quiet_s:
        now = client.ask("count")["count"]
        if now != last:
            last, still = now, time.monotonic()
        await asyncio.sleep(0.1)
    return last


async def run_path(nc: Any, src: OdomSource, url: str, kind: str, clients: int, rates: list[float], duration: float,
                   agent_pid: int, quiet_s: float) -> list[dict[str, Any]]:  # fmt: skip
    client = Client(url, kind, clients)
    rows = []
    try:
        deadline = time.monotonic() + 20
        while client.ask("count")["count"] < clients:  # warm-up: every connection got a message
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: no message delivered in the warm-up")
            await publish(nc, src, 20, 0.2)
        for rate in rates:
            before = await drained(client, quiet_s)
            cpu0, t0 = cpu_s(agent_pid), time.monotonic()
            sent = await publish(nc, src, rate, duration)
            last = await drained(client, quiet_s)
            wall, cpu = time.monotonic() - t0 - quiet_s, cpu_s(agent_pid) - cpu0
            delivered = last - before
            rows.append({"path": kind, "rate": rate, "clients": clients, "offered": sent * clients / duration,
                         "delivered_per_s": delivered / wall, "lost": sent * clients - delivered,
                         "agent_cpu_pct": 100 * cpu / wall,
                         "cpu_ms_per_1000": 1e6 * cpu / delivered if delivered else float("inf")})  # fmt: skip
    finally:
        client.close()
    return rows


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    import nats

    tmp = Path(tempfile.mkdtemp(prefix="fxbench-"))
    (tmp / "bridge.yaml").write_text(BRIDGE_YAML)
    nats_port, ws_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    procs = [subprocess.Popen([shutil.which("nats-server") or "nats-server", "-a", "127.0.0.1", "-p", str(nats_port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    try:
        wait_port(nats_port, 10)
        agent = subprocess.Popen([sys.executable, "-m", "robot_platform.ws.standalone", "--robot-id", "r1",
                                  "--port", str(ws_port), "--nats-url", f"nats://127.0.0.1:{nats_port}",
                                  "--anonymous-role", "viewer", "--log-level", "WARNING",
                                  "--foxglove-bridge-config", str(tmp / "bridge.yaml")], env=env)  # fmt: skip
        procs.append(agent)
        wait_port(ws_port, 30)
        nc = await nats.connect(f"nats://127.0.0.1:{nats_port}")
        rows = []
        try:
            for kind in args.paths.split(","):
                rates = [float(r) for r in args.rates.split(",")]
                rows += await run_path(nc, OdomSource(), f"ws://127.0.0.1:{ws_port}/ws", kind, args.clients, rates,
                                       args.duration, agent.pid, args.quiet_s)  # fmt: skip
        finally:
            await nc.close()
        return rows
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=5, help="connections per path")
    ap.add_argument("--rates", default="200,1000", help="comma list of published msg/s")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of publishing per rate")
    ap.add_argument("--paths", default=",".join(PATHS))
    ap.add_argument("--quiet-s", type=float, default=DRAIN_QUIET_S, help="no message for this long = drained")
    ap.add_argument("--json", default="", help="also write the rows to this file")
    ap.add_argument(
        "--smoke", action="store_true", help="a few seconds, tiny sizes; non-zero if a path delivers nothing"
    )
    args = ap.parse_args()
    if args.smoke:
        args.clients, args.rates, args.duration, args.quiet_s = 1, "50", 0.5, 0.4
    load = Path("/proc/loadavg").read_text().split()[:3]
    costs = encode_costs(200 if args.smoke else 5000)
    print("per-message encoding, Odometry (CPU us/msg, this process):")
    for name, us in costs.items():
        print(f"  {name:20} {us:7.1f}")
    rows = asyncio.run(bench(args))
    print(f"load average before: {' '.join(load)}; after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"{'path':9} {'rate/s':>7} {'clients':>7} {'offered/s':>10} {'delivered/s':>12} {'lost':>6} "
          f"{'agent CPU %':>11} {'CPU ms/1000':>11}")  # fmt: skip
    for r in rows:
        print(f"{r['path']:9} {r['rate']:7.0f} {r['clients']:7d} {r['offered']:10.0f} {r['delivered_per_s']:12.0f} "
              f"{r['lost']:6d} {r['agent_cpu_pct']:11.1f} {r['cpu_ms_per_1000']:11.1f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"encode_us": costs, "rows": rows}, indent=1))
    dead = [r["path"] for r in rows if r["delivered_per_s"] <= 0]
    if dead:
        print(f"FAILED: nothing delivered on {', '.join(dead)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
