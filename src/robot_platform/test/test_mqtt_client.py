"""mqtt.client.MqttClient against a fake awscrt connection: connect retry, subscriptions, re-sync, counters."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest
from awscrt import exceptions as crt_exceptions
from mqtt_testutil import FakeConnection

from robot_platform.mqtt.client import MqttClient
from robot_platform.mqtt.connection import BrokerSettings

SETTINGS = BrokerSettings("127.0.0.1", 8883, "deploy-r1", cert_file="c.pem", key_file="k.pem")
WAIT_S = 5.0


class Harness:
    def __init__(self, connections: list[FakeConnection], **kw: Any) -> None:
        self.connections = list(connections)
        self.built: list[FakeConnection] = []
        self.callbacks: tuple[Callable[..., None], Callable[..., None]] | None = None
        self.ups = threading.Semaphore(0)
        self.messages: list[tuple[str, bytes]] = []
        self.client = MqttClient(
            SETTINGS,
            subscriptions=kw.pop("subscriptions", ("a/+", "b")),
            on_message=lambda topic, payload: self.messages.append((topic, payload)),
            on_connected=self.ups.release,
            build=self.build,
            **kw,
        )

    def build(self, settings: BrokerSettings, interrupted: Any, resumed: Any) -> FakeConnection:
        assert settings is SETTINGS
        self.callbacks = (interrupted, resumed)
        conn = self.connections.pop(0)
        self.built.append(conn)
        return conn


@pytest.fixture
def harness() -> Any:
    made: list[Harness] = []

    def make(connections: list[FakeConnection], **kw: Any) -> Harness:
        made.append(Harness(connections, **kw))
        return made[-1]

    yield make
    for h in made:
        h.client.close()


def test_publish_before_the_first_connection_is_dropped_and_counted() -> None:
    client = MqttClient(SETTINGS)
    assert client.publish("t", b"x") is None
    assert client.publish_errors == 1 and client.published == 0
    client.close()  # before start: nothing to join


def test_connects_subscribes_reports_refusals_and_publishes(harness: Any) -> None:
    conn = FakeConnection(deny=("b",))
    h = harness([conn])
    h.client.start()
    assert h.ups.acquire(timeout=WAIT_S) and h.client.connected.is_set()
    assert conn.subscribed == ["a/+", "b"] and h.client.denied_subscriptions == ["b"]
    future = h.client.publish("a/1", b"hello")
    assert future is not None and future.result(WAIT_S) == {}
    assert conn.published == [("a/1", b"hello")] and h.client.published == 1 and h.client.publish_errors == 0
    conn.puback = Future()
    failed = h.client.publish("a/1", b"lost")
    assert failed is not None and not failed.done()
    failed.set_exception(crt_exceptions.AwsCrtError(1, "AWS_ERROR_MQTT_TIMEOUT", "no PUBACK"))
    assert h.client.publish_errors == 1
    conn.publish_error = crt_exceptions.AwsCrtError(2, "AWS_ERROR_MQTT_NOT_CONNECTED", "refused")
    assert h.client.publish("a/1", b"refused") is None and h.client.publish_errors == 2
    h.client.close()
    assert conn.disconnected.is_set() and not h.client.connected.is_set()


def test_messages_reach_the_handler_as_bytes_and_a_failing_handler_is_contained(harness: Any) -> None:
    conn = FakeConnection()
    h = harness([conn])
    h.client.start()
    assert h.ups.acquire(timeout=WAIT_S)
    assert conn.handler is not None  # set before CONNECT: the persistent session's backlog is not lost
    conn.handler(topic="a/1", payload=bytearray(b"x"), dup=False, qos=1, retain=False)
    assert h.messages == [("a/1", b"x")] and isinstance(h.messages[0][1], bytes)
    h.client.on_message = lambda topic, payload: 1 / 0
    conn.handler(topic="a/1", payload=b"y")  # logged, not raised into the CRT thread


def test_first_connection_is_retried_with_backoff(harness: Any) -> None:
    h = harness([FakeConnection(connect_error=OSError("refused")), FakeConnection()], subscriptions=())
    h.client.start()
    assert h.ups.acquire(timeout=WAIT_S)
    assert len(h.built) == 2 and h.client.connected.is_set()


def test_interruption_clears_connected_and_resumption_resubscribes(harness: Any) -> None:
    conn = FakeConnection()
    h = harness([conn])
    h.client.start()
    assert h.ups.acquire(timeout=WAIT_S)
    interrupted, resumed = h.callbacks
    interrupted(connection=conn, error=crt_exceptions.AwsCrtError(3, "AWS_IO_SOCKET_CLOSED", "gone"))
    assert not h.client.connected.is_set()
    resumed(connection=conn, return_code=0, session_present=False)
    assert h.ups.acquire(timeout=WAIT_S)  # on_connected again: the owner re-synchronises
    assert h.client.connected.is_set() and conn.subscribed == ["a/+", "b", "a/+", "b"]


def test_close_while_the_broker_is_unreachable_ends_the_thread(harness: Any) -> None:
    h = harness([FakeConnection(connect_error=OSError("refused")) for _ in range(50)])
    h.client.start()
    h.client.close(timeout=WAIT_S)
    assert "mqtt-deploy-r1" not in {thread.name for thread in threading.enumerate()}
