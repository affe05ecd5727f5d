#!/usr/bin/env python3
"""Console -> robot request/reply latency over a secured leaf link: the per-robot reply slot
(``messaging.inbox.request``, today's permissions) against nats-py's own ``request`` with the old
``_INBOX.>`` robot permissions (what the reply slot replaced).

A hub and one robot nats-server from ``fleet_nats`` configs on loopback, a responder on the robot's
server, the ``console`` user asking from the hub; each way runs ``--runs`` times, alternating.

    . scripts/env.sh && python bench/robot_request.py [--requests 300] [--runs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats

from robot_platform.messaging import inbox
from robot_platform.messaging.inbox import connect_options
from robot_platform.site_setup.nats_config import (
    Endpoint,
    Fleet,
    render_hub,
    render_robot,
    service_user_entry,
    write_private,
)

CONSOLE_PASSWORD = "console-password-0123456789"
WARMUP = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"port {port} not open")


async def one_run(directory: Path, old: bool, requests: int) -> list[float]:
    fleet = Fleet.generate(["r1"])
    hub_port, leaf_port, robot_port = free_port(), free_port(), free_port()
    hub = render_hub(fleet, Endpoint(port=hub_port), leaf_port, str(directory / "js-hub"),
                     extra_users=[service_user_entry("console", CONSOLE_PASSWORD)])  # fmt: skip
    if old:  # the permissions before the reply slot
        hub = hub.replace('"_INBOX.*.~r1.>"', '"_INBOX.>"').replace('"_INBOX.r1.>"', '"_INBOX.>"')
    write_private(directory / "hub.conf", hub)
    write_private(directory / "r1.conf", render_robot("r1", fleet.robots["r1"], Endpoint(port=robot_port),
                                                      f"127.0.0.1:{leaf_port}", str(directory / "js-r1")))  # fmt: skip
    servers = [subprocess.Popen(["nats-server", "-c", str(directory / name)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for name in ("hub.conf", "r1.conf")]  # fmt: skip
    try:
        await wait_port(hub_port)
        await wait_port(robot_port)
        robot = await nats.connect(f"nats://127.0.0.1:{robot_port}", **connect_options("", "", "r1"))

        async def answer(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(b"ok")

        await robot.subscribe("robots.r1.srv.bench", cb=answer)
        await robot.flush()
        console = await nats.connect(f"nats://127.0.0.1:{hub_port}", **connect_options("console", CONSOLE_PASSWORD))

        async def ask() -> None:
            if old:
                await console.request("robots.r1.srv.bench", b"", timeout=2)
            else:
                await inbox.request(console, "robots.r1.srv.bench", b"", timeout=2)

        deadline = time.monotonic() + 20
        while True:  # until the leaf link carries the responder's interest
            try:
                await ask()
                break
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                if time.monotonic() > deadline:
                    raise
        for _ in range(WARMUP):
            await ask()
        latencies = []
        for _ in range(requests):
            t0 = time.perf_counter()
            await ask()
            latencies.append((time.perf_counter() - t0) * 1e3)
        await console.close()
        await robot.close()
        return latencies
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="20 requests, 1 run: does the path work?")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.runs = 20, 1
    assert shutil.which("nats-server"), "nats-server not on PATH (. scripts/env.sh)"
    results: dict[str, list[float]] = {"reply slot (inbox.request)": [], "old _INBOX.> + nc.request": []}
    with tempfile.TemporaryDirectory(prefix="rp-bench-") as tmp:
        for run in range(args.runs):
            for old, name in ((True, "old _INBOX.> + nc.request"), (False, "reply slot (inbox.request)")):
                directory = Path(tmp) / f"{run}-{int(old)}"
                directory.mkdir()
                results[name] += asyncio.run(one_run(directory, old, args.requests))
    answered = {name: len(lat) for name, lat in results.items()}
    if any(n < args.requests * args.runs for n in answered.values()):
        print(f"robot_request: requests unanswered: {answered} of {args.requests * args.runs}", file=sys.stderr)
        return 1
    for name, lat in results.items():
        lat.sort()
        print(f"{name:28s} p50 {statistics.median(lat):.2f} ms  p90 {lat[int(0.9 * len(lat))]:.2f} ms  "
              f"({len(lat)} requests)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
