"""One ~100 B std_msgs/String topic from an rclpy publisher to one WebSocket client, side by side:

  rosbridge   rclpy publisher -> rosbridge_websocket (rosbridge_suite, built by you outside the repo;
              only with --rosbridge-setup, otherwise that row is skipped and the run says so)
  ours        rclpy publisher -> nats_bridge (the real node, python -m robot_platform.bridge.node)
              -> nats-server -> ws_agent (python -m robot_platform.ws.standalone --mode robot)
  baseline    rclpy publisher -> a naive rclpy node: subscription callback -> json.dumps / cbor2.dumps
              -> ws.send inline (flask-sock), no queues

Each at saturation (the publisher as fast as it can), 3,000/s, 1,000/s and 100/s, for JSON text and CBOR
binary frames (compression "none" / "cbor" in the subscribe, which rosbridge and ws_agent both
speak), with the same client for every server (bench/ws_string_client.mjs, one Node connection).
Measured per scenario: offered and delivered msg/s, lost (sent - delivered), p50/p99 latency
publisher -> client (the stamp is in the string), server CPU (all of the path's server processes:
rosbridge_websocket | nats_bridge + nats-server + ws_agent | the baseline node), and CPU ms per
1,000 delivered messages.

Fairness: every path gets fresh processes and its own reserved ROS_DOMAIN_ID per scenario; the
ROS-side subscription is reliable with depth 10 everywhere (rosbridge's fixed choice; nats_bridge
configured the same); the client asks every server for the same queue_length (100 unless
--queue-length). A warm-up (``warm`` messages at 20 Hz until the client has seen three) proves the
whole path is live before measuring, so discovery and connection set-up are not counted as loss.
Delivered msg/s = delivered / (last receive - first publish), so a backlog drained after the
publisher stops counts at the rate it really arrived.

Every process binds 127.0.0.1; ROS processes get ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and the
reserved ROS_DOMAIN_ID; everything is stopped at the end of each scenario and on Ctrl-C/SIGTERM.

Usage:  . scripts/env.sh && python bench/ws_vs_rosbridge.py \
            [--rosbridge-setup /tmp/rosbridge_ws/install/setup.bash] [--runs 3] [--duration 10]
Needs:  nats-server on PATH, node, npm ci --prefix test/browser. rosbridge_suite is never fetched or
built by this script (see bench/RESULTS.md for how it was built by hand for a measurement).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src" / "robot_platform"
sys.path.insert(0, str(REPO / "test"))
sys.path.insert(1, str(SRC))
from helpers import free_port, wait_port  # noqa: E402  (the test harness's loopback port helpers)

TOPIC = "/bench"
TYPE = "std_msgs/msg/String"
ROBOT = "r1"
DATA_BYTES = 100
WARM_PERIOD_S = 0.05
WARM_NEEDED = 3
START_TIMEOUT_S = 60.0
SETTLE_QUIET_S = 1.0
SETTLE_TIMEOUT_S = 30.0
# 3000/s: above 5x the ~540 msg/s rosbridge_suite delivers at saturation (the target), offered
# at a steady rate, so loss there means the path cannot sustain 5x.
RATES = {"saturation": 0.0, "3000/s": 3000.0, "1000/s": 1000.0, "100/s": 100.0}
ENCODINGS = {"json": "none", "cbor": "cbor"}
PATHS = ("rosbridge", "ours", "baseline")

BRIDGE_PARAMS = """
/**/nats_bridge:
  ros__parameters:
    robot_id: {robot}
    nats_url: {url}
    metrics_port: 0
    health_period_s: 1.0
    discovery_period_s: 0.0
    events_stream: false
    out:
      names: [bench]
      bench: {{topic: {topic}, type: {type}, reliability: reliable, depth: 10}}
"""


# ------------------------------------------------------------------------------------ publisher role
def publisher(topic: str, rate: float, duration: float, size: int) -> None:
    """rclpy publisher: waits for a subscriber, sends warm-ups until told "go" on stdin, then measures.

    The data is "<sec> <nanosec> <seq> " padded with x to ``size`` characters: the client computes the
    latency from it without knowing the server.
    """
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    rclpy.init()
    node = rclpy.create_node("bench_publisher")
    pub = node.create_publisher(String, topic, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    go = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), go.set()), daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while pub.get_subscription_count() < 1:
        if time.monotonic() > deadline:
            raise SystemExit("no subscriber matched the bench topic")
        time.sleep(0.05)
    print("MATCHED", flush=True)
    msg = String()
    msg.data = "warm".ljust(size, "x")
    while not go.is_set():  # the parent bounds this wait
        pub.publish(msg)
        go.wait(WARM_PERIOD_S)
    pad = "x" * size
    sent = 0
    start_ns = time.time_ns()
    start = time.monotonic()
    end = start + duration
    if rate <= 0:
        while time.monotonic() < end:
            for _ in range(100):
                now = time.time_ns()
                head = f"{now // 1_000_000_000} {now % 1_000_000_000} {sent} "
                msg.data = head + pad[len(head) :]
                pub.publish(msg)
                sent += 1
    else:
        period = 1.0 / rate
        due = start
        while due < end:
            now = time.time_ns()
            head = f"{now // 1_000_000_000} {now % 1_000_000_000} {sent} "
            msg.data = head + pad[len(head) :]
            pub.publish(msg)
            sent += 1
            due = start + sent * period
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    elapsed = time.monotonic() - start
    print(json.dumps({"sent": sent, "start_ns": start_ns, "seconds": elapsed}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


# ------------------------------------------------------------------------------------ baseline role
def baseline(topic: str, port: int) -> None:
    """The naive server: the rclpy callback encodes and sends to every client inline, no queues."""
    import cbor2
    import rclpy
    from flask import Flask
    from flask_sock import ConnectionClosed, Sock
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String
    from werkzeug.serving import make_server

    app = Flask("baseline")
    sock = Sock(app)
    clients: dict[Any, str] = {}
    lock = threading.Lock()

    @sock.route("/")
    def ws(wsock: Any) -> None:
        while (text := wsock.receive()) is not None:
            req = json.loads(text)
            if req.get("op") == "subscribe" and req.get("topic") == topic:
                with lock:
                    clients[wsock] = req.get("compression", "none")
        with lock:
            clients.pop(wsock, None)

    def on_msg(msg: String) -> None:
        obj = {"op": "publish", "topic": topic, "msg": {"data": msg.data}}
        with lock:
            targets = list(clients.items())
        for c, comp in targets:
            try:
                c.send(cbor2.dumps(obj) if comp == "cbor" else json.dumps(obj))
            except (ConnectionError, OSError, ConnectionClosed):
                with lock:
                    clients.pop(c, None)

    rclpy.init()
    node = rclpy.create_node("bench_baseline")
    node.create_subscription(String, topic, on_msg, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    server = make_server("127.0.0.1", port, app, threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown()


# ------------------------------------------------------------------------------------ orchestration
class Procs:
    """Child processes of one scenario, each in its own session (Ctrl-C reaches only the bench, which
    then stops them in reverse start order: SIGINT, then SIGTERM, then SIGKILL)."""

    def __init__(self, logdir: Path, prefix: str) -> None:
        self.logdir = logdir
        self.prefix = prefix
        self.procs: list[tuple[str, subprocess.Popen[str]]] = []
        self.logs: list[Any] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], pipes: bool = False) -> subprocess.Popen[str]:
        log = open(self.logdir / f"{self.prefix}_{len(self.procs)}_{name}.log", "w")  # noqa: SIM115 - closed in stop
        self.logs.append(log)
        proc = subprocess.Popen(
            argv, env=env, text=True, start_new_session=True,
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipes else log, stderr=log,
        )  # fmt: skip
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        for sig, wait_s in ((signal.SIGINT, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            live = [p for _, p in reversed(self.procs) if p.poll() is None]
            for p in live:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(sig)
            deadline = time.monotonic() + wait_s
            for p in live:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(max(0.0, deadline - time.monotonic()))
        for _, p in self.procs:
            for stream in (p.stdin, p.stdout):
                if stream is not None:
                    stream.close()
        for log in self.logs:
            log.close()
        self.procs.clear()
        self.logs.clear()


def read_line(proc: subprocess.Popen[str], timeout: float, what: str) -> str:
    """One stdout line of ``proc`` within ``timeout`` (its stdout is a pipe)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        raise RuntimeError(f"no {what} within {timeout:.0f} s (exit code {proc.poll()})")
    return line.strip()


def wait_listening(proc: subprocess.Popen[str], port: int) -> None:
    """Until ``proc`` accepts connections on 127.0.0.1:``port``; fails at once if it exits."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with code {proc.returncode} before listening")
        try:
            wait_port(port, timeout=0.5)
            return
        except TimeoutError:
            continue
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {START_TIMEOUT_S:.0f} s")


def ask(client: subprocess.Popen[str], command: str = "count", timeout: float = 10.0) -> dict[str, Any]:
    assert client.stdin is not None
    client.stdin.write(command + "\n")
    client.stdin.flush()
    return json.loads(read_line(client, timeout, f"client answer to {command!r}"))


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    import psutil

    out = {}
    for name, pid in pids.items():
        t = psutil.Process(pid).cpu_times()
        out[name] = t.user + t.system + t.children_user + t.children_system
    return out


def healthz_dropped(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        return int(json.loads(resp.read())["hub"]["dropped"])


def sourced_env(setup: str, base: dict[str, str]) -> dict[str, str]:
    """The environment after sourcing a colcon setup.bash (or a prefix's setup.bash) on top of ``base``."""
    path = Path(setup)
    if path.is_dir():
        path = next((path / n for n in ("setup.bash", "local_setup.bash") if (path / n).is_file()), path)
    if not path.is_file():
        raise SystemExit(f"--rosbridge-setup: no setup.bash at {setup}")
    out = subprocess.run(["bash", "-c", '. "$1" >/dev/null 2>&1 && env -0', "bench", str(path)],
                         env=base, capture_output=True, check=True)  # fmt: skip
    return dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)


def rosbridge_exe(env: dict[str, str]) -> str:
    for prefix in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        exe = Path(prefix) / "lib" / "rosbridge_server" / "rosbridge_websocket"
        if prefix and exe.is_file():
            return str(exe)
    raise SystemExit("rosbridge_server/rosbridge_websocket not found on the sourced AMENT_PREFIX_PATH")


class Bench:
    def __init__(self, args: argparse.Namespace, logdir: Path) -> None:
        self.args = args
        self.logdir = logdir
        self.base_env = dict(os.environ, PYTHONUNBUFFERED="1",
                             PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")  # fmt: skip
        self.rosbridge_env = sourced_env(args.rosbridge_setup, self.base_env) if args.rosbridge_setup else None
        self.nats = shutil.which("nats-server") or "nats-server"
        self.count = 0

    def ros_env(self, base: dict[str, str], domain: int) -> dict[str, str]:
        return dict(base, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")

    def servers(self, path: str, procs: Procs, domain: int) -> tuple[str, dict[str, int], int | None]:
        """Start the path's server processes; returns the WebSocket URL, {name: pid} and ws_agent's port."""
        py = sys.executable
        env = self.ros_env(self.base_env, domain)
        port = free_port()
        if path == "rosbridge":
            assert self.rosbridge_env is not None
            renv = self.ros_env(self.rosbridge_env, domain)
            p = procs.start("rosbridge", [py, rosbridge_exe(renv), "--ros-args", "-p", f"port:={port}",
                                          "-p", "address:=127.0.0.1"], renv)  # fmt: skip
            wait_listening(p, port)
            return f"ws://127.0.0.1:{port}/", {"rosbridge_websocket": p.pid}, None
        if path == "baseline":
            p = procs.start("baseline", [py, __file__, "--role", "baseline", "--port", str(port)], env)
            wait_listening(p, port)
            return f"ws://127.0.0.1:{port}/", {"baseline": p.pid}, None
        nats_port = free_port()
        url = f"nats://127.0.0.1:{nats_port}"
        nats = procs.start("nats-server", [self.nats, "-a", "127.0.0.1", "-p", str(nats_port)], env)
        wait_listening(nats, nats_port)
        params = self.logdir / f"bridge{self.count}.yaml"
        params.write_text(BRIDGE_PARAMS.format(robot=ROBOT, url=url, topic=TOPIC, type=TYPE))
        bridge = procs.start("nats_bridge", [py, "-m", "robot_platform.bridge.node", "--ros-args",
                                             "--params-file", str(params)], env)  # fmt: skip
        agent = procs.start("ws_agent", [py, "-m", "robot_platform.ws.standalone", "--mode", "robot",
                                         "--robot-id", ROBOT, "--port", str(port), "--nats-url", url,
                                         "--anonymous-role", "viewer", "--max-client-msgs-per-s", "0",
                                         "--log-level", "WARNING"], env)  # fmt: skip
        wait_listening(agent, port)
        if bridge.poll() is not None:
            raise RuntimeError(f"nats_bridge exited with code {bridge.returncode}")
        pids = {"nats_bridge": bridge.pid, "nats-server": nats.pid, "ws_agent": agent.pid}
        return f"ws://127.0.0.1:{port}/ws", pids, port

    def scenario(self, path: str, encoding: str, rate: float) -> dict[str, Any]:
        from robot_platform.launcher.domains import DomainReservation

        self.count += 1
        domain = DomainReservation()
        procs = Procs(self.logdir, f"s{self.count:03d}_{path}_{encoding}")
        try:
            url, pids, agent_port = self.servers(path, procs, domain.domain_id)
            client = procs.start("client", ["node", str(REPO / "bench" / "ws_string_client.mjs"), url, TOPIC, TYPE,
                                            ENCODINGS[encoding], str(self.args.queue_length)],
                                 self.base_env, pipes=True)  # fmt: skip
            if read_line(client, START_TIMEOUT_S, "client READY") != "READY":
                raise RuntimeError("client did not connect")
            pub = procs.start("publisher", [sys.executable, __file__, "--role", "publisher", "--rate", str(rate),
                                            "--duration", str(self.args.duration), "--size", str(DATA_BYTES)],
                              self.ros_env(self.base_env, domain.domain_id), pipes=True)  # fmt: skip
            if read_line(pub, START_TIMEOUT_S, "publisher MATCHED") != "MATCHED":
                raise RuntimeError("publisher did not match a subscriber")
            deadline = time.monotonic() + START_TIMEOUT_S
            while ask(client)["warm"] < WARM_NEEDED:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{path}: warm-up messages never reached the client")
                time.sleep(0.1)
            drops0 = healthz_dropped(agent_port) if agent_port else None
            cpu0 = cpu_seconds(pids)
            assert pub.stdin is not None
            pub.stdin.write("go\n")
            pub.stdin.flush()
            sent = json.loads(read_line(pub, self.args.duration + START_TIMEOUT_S, "publisher result"))
            last, quiet_since = -1, time.monotonic()
            settle_deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while time.monotonic() < settle_deadline:  # until delivery has stopped for SETTLE_QUIET_S
                n = ask(client)["count"]
                if n != last:
                    last, quiet_since = n, time.monotonic()
                elif time.monotonic() - quiet_since >= SETTLE_QUIET_S:
                    break
                time.sleep(0.2)
            cpu1 = cpu_seconds(pids)
            drops = healthz_dropped(agent_port) - drops0 if agent_port and drops0 is not None else None
            res = ask(client, "end")
        finally:
            procs.stop()
            domain.release()
        start_ms = sent["start_ns"] / 1e6
        active_s = max(sent["seconds"], ((res["last_rx_ms"] or start_ms) - start_ms) / 1e3)
        cpu = {k: cpu1[k] - cpu0[k] for k in pids}
        total_cpu = sum(cpu.values())
        return {
            "path": path, "encoding": encoding, "rate": rate, "sent": sent["sent"],
            "offered_per_s": sent["sent"] / sent["seconds"], "delivered": res["count"],
            "delivered_per_s": res["count"] / active_s, "lost": sent["sent"] - res["count"],
            "loss_pct": 100.0 * (sent["sent"] - res["count"]) / max(sent["sent"], 1),
            "p50_ms": res["p50"], "p99_ms": res["p99"], "max_ms": res["max"], "out_of_order": res["out_of_order"],
            "server_cpu_pct": 100.0 * total_cpu / active_s,
            "cpu_pct_by_process": {k: round(100.0 * v / active_s, 1) for k, v in cpu.items()},
            "cpu_ms_per_1k": 1e6 * total_cpu / max(res["count"], 1), "agent_drops": drops,
        }  # fmt: skip


def label(rate: float) -> str:
    return next(k for k, v in RATES.items() if v == rate)


def row(r: dict[str, Any]) -> str:
    p50 = "-" if r["p50_ms"] is None else f"{r['p50_ms']:.2f}"
    p99 = "-" if r["p99_ms"] is None else f"{r['p99_ms']:.2f}"
    return (f"{r['path']:<9} {r['encoding']:<4} {label(r['rate']):>10}  offered {r['offered_per_s']:8.0f}/s  "
            f"delivered {r['delivered_per_s']:8.0f}/s  lost {r['lost']:7d} ({r['loss_pct']:5.1f}%)  "
            f"p50 {p50:>8} ms  p99 {p99:>8} ms  server CPU {r['server_cpu_pct']:4.0f}% "
            f"({r['cpu_ms_per_1k']:6.1f} ms/1k msg)"
            + (f"  [{' '.join(f'{k} {v:.0f}%' for k, v in r['cpu_pct_by_process'].items())}; "
               f"ws_agent drops {r['agent_drops']}]" if r["path"] == "ours" else ""))  # fmt: skip


def median_rows(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    keys = ("offered_per_s", "delivered_per_s", "lost", "loss_pct", "p50_ms", "p99_ms", "server_cpu_pct",
            "cpu_ms_per_1k")  # fmt: skip
    out = []
    for first in runs[0]:
        same = [r for run in runs for r in run if (r["path"], r["encoding"], r["rate"]) ==
                (first["path"], first["encoding"], first["rate"])]  # fmt: skip
        med = dict(first)
        for k in keys:
            vals = [r[k] for r in same if r[k] is not None]
            med[k] = statistics.median(vals) if vals else None
        med["lost"] = int(med["lost"])
        med["cpu_pct_by_process"] = {k: statistics.median(r["cpu_pct_by_process"][k] for r in same)
                                     for k in first["cpu_pct_by_process"]}  # fmt: skip
        drops = [r["agent_drops"] for r in same if r["agent_drops"] is not None]
        med["agent_drops"] = int(statistics.median(drops)) if drops else None
        out.append(med)
    return out


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    by = {(r["path"], r["encoding"], r["rate"]): r for r in rows}
    lines = []
    for enc in ENCODINGS:
        for name, rate in RATES.items():
            ours = by.get(("ours", enc, rate))
            if ours is None:
                continue
            for other in ("rosbridge", "baseline"):
                o = by.get((other, enc, rate))
                if o is None:
                    continue
                lines.append(
                    f"  {enc:<4} {name:>10}: delivered ours/{other} "
                    f"{ours['delivered_per_s'] / max(o['delivered_per_s'], 1e-9):6.2f}x, "
                    f"lost {ours['lost']} vs {o['lost']}, "
                    f"CPU per msg ours/{other} {ours['cpu_ms_per_1k'] / max(o['cpu_ms_per_1k'], 1e-9):.2f}x"
                )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", default="bench", choices=["bench", "publisher", "baseline"])
    ap.add_argument(
        "--rosbridge-setup",
        default="",
        help="setup.bash (or install prefix) of a rosbridge_suite workspace built outside the repo",
    )
    ap.add_argument("--runs", type=int, default=1, help="repeat the whole set; prints each run and the median")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of publishing per scenario")
    ap.add_argument("--queue-length", type=int, default=100, help="queue_length of the client's subscribe")
    ap.add_argument("--paths", default=",".join(PATHS), help="comma list of rosbridge,ours,baseline")
    ap.add_argument("--encodings", default=",".join(ENCODINGS), help="comma list of json,cbor")
    ap.add_argument("--rates", default=",".join(RATES), help="comma list of saturation,1000/s,100/s")
    ap.add_argument("--json", default="", help="also write every result to this file")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--size", type=int, default=DATA_BYTES)
    ap.add_argument("--smoke", action="store_true",
                    help="ours and the baseline, JSON at 100/s for 2 s (make test): fails if a path delivers nothing")
    args = ap.parse_args()
    if args.smoke:
        args.paths, args.encodings, args.rates, args.duration, args.runs = "ours,baseline", "json", "100/s", 2.0, 1
    if args.role == "publisher":
        publisher(TOPIC, args.rate, args.duration, args.size)
        return 0
    if args.role == "baseline":
        baseline(TOPIC, args.port)
        return 0
    paths = [p for p in args.paths.split(",") if p]
    if "rosbridge" in paths and not args.rosbridge_setup:
        print(
            "NOTE: rosbridge row skipped: pass --rosbridge-setup <rosbridge_ws>/install/setup.bash (a "
            "rosbridge_suite workspace built outside this repo) to measure it side by side.",
            flush=True,
        )
        paths.remove("rosbridge")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    runs: list[list[dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="ws_vs_rosbridge_") as tmp:
        bench = Bench(args, Path(tmp))
        try:
            for run in range(args.runs):
                load0 = os.getloadavg()
                print(f"\n== run {run + 1}/{args.runs}  load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}",
                      flush=True)  # fmt: skip
                results = []
                for enc in args.encodings.split(","):
                    for name in args.rates.split(","):
                        for path in paths:
                            r = bench.scenario(path, enc, RATES[name])
                            results.append(r)
                            print(row(r), flush=True)
                load1 = os.getloadavg()
                print(f"   load average after the run {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}", flush=True)
                runs.append(results)
                print("\n".join(ratios(results)), flush=True)
                empty = [f"{r['path']} {r['encoding']} {r['rate']}" for r in results if not r["delivered"]]
                if empty:
                    print(f"bench/ws_vs_rosbridge.py: delivered nothing: {empty}", file=sys.stderr)
                    return 1
        except KeyboardInterrupt:
            print("interrupted: every process of the scenario was stopped", file=sys.stderr)
            return 130
        except Exception:
            print(f"logs of the failed scenario: {tmp} (kept until exit)", file=sys.stderr)
            for log in sorted(Path(tmp).glob(f"s{bench.count:03d}_*.log")):
                print(f"--- {log.name}\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise
    if args.runs > 1:
        med = median_rows(runs)
        print(f"\n== median of {args.runs} runs")
        for r in med:
            print(row(r))
        print("\n".join(ratios(med)))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
