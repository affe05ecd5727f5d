"""Stop a server after its clients: ``server_last --monitor-port 8222 -- nats-server -c robot.conf``.

Why: on Ctrl-C the terminal signals every process of ``ros2 launch`` at once (and a non-interactive
launch sends SIGINT to all of them itself), so the NATS server went away while the nodes were still
flushing and draining, and every stop printed their tracebacks. The launch files start the server through
this wrapper: the server runs in its own session (the terminal's SIGINT does not reach it); on SIGINT or
SIGTERM the wrapper waits until the server has no client connections left (its ``/connz``), at most
``--wait`` seconds, then stops it with SIGTERM and exits with its code. The pip-only runner gets the same
order from :class:`~robot_platform.launcher.supervisor.ProcessGroup` (servers are stopped last).

Plain Python (no rclpy), unit-tested with a real nats-server.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence

from robot_platform.launcher.supervisor import _die_with_parent

CLIENTS_GONE_WAIT_S = 4.0  # under launch's default sigterm_timeout (5 s), so launch never escalates
SERVER_STOP_WAIT_S = 5.0
POLL_S = 0.1


def client_connections(monitor_port: int) -> int | None:
    """Client connections of the server (leaf links excluded), or None if its monitor does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/connz", timeout=1) as response:
            return int(json.load(response).get("num_connections", 0))
    except (OSError, ValueError):
        return None


def wait_for_clients_to_leave(monitor_port: int, wait_s: float) -> int | None:
    """Poll until no client is connected or ``wait_s`` passed; the last count seen."""
    deadline = time.monotonic() + wait_s
    count = client_connections(monitor_port)
    while count and time.monotonic() < deadline:
        time.sleep(POLL_S)
        count = client_connections(monitor_port)
    return count


def run(argv: Sequence[str], monitor_port: int, wait_s: float) -> int:
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    server = subprocess.Popen(list(argv), start_new_session=True, preexec_fn=_die_with_parent)
    while not stop.wait(POLL_S):
        if server.poll() is not None:
            return int(server.returncode)
    left = wait_for_clients_to_leave(monitor_port, wait_s)
    if left:
        sys.stderr.write(f"server_last: {left} client(s) still connected after {wait_s:.0f} s; stopping anyway\n")
    server.terminate()
    try:
        code = server.wait(timeout=SERVER_STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        server.kill()
        code = server.wait()
    return 0 if code in (0, -signal.SIGTERM) else int(code)


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="server_last", description=__doc__.split("\n")[0])
    parser.add_argument("--monitor-port", type=int, required=True, help="the server's HTTP monitoring port")
    parser.add_argument(
        "--wait",
        type=float,
        default=CLIENTS_GONE_WAIT_S,
        help=f"longest wait for clients to leave, seconds (default {CLIENTS_GONE_WAIT_S})",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the server's command line")
    ns = parser.parse_args(args)
    command = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    if not command:
        parser.error("give the server's command after --")
    return run(command, ns.monitor_port, ns.wait)


if __name__ == "__main__":
    sys.exit(main())
