"""Robot mode of ``nats_bridge``: allowlisted ROS services callable as NATS requests.

Why a module of its own: only a robot serves ``robots.<id>.srv.<service>``, and the plumbing (one ROS
client per service, asynchronous calls, answers on timeout, refusal of the rest) is a seam of its own
next to the node's common wiring (node.py). The reply format and the checks are in services.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rclpy.node import Node
from rclpy.qos import qos_profile_services_default

from robot_platform.bridge.node_params import ROBOT_PARAMS, SERVICE_PARAMS
from robot_platform.bridge.services import PendingCall, ServiceAllowlist, ServiceRouter
from robot_platform.common.params import declare_params
from robot_platform.exceptions import ConfigError
from robot_platform.messaging import subjects
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.errors import BridgeError

SERVICE_EXPIRY_PERIOD_S = 0.1  # how often overdue calls are answered with 'timeout', while any is pending
Send = Callable[[str, bytes, dict[str, str]], None]


class ServiceSide:
    """ROS service clients behind ``robots.<id>.srv.<service>``.

    Parameters: :data:`~.node_params.ROBOT_PARAMS` and ``services.<n>.*`` (declared here).
    Service clients: every allowlisted service. NATS: one request subscription per allowlisted service
    plus ``robots.<id>.srv.>`` to refuse the rest (:attr:`request_subjects`).

    Overdue calls are answered by a timer that runs only while some call is pending: always running, at
    SERVICE_EXPIRY_PERIOD_S, it woke the bridge's executor ten times a second on every robot (each wake-up
    a rebuild of the node's wait set) for calls that almost never exist. A call arms it (from the NATS
    thread; ``Timer.reset`` wakes an executor waiting without it: rcl triggers the timer's guard condition,
    test_bridge_service_expiry.py spins without polling); the timer disarms itself when no call is left.
    Both under one lock, so a call that arrives while the timer disarms still gets its expiry.
    """

    def __init__(self, node: Node, robot_id: str, codec: Codec, send: Send) -> None:
        self._node = node
        self.wildcard = subjects.robot_wildcard(robot_id, "srv")
        self.clients: dict[str, Any] = {}
        self.router: ServiceRouter | None = None
        p = declare_params(node, ROBOT_PARAMS)
        names: list[str] = p["services.names"]
        if not names:
            return
        rules = []
        for name in names:
            s = declare_params(node, SERVICE_PARAMS, f"services.{name}")
            rules.append((name, s["service"], s["type"], s["timeout_s"], s["allow_non_finite"]))
        try:
            allowlist = ServiceAllowlist(robot_id, rules)
        except BridgeError as exc:
            raise ConfigError("services", names, str(exc)) from None
        logger = node.get_logger()
        self.router = ServiceRouter(
            robot_id, codec, allowlist, send, p["services.max_pending"], logger.warning, logger.info
        )
        for rule in allowlist.rules:
            srv = codec.registry.load_service(rule.type_name)
            self.clients[rule.subject] = node.create_client(srv, rule.service, qos_profile=qos_profile_services_default)
        self._expiry_lock = threading.Lock()
        self._expiry = node.create_timer(SERVICE_EXPIRY_PERIOD_S, self._expire)
        self._expiry.cancel()  # armed by the first call

    @property
    def request_subjects(self) -> list[str]:
        """The NATS request subscriptions: each service's subject, then the wildcard; [] without services."""
        if self.router is None:
            return []
        return [r.subject for r in self.router.allowlist.rules] + [self.wildcard]

    def on_request(self, pattern: str, subject: str, reply: str, headers: dict[str, str] | None, data: bytes) -> None:
        """NATS thread: validate, then call the ROS service asynchronously (never waits for it)."""
        router = self.router
        assert router is not None
        if pattern == self.wildcard and router.allowlist.get(subject) is not None:
            return  # the service's own subscription delivers it too
        result = router.on_request(subject, reply, headers, data)
        if result is None:
            return
        call, request = result
        client = self.clients[call.rule.subject]
        if not client.service_is_ready():
            router.fail(call, "unavailable", f"no server for {call.rule.service} is running")
            return
        future = client.call_async(request)
        call.handle = future
        future.add_done_callback(lambda f, call=call: self._on_response(call, f))
        self._arm_expiry()

    def _arm_expiry(self) -> None:
        with self._expiry_lock:
            if self._expiry.is_canceled():
                self._expiry.reset()

    def _on_response(self, call: PendingCall, future: Any) -> None:
        """Executor thread: the ROS service answered (or the call was cancelled after a timeout)."""
        assert self.router is not None
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self.router.fail(call, "failed", f"{type(exc).__name__}: {exc}")
        else:
            self.router.complete(call, future.result())

    def _expire(self) -> None:
        assert self.router is not None
        with self._expiry_lock:
            late = self.router.expire()
            if not self.router.pending:
                self._expiry.cancel()
        for call in late:
            client = self.clients.get(call.rule.subject)
            if call.handle is not None and client is not None:
                client.remove_pending_request(call.handle)
                call.handle.cancel()

    def merge_counters(self, snap: dict[str, Any]) -> None:
        """Service subjects count like inbound commands (same counters): add them to ``snap``."""
        if self.router is None:
            return
        srv = self.router.snapshot()
        snap["in"].update(srv["in"])
        for kind, n in srv["errors"].items():
            snap["errors"][kind] = snap["errors"].get(kind, 0) + n

    def close(self) -> None:
        if self.router is not None:
            self.router.fail_all("the bridge is stopping")
