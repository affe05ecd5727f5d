"""What the platform costs a robot: CPU and memory of the robot agent, beside a bare rclpy subscriber.

On a robot the platform is a guest next to navigation and perception, so its own share of the computer is
a figure users weigh. This starts the real robot agent (``bin/robot-platform robot``: the launch plan the
launch files use, its own nats-server, ROS_DOMAIN_ID reserved, discovery LOCALHOST, every port loopback)
and measures, over a window after it has settled:

* **idle**: the agent without the simulator (no telemetry, no browser connected);
* **telemetry**: the agent with robot_sim at its defaults (odom 20 Hz, imu 50 Hz, scan 10 Hz, battery
  1 Hz); robot_sim is measured but not counted as the platform;
* **baseline** (same run): robot_sim plus one bare rclpy process subscribing the same four topics (what a
  rosbridge_websocket-like process must at least do), the anchor the targets are ratios against.

Per process: CPU as % of one core (utime+stime from /proc/<pid>/stat over the window), RSS and PSS
(/proc/<pid>/smaps_rollup) at the window's end. nats-server (native) is shown apart from the Python nodes.
``--layouts`` takes the agent layouts to compare: ``single`` (every agent node in one process, the default)
and ``split`` (one process per node: ``--agent-layout split``).

``--demo N`` measures instead the whole ``robot-platform demo --robots N`` (control server, N robots with
their simulators, SeaweedFS, Mosquitto, Prometheus: what ``make demo ROBOTS=N`` runs): the total CPU of
every process it started, over a window after its "all up" banner and a settle time, as a share of the
whole machine; then it stops the demo with SIGTERM. Its bare subscriber baseline runs in the same run.

    . scripts/env.sh && python bench/footprint.py                     # 20 s settle, 30 s window each
    python bench/footprint.py --smoke                                  # short: does it all work?
    python bench/footprint.py --layouts single --phases telemetry --params-file my_robot.yaml   # A/B a setting
    python bench/footprint.py --demo 6                                 # the 6-robot demo at idle, 60 s window
    python bench/footprint.py --demo 1 --smoke                         # short: does the demo measure work?
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The built interfaces (install/) next to the code under test, whatever PYTHONPATH the caller set
# (`PYTHONPATH=src/robot_platform`, as RESULTS.md runs benchmarks, replaces env.sh's), for this process
# and every process it starts.
_INTERFACES = [
    str(p) for p in sorted((REPO / "install" / "robot_platform_interfaces" / "lib").glob("python3*/site-packages"))
]
# The agent's entry points need the installed package's metadata (after the caller's PYTHONPATH, so the
# code under test still wins).
_INSTALLED = [str(p) for p in sorted((REPO / "install" / "robot_platform" / "lib").glob("python3*/site-packages"))]
sys.path[:0] = [str(REPO / "test"), *_INTERFACES]
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in [*_INTERFACES, os.environ.get("PYTHONPATH", ""), *_INSTALLED] if p
)
from helpers import free_demo_base, free_port  # noqa: E402
from robot_platform.launcher.domains import DomainReservation  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
LAYOUT_ARGS = {"single": ["--agent-layout", "single"], "split": ["--agent-layout", "split"]}

BARE_SUBSCRIBER = textwrap.dedent(
    """
    import rclpy
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import BatteryState, Imu, LaserScan

    rclpy.init()
    node = rclpy.create_node("bare_subscriber")
    count = [0]
    def on_msg(_msg):
        count[0] += 1
    node.create_subscription(Odometry, "odom", on_msg, QoSProfile(depth=10))
    node.create_subscription(Imu, "imu", on_msg, qos_profile_sensor_data)
    node.create_subscription(LaserScan, "scan", on_msg, qos_profile_sensor_data)
    node.create_subscription(BatteryState, "battery_state", on_msg, QoSProfile(depth=10))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    print(f"bare_subscriber received {count[0]} messages", flush=True)
    """
)


@dataclass
class Sample:
    name: str
    cpu_pct: float
    rss_mb: float
    pss_mb: float


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def memory_mb(pid: int) -> tuple[float, float]:
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key == "Rss":
            rss = int(rest.split()[0])
        elif key == "Pss":
            pss = int(rest.split()[0])
    return rss / 1024, pss / 1024


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def process_name(pid: int) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    words = [a.decode(errors="replace") for a in argv if a]
    for word in words:
        if word.startswith("__node:="):
            return word.split(":=", 1)[1]
    if words and words[0].endswith("nats-server"):
        return "nats-server"
    if any(Path(word).name == "robot_agent_all" for word in words[:2]):  # the single layout's one process
        return "robot_agent_all"
    if "-c" in words and words[-1:] and "bare_subscriber" in " ".join(words):
        return "bare_subscriber"
    if len(words) > 2 and words[1] == "-m":
        return words[2].rsplit(".", 1)[-1] if words[2] != "robot_platform.cli.main" else "runner (robot-platform)"
    return Path(words[0]).name if words else str(pid)


def measure(pids: list[int], window_s: float) -> list[Sample]:
    """CPU over ``window_s`` and memory at its end for each live pid."""
    start, t0 = {}, time.monotonic()
    for pid in pids:
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            start[pid] = (cpu_ticks(pid), process_name(pid))
    time.sleep(window_s)
    elapsed = time.monotonic() - t0
    out = []
    for pid, (ticks, name) in start.items():
        try:
            used = (cpu_ticks(pid) - ticks) / CLK_TCK
            rss, pss = memory_mb(pid)
        except OSError:
            continue
        out.append(Sample(name, 100.0 * used / elapsed, rss, pss))
    return sorted(out, key=lambda s: s.name)


class Robot:
    """``bin/robot-platform robot`` in its own process group, every port on loopback."""

    def __init__(self, tmp: Path, domain: int, use_sim: bool, layout: str, params_file: str = "") -> None:
        ports = {k: free_port() for k in ("nats", "monitor", "leaf", "ws", "metrics", "bridge")}
        argv = [
            str(REPO / "bin" / "robot-platform"), "robot", "--robot-id", "r1", "--use-sim", str(use_sim).lower(),
            "--nats-port", str(ports["nats"]), "--nats-monitor-port", str(ports["monitor"]),
            "--hub-leaf-url", f"nats-leaf://127.0.0.1:{ports['leaf']}", "--nats-store-dir", str(tmp / "js"),
            "--ws-port", str(ports["ws"]), "--metrics-port", str(ports["metrics"]),
            "--bridge-metrics-port", str(ports["bridge"]), *LAYOUT_ARGS[layout],
        ]  # fmt: skip
        if params_file:
            argv += ["--params-file", params_file]
        self.log = open(tmp / f"robot-{layout}-{'sim' if use_sim else 'idle'}.log", "wb")  # noqa: SIM115
        self.popen = subprocess.Popen(argv, env=ros_env(domain), stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)  # fmt: skip

    def stop(self) -> None:
        stop_group(self.popen)
        self.log.close()


def ros_env(domain: int) -> dict[str, str]:
    return {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def stop_group(popen: subprocess.Popen) -> None:
    if popen.poll() is None:
        os.killpg(popen.pid, signal.SIGINT)
        try:
            popen.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(5)


def run_agent(
    tmp: Path, domain: int, use_sim: bool, layout: str, settle_s: float, window_s: float, params_file: str = ""
) -> list[Sample]:
    robot = Robot(tmp, domain, use_sim, layout, params_file)
    try:
        time.sleep(settle_s)
        if robot.popen.poll() is not None:
            robot.log.flush()
            tail = Path(robot.log.name).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"robot agent ({layout}) exited with {robot.popen.returncode}:\n{tail}")
        return measure(descendants(robot.popen.pid), window_s)
    finally:
        robot.stop()


def run_baseline(tmp: Path, domain: int, settle_s: float, window_s: float) -> list[Sample]:
    env = ros_env(domain)
    sim = subprocess.Popen([sys.executable, "-m", "robot_platform.sim.node", "--ros-args", "-r", "__node:=robot_sim",
                            "-p", "robot_id:=r1"], env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    bare = subprocess.Popen([sys.executable, "-c", BARE_SUBSCRIBER, "bare_subscriber"], env=env,
                            start_new_session=True, stdout=open(tmp / "bare.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115  # fmt: skip
    try:
        time.sleep(settle_s)
        return measure([sim.pid, bare.pid], window_s)
    finally:
        stop_group(bare)
        stop_group(sim)


def platform_total(samples: list[Sample]) -> Sample:
    mine = [s for s in samples if s.name not in ("robot_sim",)]
    return Sample("platform total", sum(s.cpu_pct for s in mine), sum(s.rss_mb for s in mine),
                  sum(s.pss_mb for s in mine))  # fmt: skip


def table(title: str, samples: list[Sample], total: bool = True) -> str:
    rows = [f"{title}", f"  {'process':28s} {'CPU % core':>10s} {'RSS MB':>8s} {'PSS MB':>8s}"]
    for s in [*samples, platform_total(samples)] if total else samples:
        rows.append(f"  {s.name:28s} {s.cpu_pct:10.1f} {s.rss_mb:8.1f} {s.pss_mb:8.1f}")
    return "\n".join(rows)


def runner_offers(layout: str) -> bool:
    out = subprocess.run([str(REPO / "bin" / "robot-platform"), "robot", "--help"], capture_output=True, text=True)
    return LAYOUT_ARGS[layout][0] in out.stdout


DEMO_BOOT_TIMEOUT_S = 240.0


def run_demo(tmp: Path, robots: int, settle_s: float, window_s: float) -> list[Sample]:
    """``robot-platform demo --robots N`` on free ports and its own ROS domains (as test/test_demo.py starts
    it): wait for its banner ("all up"), settle, measure every process it started, stop it with SIGTERM."""
    block = DomainReservation(count=robots + 1)
    hub = free_port()
    base = free_demo_base(robots)
    argv = [
        str(REPO / "bin" / "robot-platform"), "demo", "--robots", str(robots), "--state-dir", str(tmp / "demo"),
        "--hub-port", str(hub), "--hub-monitor-port", str(free_port()), "--leaf-port", str(free_port()),
        "--robot-port-base", str(base), "--robot-monitor-base", str(base + 100),
        "--domain-base", str(block.domain_id), "--metrics-base", str(base + 200),
        "--bridge-metrics-base", str(base + 300), "--console-port", str(free_port()),
        "--panel-port-base", str(base + 400), "--mqtt-port", str(free_port()), "--s3-port", str(free_port()),
        "--weed-port-base", str(base + 500), "--control-bridge-metrics-port", str(free_port()),
        "--jobs-metrics-port", str(free_port()), "--prometheus-port", str(free_port()),
    ]  # fmt: skip
    log_path = tmp / "demo.log"
    with open(log_path, "wb") as log:
        demo = subprocess.Popen(argv, env={**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + DEMO_BOOT_TIMEOUT_S
            while b"robot_platform demo: control server" not in log_path.read_bytes():  # the banner
                if demo.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    logs = sorted((tmp / "demo" / "logs").glob("*agent*"))  # the robots' agent processes
                    tail += "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in logs[:2])
                    raise RuntimeError(f"the demo did not come up (exit {demo.poll()}):\n{tail}")
                time.sleep(1.0)
            if b"all up" not in log_path.read_bytes():  # measured anyway, but said
                print("demo banner: SOME PARTS FAILED (see its log); measuring what runs", flush=True)
            time.sleep(settle_s)
            return measure(descendants(demo.pid), window_s)
        finally:
            if demo.poll() is None:
                demo.send_signal(signal.SIGTERM)  # the demo stops everything it started
                try:
                    demo.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(demo.pid, signal.SIGKILL)
                    demo.wait(5)
            block.release()


def demo_table(robots: int, samples: list[Sample]) -> str:
    """Processes grouped by name (N robots: N of each robot process), the total as % of the machine."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.name, []).append(s)
    rows = [f"demo --robots {robots}, idle (no browser)",
            f"  {'process (count)':34s} {'CPU % core':>10s} {'RSS MB':>8s}"]  # fmt: skip
    for name, group in sorted(groups.items(), key=lambda kv: -sum(s.cpu_pct for s in kv[1])):
        rows.append(f"  {f'{name} ({len(group)})':34s} {sum(s.cpu_pct for s in group):10.1f} "
                    f"{sum(s.rss_mb for s in group):8.1f}")  # fmt: skip
    cpu = sum(s.cpu_pct for s in samples)
    rows.append(f"  {'total':34s} {cpu:10.1f} {sum(s.rss_mb for s in samples):8.1f}")
    rows.append(f"demo total: {cpu:.1f} % of one core = {cpu / (os.cpu_count() or 1):.1f} % of the "
                f"{os.cpu_count()}-core machine")  # fmt: skip
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settle-s", type=float, default=20.0, help="wait after start before measuring")
    ap.add_argument("--window-s", type=float, default=30.0, help="CPU is averaged over this window")
    ap.add_argument("--layouts", default="split,single", help="agent layouts to measure (split, single)")
    ap.add_argument(
        "--demo",
        type=int,
        default=0,
        metavar="N",
        help="measure `robot-platform demo --robots N` at idle instead of one robot's agent",
    )
    ap.add_argument("--phases", default="idle,telemetry", help="agent phases to measure (idle, telemetry)")
    ap.add_argument("--params-file", default="", help="robot parameters YAML instead of the installed robot.yaml (A/B)")
    ap.add_argument("--smoke", action="store_true", help="5 s settle, 2 s windows, single layout with telemetry only")
    args = ap.parse_args()
    if args.demo and not args.smoke and "--window-s" not in sys.argv:
        args.window_s = 60.0
    if args.smoke:
        args.settle_s, args.window_s, args.layouts, args.phases = 5.0, 2.0, "single", "telemetry"
    layouts = [x for x in args.layouts.split(",") if x]
    unknown = [x for x in layouts if x not in LAYOUT_ARGS]
    if unknown:
        ap.error(f"unknown layout(s) {unknown}: choose from {sorted(LAYOUT_ARGS)}")
    print(f"# footprint: settle {args.settle_s:.0f} s, window {args.window_s:.0f} s, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    domain = DomainReservation()
    results: dict[str, Sample] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="rp-footprint-") as tmp_name:
            tmp = Path(tmp_name)
            base = run_baseline(tmp, domain.domain_id, args.settle_s, args.window_s)
            title = "baseline: robot_sim + one bare rclpy subscriber of the same topics"
            print(table(title, base, total=False), flush=True)
            bare = next(s for s in base if s.name == "bare_subscriber")
            if args.demo:
                samples = run_demo(tmp, args.demo, args.settle_s, args.window_s)
                print("\n" + demo_table(args.demo, samples), flush=True)
                print(f"load at end {os.getloadavg()[0]:.2f}")
                return 0 if samples else 1
            for layout in layouts:
                if not runner_offers(layout):
                    print(f"\nlayout {layout}: not offered by this runner ({' '.join(LAYOUT_ARGS[layout])})")
                    continue
                for phase in ("idle", "telemetry"):
                    if phase not in args.phases.split(","):
                        continue
                    samples = run_agent(tmp, domain.domain_id, phase == "telemetry", layout, args.settle_s,
                                        args.window_s, args.params_file)  # fmt: skip
                    print("\n" + table(f"agent {layout}, {phase}", samples), flush=True)
                    results[f"{layout}/{phase}"] = platform_total(samples)
            print(f"\nload at end {os.getloadavg()[0]:.2f}")
            print(f"{'layout/phase':22s} {'CPU %':>7s} {'RSS MB':>8s} {'PSS MB':>8s} {'CPU/bare':>9s} {'RSS/bare':>9s}")
            for key, total in results.items():
                print(f"{key:22s} {total.cpu_pct:7.1f} {total.rss_mb:8.1f} {total.pss_mb:8.1f} "
                      f"{total.cpu_pct / max(bare.cpu_pct, 0.1):9.1f} {total.rss_mb / bare.rss_mb:9.1f}")  # fmt: skip
            print(f"{'bare subscriber':22s} {bare.cpu_pct:7.1f} {bare.rss_mb:8.1f} {bare.pss_mb:8.1f}")
    finally:
        domain.release()
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
