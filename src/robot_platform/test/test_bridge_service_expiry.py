"""The bridge's service calls time out although the expiry timer only runs while a call is pending.

Real rclpy in one process: a ServiceSide on its own executor thread (as in the bridge) and a SetBool
server that answers too late. ~3 s. Would catch: the timer never armed (the caller waits for the late
answer instead of 'timeout'), armed without waking the executor (the timeout comes at the next unrelated
wake-up, or never), or left running when nothing is pending (the 10 Hz wake-ups it was meant to end).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_srvs.srv import SetBool

from robot_platform.bridge.robot_side import ServiceSide
from robot_platform.messaging.codec import Codec
from robot_platform.messaging.rostypes import TypeRegistry

TIMEOUT_S = 0.5
LATE_S = 6.0  # the server answers after this: far beyond the timeout


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def spin(node: Node) -> threading.Thread:
    """As the bridge spins: blocked in its wait until something in it is ready (no polling here, so a
    timer armed without waking the executor is never seen); ends when the context shuts down."""
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)

    def run() -> None:
        with contextlib.suppress(ExternalShutdownException):
            executor.spin()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_late_service_answers_timeout_and_the_timer_stops_when_idle(context: Context) -> None:
    release = threading.Event()

    def late(request: Any, response: Any) -> Any:
        release.wait(LATE_S)
        response.success = True
        return response

    server = Node("slow_server", context=context)
    server.create_service(SetBool, "/slow_srv", late)
    overrides = [
        Parameter("services.names", value=["slow"]),
        Parameter("services.slow.service", value="/slow_srv"),
        Parameter("services.slow.type", value="std_srvs/srv/SetBool"),
        Parameter("services.slow.timeout_s", value=TIMEOUT_S),
    ]
    bridge = Node("bridge_expiry_test", context=context, parameter_overrides=overrides)
    sent: list[tuple[str, bytes, dict[str, str]]] = []
    side = ServiceSide(bridge, "r1", Codec(TypeRegistry(), 1 << 20), lambda s, b, h: sent.append((s, b, h)))
    threads = [spin(server), spin(bridge)]
    try:
        assert side._expiry.is_canceled(), "no call pending: the expiry timer must not run"
        subject = side.request_subjects[0]
        client = side.clients[subject]
        wait_until(client.service_is_ready, 10.0, "the slow server to be discovered")
        started = time.monotonic()
        side.on_request(subject, subject, "reply.1", {}, b"")
        wait_until(lambda: sent, 5.0, "an answer to the call")
        took = time.monotonic() - started
        reply_to, _body, headers = sent[0]
        assert reply_to == "reply.1" and headers.get("Rp-Error", "").startswith("timeout"), headers
        assert took < TIMEOUT_S + 3.0, f"'timeout' after {took:.2f} s for a {TIMEOUT_S} s timeout"
        wait_until(side._expiry.is_canceled, 5.0, "the expiry timer to stop once nothing is pending")
        assert side.router is not None and side.router.pending == 0
    finally:
        release.set()
        context.try_shutdown()
        for thread in threads:
            thread.join(5.0)
        side.close()
        bridge.destroy_node()
        server.destroy_node()
