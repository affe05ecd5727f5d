"""The Prometheus ``/metrics`` HTTP endpoint of a node: one registry, loopback by default, clean stop.

Why one helper: the bridge, the health monitor and the jobs service each serve their own registry
(never prometheus-client's global one, so two instances in one process, as in tests, do not collide)
and all need the same things around ``prometheus_client.start_http_server``: the loopback address
unless told otherwise (network rule: robots expose nothing beyond loopback), port 0 for "any free
port" with the bound port handed back (tests, logs), and a stop that closes the socket and joins the
server thread so a node ends with nothing left running.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

LOOPBACK = "127.0.0.1"
JOIN_TIMEOUT_S = 2.0


class MetricsServer:
    """Serves one registry over HTTP from :meth:`start` until :meth:`close`.

    Args:
        registry: what ``/metrics`` shows.
        address: bind address; loopback unless a container needs ``0.0.0.0``.
    """

    def __init__(self, registry: CollectorRegistry, address: str = LOOPBACK) -> None:
        self.registry = registry
        self.address = address
        self.port = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self, port: int) -> int:
        """Listen on ``address:port`` (0 picks a free port); returns the bound port."""
        if self._server is not None:
            raise RuntimeError("metrics server already started")
        self._server, self._thread = start_http_server(port, addr=self.address, registry=self.registry)
        self.port = int(self._server.server_address[1])
        return self.port

    def close(self) -> None:
        """Stop serving, close the socket and join the thread; safe to call twice or before start."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=JOIN_TIMEOUT_S)
