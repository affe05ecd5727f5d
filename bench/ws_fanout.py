"""ws_agent fan-out benchmark: simulated robots -> NATS -> ws_agent -> N WebSocket clients.

Processes (all on 127.0.0.1): nats-server; the agent (``python -m robot_platform.ws.standalone``, fleet
mode); a publisher process (nats-py, Odometry-shaped messages in the bridge's envelope, stamped with
the send time in ``header.stamp``); the clients (bench/ws_clients.mjs, N connections on one Node
event loop, so the clients are not the bottleneck). Measured per scenario: delivered msgs/s (all
clients), p50/p99/max latency publish -> client, drops counted by the agent, agent CPU.

Scenarios, all in one run:
  fleet       R robots x T topics x H Hz into C clients, for each encoding (JSON, msgpack, CBOR)
  single      one ~100 B topic, one client: saturation (publisher as fast as it can) and 1000/s,
              through ws_agent and through a naive JSON-over-WebSocket baseline (NATS callback ->
              json.dumps -> ws.send, no queues) started the same way

Usage:  . scripts/env.sh && python bench/ws_fanout.py [--quick]
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
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import msgpack
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))
from helpers import free_port, wait_port  # noqa: E402  (the test harness's loopback port helpers)

SRC = REPO / "src" / "robot_platform"
ODOM_TYPE = "nav_msgs/msg/Odometry"
PUBLISH_SLOT_S = 0.01
STRING_TYPE = "std_msgs/msg/Header"  # small message with a stamp: ~100 B with its frame_id




# ------------------------------------------------------------------------------------ publisher role
def odom_body(now_ns: int, robot: str) -> bytes:
    cov = [0.0] * 36
    return msgpack.packb({
        "header": {"stamp": {"sec": now_ns // 1_000_000_000, "nanosec": now_ns % 1_000_000_000}, "frame_id": "odom"},
        "child_frame_id": "base_link",
        "pose": {"pose": {"position": {"x": 1.0, "y": 2.0, "z": 0.0},
                          "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}, "covariance": cov},
        "twist": {"twist": {"linear": {"x": 0.5, "y": 0.0, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": 0.1}},
                  "covariance": cov},
    })  # fmt: skip


def small_body(now_ns: int, robot: str) -> bytes:
    return msgpack.packb({"stamp": {"sec": now_ns // 1_000_000_000, "nanosec": now_ns % 1_000_000_000},
                          "frame_id": "x" * 64})  # fmt: skip


def envelope(type_name: str, robot: str, topic: str) -> dict[str, str]:
    return {"Content-Type": "application/msgpack", "Ros-Type": type_name, "Nats-Msg-Id": uuid.uuid4().hex,
            "Robot-Id": robot, "Ros-Topic": topic}  # fmt: skip


async def publish(url: str, robots: int, topics: int, rate: float, duration: float, kind: str, prefix: str) -> int:
    import nats

    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    body_fn, type_name = (odom_body, ODOM_TYPE) if kind == "odom" else (small_body, STRING_TYPE)
    pairs = [(f"{prefix}{r}", f"t{t}") for r in range(robots) for t in range(topics)]
    sent = 0
    start = time.monotonic()
    if rate <= 0:  # saturation: as fast as possible, flushing in chunks
        while time.monotonic() - start < duration:
            for _ in range(200):
                robot, topic = pairs[sent % len(pairs)]
                await nc.publish(f"robots.{robot}.ros.{topic}", body_fn(time.time_ns(), robot),
                                 headers=envelope(type_name, robot, "/" + topic))  # fmt: skip
                sent += 1
            await nc.flush()
    else:  # each topic at `rate`, spread over the period in 10 ms slots (robots are not synchronized)
        period = 1.0 / rate
        slots = max(1, round(period / PUBLISH_SLOT_S))
        tick = 0
        while time.monotonic() - start < duration:
            for robot, topic in pairs[tick % slots :: slots]:
                await nc.publish(f"robots.{robot}.ros.{topic}", body_fn(time.time_ns(), robot),
                                 headers=envelope(type_name, robot, "/" + topic))  # fmt: skip
                sent += 1
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * period / slots - time.monotonic()))
    await nc.flush()
    await nc.close()
    return sent


# ------------------------------------------------------------------------------------ baseline role
def baseline(nats_url: str, port: int) -> None:
    """The naive gateway: NATS callback decodes, json.dumps and sends to every client, no queues."""
    import threading

    import nats
    from flask import Flask
    from flask_sock import ConnectionClosed, Sock

    app = Flask("baseline")
    sock = Sock(app)
    clients: list[Any] = []

    @sock.route("/ws")
    def ws(wsock: Any) -> None:
        clients.append(wsock)
        while wsock.receive() is not None:  # subscribes ignored: everything goes to everyone
            pass

    async def main() -> None:
        nc = await nats.connect(nats_url)

        async def cb(msg: Any) -> None:
            text = json.dumps({"op": "publish", "topic": msg.subject, "msg": msgpack.unpackb(msg.data)})
            for c in list(clients):
                try:
                    c.send(text)
                except (ConnectionError, OSError, ConnectionClosed):
                    clients.remove(c)

        await nc.subscribe("robots.>", cb=cb)
        await asyncio.Event().wait()

    threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()
    from werkzeug.serving import make_server

    make_server("127.0.0.1", port, app, threaded=True).serve_forever()


# ------------------------------------------------------------------------------------ orchestration
class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.scenario = 0
        self.env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        port = free_port()
        self.nats_url = f"nats://127.0.0.1:{port}"
        self.start([shutil.which("nats-server") or "nats-server", "-a", "127.0.0.1", "-p", str(port)])
        wait_port(port, timeout=15.0)

    def start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"proc{len(self.procs)}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.procs.append(proc)
        return proc

    def agent(self, baseline_server: bool = False) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        if baseline_server:
            argv = [sys.executable, __file__, "--role", "baseline", "--nats-url", self.nats_url, "--port", str(port)]
        else:
            argv = [sys.executable, "-m", "robot_platform.ws.standalone", "--mode", "fleet", "--port", str(port),
                    "--nats-url", self.nats_url, "--anonymous-role", "viewer", "--max-client-msgs-per-s", "0",
                    "--log-level", "WARNING"]  # fmt: skip
        proc = self.start(argv)
        wait_port(port, timeout=15.0)
        return proc, port

    def run(self, port: int, agent: subprocess.Popen[bytes], *, robots: int, topics: int, rate: float,
            clients: int, duration: float, compression: str, kind: str,
            baseline_server: bool = False, queue_length: int = 10) -> dict:  # fmt: skip
        self.scenario += 1  # fresh robot names: a backlog of one scenario cannot leak into the next
        prefix = f"s{self.scenario}r"
        names = [f"/robots/{prefix}{r}/t{t}" for r in range(robots) for t in range(topics)]
        topics_file = self.tmp / "topics.json"
        topics_file.write_text(json.dumps(names))
        node = subprocess.Popen(
            ["node", str(REPO / "bench" / "ws_clients.mjs"), f"ws://127.0.0.1:{port}/ws", str(topics_file),
             compression, str(clients), str(queue_length)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert node.stdout is not None and node.stdin is not None
        if node.stdout.readline().strip() != "READY":
            raise RuntimeError("clients did not connect")
        if not baseline_server:
            deadline = time.monotonic() + 20
            while health(port)["hub"]["subjects"] < len(names) and time.monotonic() < deadline:
                time.sleep(0.1)
        else:
            time.sleep(0.5)
        before = health(port) if not baseline_server else None
        ps = psutil.Process(agent.pid)
        cpu0 = sum(ps.cpu_times()[:2])
        t0 = time.monotonic()
        out = subprocess.run(
            [sys.executable, __file__, "--role", "publisher", "--nats-url", self.nats_url, "--robots", str(robots),
             "--topics", str(topics), "--rate", str(rate), "--duration", str(duration), "--kind", kind,
             "--prefix", prefix],
            capture_output=True, text=True, env=self.env, check=True,
        )  # fmt: skip
        sent = int(out.stdout.strip().splitlines()[-1])
        pub_s = time.monotonic() - t0
        settle(port, baseline_server)  # until the agent has worked through what NATS handed it
        cpu = sum(ps.cpu_times()[:2]) - cpu0
        node.stdin.close()
        res = json.loads(node.stdout.readline())
        node.wait(10)
        after = health(port) if not baseline_server else None
        delivered = sum(res["counts"])
        return {
            "sent": sent, "sent_per_s": sent / pub_s, "delivered": delivered, "expected": sent * clients,
            "delivered_per_s": delivered / pub_s, "p50_ms": res["p50"], "p99_ms": res["p99"], "max_ms": res["max"],
            "agent_drops": (after["hub"]["dropped"] - before["hub"]["dropped"]) if after and before else None,
            "lost": sent * clients - delivered, "agent_cpu_pct": 100 * cpu / (pub_s + 1.0),
        }  # fmt: skip

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def settle(port: int, baseline_server: bool, timeout: float = 30.0) -> None:
    if baseline_server:
        time.sleep(2.0)
        return
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        received = health(port)["hub"]["received"]
        if received == last:
            break
        last = received
        time.sleep(0.5)
    time.sleep(0.5)  # last frames on the wire


def health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as resp:  # loaded machines
        return json.loads(resp.read())


def fmt(name: str, r: dict) -> str:
    drops = "-" if r["agent_drops"] is None else str(r["agent_drops"])
    return (f"{name:<34} in {r['sent_per_s']:8.0f}/s  out {r['delivered_per_s']:9.0f}/s  lost {r['lost']:7d} "
            f"(agent drops {drops:>6})  p50 {r['p50_ms'] or 0:7.2f} ms  p99 {r['p99_ms'] or 0:8.2f} ms  "
            f"agent CPU {r['agent_cpu_pct']:5.0f}%")  # fmt: skip


def smoke() -> int:
    """The fleet path end to end, tiny: publisher -> nats-server -> ws_agent -> a client."""
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            agent, port = bench.agent()
            result = bench.run(port, agent, robots=2, topics=1, rate=10.0, clients=1, duration=2.0,
                               compression="none", kind="odom")  # fmt: skip
            print(fmt("smoke fleet 2x1x10Hz -> 1 none", result), flush=True)
        finally:
            bench.close()
    if not result["delivered_per_s"]:
        print("bench/ws_fanout.py: the fleet path delivered nothing", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", default="bench", choices=["bench", "publisher", "baseline"])
    ap.add_argument("--nats-url", default="")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--robots", type=int, default=50)
    ap.add_argument("--topics", type=int, default=5)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--kind", default="odom")
    ap.add_argument("--prefix", default="r")
    ap.add_argument("--quick", action="store_true", help="short runs (3 s) for a smoke check")
    ap.add_argument("--fleet-only", action="store_true", help="only the fleet scenarios")
    ap.add_argument("--smoke", action="store_true",
                    help="2 robots x 1 topic -> 1 client for 2 s (make test): fails if nothing is delivered")
    args = ap.parse_args()
    if args.smoke:
        return smoke()
    if args.role == "publisher":
        print(
            asyncio.run(
                publish(args.nats_url, args.robots, args.topics, args.rate, args.duration, args.kind, args.prefix)
            )
        )
        return 0
    if args.role == "baseline":
        baseline(args.nats_url, args.port)
        return 0
    duration = 3.0 if args.quick else args.duration
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        results: dict[str, dict] = {}
        try:
            agent, port = bench.agent()
            fleet = dict(robots=args.robots, topics=args.topics, rate=args.rate, clients=args.clients)
            for comp in ("none", "msgpack", "cbor"):
                name = f"fleet {args.robots}x{args.topics}x{args.rate:g}Hz -> {args.clients} {comp}"
                results[name] = bench.run(port, agent, **fleet, duration=duration, compression=comp, kind="odom")
                print(fmt(name, results[name]), flush=True)
            single = dict(robots=1, topics=1, clients=1, kind="small", queue_length=100)
            if args.fleet_only:
                return 0
            for comp in ("none", "msgpack"):
                for rate, label in ((0.0, "saturation"), (1000.0, "1000/s"), (3000.0, "3000/s")):
                    name = f"single 100B {label} ws_agent {comp}"
                    results[name] = bench.run(port, agent, **single, rate=rate, duration=duration, compression=comp)
                    print(fmt(name, results[name]), flush=True)
            for rate, label in ((0.0, "saturation"), (1000.0, "1000/s")):
                base, bport = bench.agent(baseline_server=True)  # fresh: it forwards everything it has queued
                name = f"single 100B {label} baseline json"
                results[name] = bench.run(bport, base, **single, rate=rate, duration=duration, compression="none",
                                          baseline_server=True)  # fmt: skip
                print(fmt(name, results[name]), flush=True)
                base.terminate()
                base.wait(10)
        finally:
            bench.close()
    fleet_json = results[next(k for k in results if k.startswith("fleet") and k.endswith("none"))]
    print("\nratios (same run):")
    for comp in ("msgpack", "cbor"):
        r = results[next(k for k in results if k.startswith("fleet") and k.endswith(comp))]
        print(f"  fleet {comp} / json: agent CPU {r['agent_cpu_pct'] / max(fleet_json['agent_cpu_pct'], 1e-9):.2f}x,"
              f" p99 {(r['p99_ms'] or 0) / max(fleet_json['p99_ms'] or 1e-9, 1e-9):.2f}x")  # fmt: skip
    sat = {k: v["delivered_per_s"] for k, v in results.items() if "saturation" in k}
    base_sat = sat["single 100B saturation baseline json"]
    for k, v in sat.items():
        print(f"  {k}: {v:.0f} msg/s = {v / max(base_sat, 1e-9):.2f}x baseline")
    print(json.dumps(results, indent=1), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
