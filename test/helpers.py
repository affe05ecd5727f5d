"""Helpers shared by the system tests: free ports, bounded waits, ROS domain reservation, test nodes."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from robot_platform.launcher.domains import DomainReservation

__all__ = [
    "DomainReservation",
    "RosNodeThread",
    "free_demo_base",
    "free_port",
    "free_port_block",
    "node_exe",
    "ros_env",
    "wait_for",
    "wait_port",
]

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "install"


class _PortPicker:
    """Hands out ports that were free a moment ago, never the same one twice in a test session.

    Why: the kernel readily returns a port it just released, so two calls in a row (a server's HTTP and
    gRPC ports, say) could get the same number and the server would fail to bind the second one.
    """

    def __init__(self) -> None:
        self._given: set[int] = set()

    def __call__(self) -> int:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in self._given:
                self._given.add(port)
                return port
        raise RuntimeError("no fresh free port after 100 tries")


free_port = _PortPicker()
"""A TCP port on 127.0.0.1 that was free a moment ago and not handed out before in this session."""


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_block(offsets: Iterable[int]) -> int:
    """A base port with ``base + offset`` bindable on 127.0.0.1 for every offset, below the kernel's
    ephemeral range.

    Why below: the demo derives its robots' ports from bases, and a port inside the ephemeral range can
    be taken as the local port of any outgoing connection between this check and the demo's bind
    (test_demo once lost a robot's health metrics port so, to the demo's own NATS clients)."""
    wanted = sorted(set(offsets))
    top = _ephemeral_low() - wanted[-1] - 1
    for _ in range(200):
        base = random.randrange(10000, max(top, 10001))
        try:
            for offset in wanted:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of ports below the ephemeral range")


def free_demo_base(robots: int, singles: int = 0) -> int:
    """A base for ``robot-platform demo``'s derived ports, as the tests and benchmarks pass them: robot
    NATS ``base+i``, monitor ``+100``, health metrics ``+200``, bridge metrics ``+300``, panels ``+400``
    (i = 1..robots), SeaweedFS ``+500..+506``, and ``singles`` more at ``+600...`` for the caller's
    one-port options (all in one block: none can collide with another)."""
    return free_port_block(
        [block + i for block in (0, 100, 200, 300, 400) for i in range(robots + 1)]
        + [*range(500, 507), *range(600, 600 + singles)]
    )


def wait_for(predicate: Callable[[], object], timeout: float, what: str, period: float = 0.05) -> object:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except Exception as exc:
            last_error = exc
            result = None
        if result:
            return result
        time.sleep(period)
    detail = f" (last error: {last_error!r})" if last_error else ""
    raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port."""

    def is_open() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(is_open, timeout, f"127.0.0.1:{port} to accept connections")


def node_exe(name: str) -> str:
    """Path of an installed robot_platform entry point (as `ros2 run robot_platform <name>` runs it)."""
    path = INSTALL / "robot_platform" / "lib" / "robot_platform" / name
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run `make build` first")
    return str(path)


def ros_env(domain_id: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a ROS process of a test: its own domain, discovery kept on this machine."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


class RosNodeThread:
    """An rclpy node of the test itself, in a robot's domain with its own context, spun on a thread.

    Subclasses create their publishers, subscriptions and timers on ``self.node`` in ``__init__`` after
    calling ``super().__init__`` and then call :meth:`start`. ``close`` always shuts the context down, so
    a test never leaves a participant behind in the domain (the next test reuses the domain).
    """

    def __init__(self, name: str, domain: int) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=5.0)
