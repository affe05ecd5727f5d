"""Real-time alert push over MQTT with the AWS IoT Device SDK's CRT client (awsiotsdk / awscrt).

Why MQTT next to NATS: AWS IoT Core (or an on-site Mosquitto standing in for it) is what operators'
phones and the cloud rule engine listen to; the same code talks to both. With certificate paths set
the connection is built by ``awsiot.mqtt_connection_builder.mtls_from_path`` (AWS IoT Core, or
Mosquitto with client certificates); without, it is plain TCP, allowed for a broker on loopback only.

A worker thread owns the connection: it connects with capped, jittered backoff, publishes queued
alerts at QoS 1 and waits for the PUBACK, re-queues on failure. The queue is bounded (drop-oldest,
counted): :meth:`MqttAlertPublisher.publish` never blocks the tick. No rclpy here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from awscrt import exceptions as crt_exceptions
from awscrt import io, mqtt

from robot_platform.exceptions import ConfigError
from robot_platform.messaging.backoff import Backoff

log = logging.getLogger(__name__)

QUEUE_MAX = 500
PUBACK_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5.0
KEEP_ALIVE_S = 30
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class MqttAlertPublisher:
    """Publishes alert payloads (bytes) to one MQTT topic at QoS 1.

    Args:
        host, port: broker. Plain TCP only to a loopback host; anything else needs TLS files.
        client_id: MQTT client id (the AWS IoT thing name).
        topic: e.g. ``robots/r1/alerts``.
        ca_file, cert_file, key_file: PEM paths for mutual TLS ("" for plain TCP to loopback).
        on_result: called with "ok", "dropped" or "error" (metrics).
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
    ) -> None:
        if bool(cert_file) != bool(key_file):
            raise ConfigError("mqtt_cert_file", cert_file, "set both mqtt_cert_file and mqtt_key_file, or neither")
        if not cert_file and host not in LOOPBACK_HOSTS:
            raise ConfigError("mqtt_host", host, "plain MQTT is only allowed to a loopback broker; set TLS files")
        if not topic or any(ch in topic for ch in "#+\0"):
            raise ConfigError("mqtt_topic", topic, "must be a concrete topic (no wildcards)")
        # A missing file is a configuration error to report at start, not a reason to retry forever.
        for name, path in (("mqtt_ca_file", ca_file), ("mqtt_cert_file", cert_file), ("mqtt_key_file", key_file)):
            if path and not os.access(path, os.R_OK):
                raise ConfigError(name, path, "file missing or not readable (PEM expected)")
        self.host, self.port, self.client_id, self.topic = host, port, client_id, topic
        self.ca_file, self.cert_file, self.key_file = ca_file, cert_file, key_file
        self.on_result = on_result or (lambda result: None)
        self.queue_max = queue_max
        self.connected = False
        self._queue: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="health-mqtt", daemon=True)
        self._conn: mqtt.Connection | None = None

    def start(self) -> None:
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
        self._thread.join(timeout=timeout)

    def _build(self) -> mqtt.Connection:
        if self.cert_file:
            from awsiot import mqtt_connection_builder

            return mqtt_connection_builder.mtls_from_path(
                endpoint=self.host,
                port=self.port,
                cert_filepath=self.cert_file,
                pri_key_filepath=self.key_file,
                ca_filepath=self.ca_file or None,
                client_id=self.client_id,
                clean_session=False,
                keep_alive_secs=KEEP_ALIVE_S,
                enable_metrics_collection=False,  # no SDK version in the CONNECT user name (as jobs/mqtt_link)
                on_connection_interrupted=self._interrupted,
                on_connection_resumed=self._resumed,
            )
        elg = io.EventLoopGroup(1)
        bootstrap = io.ClientBootstrap(elg, io.DefaultHostResolver(elg))
        return mqtt.Connection(
            client=mqtt.Client(bootstrap, None),
            host_name=self.host,
            port=self.port,
            client_id=self.client_id,
            clean_session=False,
            keep_alive_secs=KEEP_ALIVE_S,
            reconnect_min_timeout_secs=1,
            reconnect_max_timeout_secs=30,
            on_connection_interrupted=self._interrupted,
            on_connection_resumed=self._resumed,
        )

    def _interrupted(self, connection: mqtt.Connection, error: Exception, **kwargs: object) -> None:
        self.connected = False

    def _resumed(
        self, connection: mqtt.Connection, return_code: object, session_present: bool, **kwargs: object
    ) -> None:
        self.connected = True
        with self._cond:
            self._cond.notify()

    def _wait(self, seconds: float) -> None:
        with self._cond:
            if not self._stopping:
                self._cond.wait(timeout=seconds)

    def _run(self) -> None:
        backoff = Backoff(0.5, 30.0)
        while not self._stopping:
            if self._conn is None:
                try:
                    conn = self._build()
                    conn.connect().result(timeout=CONNECT_TIMEOUT_S)
                except (crt_exceptions.AwsCrtError, FutureTimeout, OSError) as exc:
                    log.warning("MQTT connect to %s:%d failed: %s", self.host, self.port, exc)
                    self._wait(backoff.next_delay())
                    continue
                self._conn, self.connected = conn, True
                backoff.reset()
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait(timeout=1.0)
                payload = self._queue[0] if self._queue else None
            if payload is None:
                break
            try:
                future, _packet_id = self._conn.publish(self.topic, payload, mqtt.QoS.AT_LEAST_ONCE)
                _wait_future(future, PUBACK_TIMEOUT_S)
            except (crt_exceptions.AwsCrtError, FutureTimeout) as exc:
                self.on_result("error")
                log.debug("MQTT publish failed, will retry: %s", exc)
                self._wait(backoff.next_delay())
                continue
            with self._cond:
                if self._queue and self._queue[0] is payload:
                    self._queue.popleft()
            self.on_result("ok")
        if self._conn is not None:
            with contextlib.suppress(crt_exceptions.AwsCrtError, FutureTimeout):  # broker gone: nothing to close
                self._conn.disconnect().result(timeout=2.0)
            self._conn = None


def _wait_future(future: Future, timeout: float) -> None:
    future.result(timeout=timeout)
