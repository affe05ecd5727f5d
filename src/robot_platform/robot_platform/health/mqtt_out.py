"""Real-time alert push over MQTT, on the shared client (:mod:`robot_platform.mqtt.client`).

Why MQTT next to NATS: AWS IoT Core (or an on-site Mosquitto standing in for it) is what operators'
phones and the cloud rule engine listen to; the same code talks to both. With certificate paths set
the connection is mutual TLS (AWS IoT Core, or Mosquitto with client certificates); without, it is plain
TCP, allowed for a broker on loopback only (:meth:`BrokerSettings.validate`).

What this module adds to the shared client is delivery of every alert: a worker thread sends queued
alerts at QoS 1 once the client is connected, waits for the PUBACK and re-sends on failure. The queue
is bounded (drop-oldest, counted): :meth:`MqttAlertPublisher.publish` never blocks the tick. No rclpy.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout

from awscrt import exceptions as crt_exceptions

from robot_platform.messaging.backoff import Backoff
from robot_platform.mqtt.client import Builder, MqttClient
from robot_platform.mqtt.connection import BrokerSettings, ParamNames, build_connection, check_publish_topic

log = logging.getLogger(__name__)

QUEUE_MAX = 500
PUBACK_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5.0
RETRY_BACKOFF_MIN_S = 0.5
RETRY_BACKOFF_MAX_S = 30.0
PARAM_NAMES = ParamNames(host="mqtt_host", ca_file="mqtt_ca_file", cert_file="mqtt_cert_file", key_file="mqtt_key_file")


class MqttAlertPublisher:
    """Publishes alert payloads (bytes) to one MQTT topic at QoS 1.

    Args:
        host, port: broker. Plain TCP only to a loopback host; anything else needs TLS files.
        client_id: MQTT client id (the AWS IoT thing name).
        topic: e.g. ``robots/r1/alerts``.
        ca_file, cert_file, key_file: PEM paths for mutual TLS ("" for plain TCP to loopback).
        on_result: called with "ok", "dropped" or "error" (metrics).
        build: the connection factory (tests pass a fake broker connection).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        topic: str,
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
        on_result: Callable[[str], None] | None = None,
        queue_max: int = QUEUE_MAX,
        build: Builder = build_connection,
    ) -> None:
        settings = BrokerSettings(host, port, client_id, ca_file, cert_file, key_file)
        settings.validate(PARAM_NAMES, plain_to_loopback=True, files_must_exist=True)
        check_publish_topic("mqtt_topic", topic)
        self.settings = settings
        self.topic = topic
        self.on_result = on_result or (lambda result: None)
        self.queue_max = queue_max
        self.client = MqttClient(
            settings,
            on_connected=self._wake,
            connect_timeout_s=CONNECT_TIMEOUT_S,
            backoff_max_s=RETRY_BACKOFF_MAX_S,
            build=build,
        )
        self._queue: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="health-mqtt", daemon=True)

    @property
    def connected(self) -> bool:
        return self.client.connected.is_set()

    def start(self) -> None:
        self.client.start()
        self._thread.start()

    def publish(self, payload: bytes) -> None:
        """Queue one alert; drops (and counts) the oldest when the queue is full."""
        with self._cond:
            if len(self._queue) >= self.queue_max:
                self._queue.popleft()
                self.on_result("dropped")
            self._queue.append(payload)
            self._cond.notify()

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
        self.client.close(timeout=timeout)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _wait(self, seconds: float) -> None:
        with self._cond:
            if not self._stopping:
                self._cond.wait(timeout=seconds)

    def _next(self) -> bytes | None:
        """The oldest alert once there is one and the client is connected; None when stopping."""
        with self._cond:
            while not self._stopping and not (self._queue and self.connected):
                self._cond.wait(timeout=1.0)
            return None if self._stopping else self._queue[0]

    def _run(self) -> None:
        backoff = Backoff(RETRY_BACKOFF_MIN_S, RETRY_BACKOFF_MAX_S)
        while (payload := self._next()) is not None:
            if not self._send(payload):
                self.on_result("error")
                self._wait(backoff.next_delay())
                continue
            backoff.reset()
            with self._cond:
                if self._queue and self._queue[0] is payload:
                    self._queue.popleft()
            self.on_result("ok")

    def _send(self, payload: bytes) -> bool:
        """Publish and wait for the PUBACK; False means "retry later" (the alert stays queued)."""
        future = self.client.publish(self.topic, payload)
        if future is None:
            return False
        try:
            future.result(timeout=PUBACK_TIMEOUT_S)
        except (crt_exceptions.AwsCrtError, FutureTimeout) as exc:
            log.debug("MQTT publish failed, will retry: %s", exc)
            return False
        return True
