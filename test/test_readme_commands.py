"""Every command README.md and the demo banner print works against a running demo.

The commands are found mechanically: each ```bash block of README.md is preceded by a marker,
``<!-- commands: run -->`` (every line is run) or ``<!-- commands: exempt - <why> -->``; an unmarked
block fails this test, so a newly documented command is either run here or exempted with its reason.
The banner marks each command it prints with ``$ ``. One two-robot demo on free ports runs them all;
the README's default ports (DemoLayout's) are mapped to the demo's actual ones, and the commands run in a
scratch directory where ``bin``, ``examples``, ``config`` and ``.state/demo`` point at the real ones.
Each command's time is printed (``pytest -s``) and written to ``test-results/readme_commands.txt``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from helpers import REPO, free_demo_base, free_port, wait_for
from robot_platform.demo.check import COMMAND_MARK
from robot_platform.demo.fleet import DemoLayout
from robot_platform.demo.site_services import SitePorts
from robot_platform.launcher.domains import DomainReservation
from robot_platform.launcher.supervisor import ProcessGroup

ROBOTS = 2
COMMAND_TIMEOUT_S = 180
DEMO_STOP_TIMEOUT_S = 60
MARKER_RE = re.compile(r"^<!-- commands: (run|exempt - (?P<why>.+\S)) -->$")
RESULTS = REPO / "test-results" / "readme_commands.txt"


@dataclass(frozen=True)
class Command:
    text: str
    where: str  # README.md:<line> or banner


def readme_commands(readme: str) -> tuple[list[Command], list[str]]:
    """Commands of the ``run`` blocks, and the problems (unmarked blocks, exemptions without a reason)."""
    lines = readme.splitlines()
    commands: list[Command] = []
    problems: list[str] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("```bash"):
            i += 1
            continue
        start = i
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER_RE.match(previous)
        if marker is None:
            problems.append(f"README.md:{start + 1}: bash block without a `<!-- commands: run|exempt - why -->` marker")
        i += 1
        block: list[tuple[int, str]] = []
        while i < len(lines) and not lines[i].startswith("```"):
            block.append((i + 1, lines[i]))
            i += 1
        i += 1
        if marker is None or marker.group(1) != "run":
            continue
        pending, first = "", 0
        for number, line in block:
            if not pending:
                first = number
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            text = (pending + line).strip()
            pending = ""
            if text and not text.startswith("#"):
                commands.append(Command(text, f"README.md:{first}"))
    return commands, problems


def banner_commands(banner: str) -> list[Command]:
    return [Command(line.split(COMMAND_MARK, 1)[1].strip(), "banner") for line in banner.splitlines()
            if COMMAND_MARK in line]  # fmt: skip


def test_every_readme_bash_block_is_marked() -> None:
    commands, problems = readme_commands((REPO / "README.md").read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)
    assert commands, "no README command is run at all"


@pytest.fixture
def domains() -> Iterator[int]:
    block = DomainReservation(count=ROBOTS + 1)
    try:
        yield block.domain_id
    finally:
        block.release()


def _port_map(actual: DemoLayout) -> dict[str, str]:
    """README/banner defaults (DemoLayout()) -> this demo's ports and domains."""
    default = DemoLayout()
    pairs = [(default.hub_port, actual.hub_port), (default.hub_monitor_port, actual.hub_monitor_port),
             (default.console_port, actual.console_port), (default.prometheus_port, actual.prometheus_port),
             (default.site_ports.s3, actual.site_ports.s3), (default.site_ports.mqtt, actual.site_ports.mqtt)]
    for i in range(1, 4):
        pairs += [(default.robot_port_base + i, actual.robot_port_base + i),
                  (default.metrics_base + i, actual.metrics_base + i),
                  (default.panel_port_base + i, actual.panel_port_base + i)]  # fmt: skip
    out = {f"127.0.0.1:{a}": f"127.0.0.1:{b}" for a, b in pairs}
    out |= {f"ROS_DOMAIN_ID={default.domain(i)}": f"ROS_DOMAIN_ID={actual.domain(i)}" for i in range(1, 4)}
    out |= {f"--domain {default.domain(i)}": f"--domain {actual.domain(i)}" for i in range(1, 4)}
    return out


def _localize(text: str, mapping: dict[str, str]) -> str:
    pattern = re.compile("|".join(re.escape(k) + r"(?!\d)" for k in sorted(mapping, key=len, reverse=True)))
    return pattern.sub(lambda m: mapping[m.group(0)], text)


def test_readme_and_banner_commands_work_against_the_demo(procs: ProcessGroup, domains: int, tmp_path: Path) -> None:
    base = free_demo_base(ROBOTS)
    layout = DemoLayout(
        robots=ROBOTS, state_dir=tmp_path / "demo", hub_port=free_port(), hub_monitor_port=free_port(),
        leaf_port=free_port(), robot_port_base=base, robot_monitor_base=base + 100, metrics_base=base + 200,
        bridge_metrics_base=base + 300, console_port=free_port(), panel_port_base=base + 400,
        domain_base=domains, control_bridge_metrics_port=free_port(), jobs_metrics_port=free_port(),
        prometheus_port=free_port(), site_ports=SitePorts(mqtt=free_port(), s3=free_port(), weed_base=base + 500),
    )  # fmt: skip
    options = {"--robots": ROBOTS, "--state-dir": layout.state_dir, "--hub-port": layout.hub_port,
               "--hub-monitor-port": layout.hub_monitor_port, "--leaf-port": layout.leaf_port,
               "--robot-port-base": base, "--robot-monitor-base": base + 100, "--metrics-base": base + 200,
               "--bridge-metrics-base": base + 300, "--console-port": layout.console_port,
               "--panel-port-base": base + 400, "--domain-base": domains,
               "--control-bridge-metrics-port": layout.control_bridge_metrics_port,
               "--jobs-metrics-port": layout.jobs_metrics_port, "--prometheus-port": layout.prometheus_port,
               "--mqtt-port": layout.site_ports.mqtt, "--s3-port": layout.site_ports.s3,
               "--weed-port-base": layout.site_ports.weed_base}  # fmt: skip
    demo = procs.start("demo", [str(REPO / "bin" / "robot-platform"), "demo",
                                *[str(x) for item in options.items() for x in item]])  # fmt: skip
    try:
        _run_commands(procs, demo, layout, tmp_path)
    finally:
        # The demo stops its own servers last and SeaweedFS takes its time: give it that time (the
        # harness's SIGINT-SIGTERM-SIGKILL of the demo alone would orphan them).
        children = psutil.Process(demo.pid).children(recursive=True) if demo.poll() is None else []
        demo.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            demo.wait(timeout=DEMO_STOP_TIMEOUT_S)
        _gone, alive = psutil.wait_procs(children, timeout=10)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        assert not alive, f"left running by the demo: {[p.pid for p in alive]}"


def _run_commands(procs: ProcessGroup, demo: subprocess.Popen[bytes], layout: DemoLayout, tmp_path: Path) -> None:
    wait_for(lambda: "- all up" in procs.child("demo").output() or demo.poll() is not None, 150, "the demo banner")
    output = procs.child("demo").output()
    assert "- all up" in output, output[-5000:]
    banner = output[output.index("robot_platform demo:"):]

    # A scratch working directory that looks like the repository to the commands.
    work = tmp_path / "work"
    (work / ".state").mkdir(parents=True)
    for name in ("bin", "scripts", "examples", "config"):
        (work / name).symlink_to(REPO / name)
    (work / ".state" / "demo").symlink_to(layout.state_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RP_NATS")}
    env.pop("USER", None)  # as in the issue: the CLI must not need $USER

    first = banner_commands(banner)
    readme, problems = readme_commands((REPO / "README.md").read_text(encoding="utf-8"))
    assert not problems, problems
    assert first and first[0].text.startswith("export RP_NATS_URL="), banner
    setup = f". {REPO / 'scripts' / 'env.sh'} && cd {work} && {first[0].text}"
    mapping = _port_map(layout)
    timings: list[tuple[float, int, Command]] = []
    failures: list[str] = []
    for command in [*first[1:], *readme]:
        text = _localize(command.text, mapping)
        started = time.monotonic()
        run = subprocess.run(["bash", "-c", f"{setup} && {text}"], env=env, capture_output=True, text=True,
                             timeout=COMMAND_TIMEOUT_S)  # fmt: skip
        took = time.monotonic() - started
        timings.append((took, run.returncode, command))
        if run.returncode != 0:
            failures.append(f"{command.where}: `{text}` exited {run.returncode}\n"
                            f"{run.stdout[-2000:]}\n{run.stderr[-2000:]}")  # fmt: skip
    report = "\n".join(f"{took:6.2f} s  exit {code}  {c.where:<16} {c.text}" for took, code, c in timings)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(report + "\n", encoding="utf-8")
    print("\n" + report)
    assert not failures, "\n\n".join(failures)
