"""Helpers for MQTT unit tests: a fake awscrt connection that records what the client does."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from awscrt import mqtt


def done(value: Any = None, error: BaseException | None = None) -> Future:
    future: Future = Future()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
    return future


class FakeConnection:
    """Records what the client does; ``deny`` filters get no QoS (a refused SUBACK)."""

    def __init__(self, connect_error: BaseException | None = None, deny: tuple[str, ...] = ()) -> None:
        self.connect_error = connect_error
        self.deny = deny
        self.handler: Callable[..., None] | None = None
        self.subscribed: list[str] = []
        self.published: list[tuple[str, bytes]] = []
        self.puback: Future | None = None  # the next publish's future (default: acked at once)
        self.publish_error: BaseException | None = None
        self.disconnected = threading.Event()

    def on_message(self, handler: Callable[..., None]) -> None:
        self.handler = handler

    def connect(self) -> Future:
        return done(error=self.connect_error) if self.connect_error else done({"session_present": False})

    def subscribe(self, topic_filter: str, qos: mqtt.QoS) -> tuple[Future, int]:
        self.subscribed.append(topic_filter)
        return done({"qos": None if topic_filter in self.deny else qos}), len(self.subscribed)

    def publish(self, topic: str, payload: bytes, qos: mqtt.QoS) -> tuple[Future, int]:
        if self.publish_error is not None:
            raise self.publish_error
        self.published.append((topic, payload))
        future, self.puback = self.puback or done({}), None
        return future, len(self.published)

    def disconnect(self) -> Future:
        self.disconnected.set()
        return done({})
