"""common.metrics_server.MetricsServer: loopback by default, port 0 allowed, clean stop."""

from __future__ import annotations

import threading
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from robot_platform.common.metrics_server import LOOPBACK, MetricsServer


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


def test_serves_its_registry_on_a_free_loopback_port_until_closed() -> None:
    registry = CollectorRegistry()
    Counter("rp_test_things", "things counted", registry=registry).inc(3)
    server = MetricsServer(registry)
    assert server.address == LOOPBACK
    port = server.start(0)
    try:
        assert port > 0 and server.port == port
        assert "rp_test_things_total 3.0" in scrape(port)
        assert "process_cpu_seconds_total" not in scrape(port)  # only this registry, not the global one
    finally:
        server.close()
    with pytest.raises(OSError):
        scrape(port)
    server.close()  # twice: nothing left to stop


def test_close_joins_the_server_thread() -> None:
    server = MetricsServer(CollectorRegistry())
    before = set(threading.enumerate())
    server.start(0)
    server.close()
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive()]


def test_starting_twice_is_refused() -> None:
    server = MetricsServer(CollectorRegistry())
    server.start(0)
    try:
        with pytest.raises(RuntimeError):
            server.start(0)
    finally:
        server.close()
