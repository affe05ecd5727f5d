"""One MQTT connection with mutual TLS (AWS IoT Device SDK / awscrt), shared by both ends of the Jobs flow.

``mtls_from_path`` builds the connection exactly as for AWS IoT Core, so the same class talks to an
on-site Mosquitto (site CA, client certificate CN = thing name) and to AWS IoT Core (Amazon root CA,
the thing's certificate, the account's ATS endpoint on 8883).

Lifecycle: :meth:`start` spawns a thread that makes the first connection with capped, jittered backoff
(awscrt itself reconnects after an established connection drops); on every (re)connection the
subscriptions are (re)made at QoS 1 and ``on_connected`` runs, which is where both ends re-synchronise
(the device asks for its pending jobs, the server re-announces them). :meth:`publish` never blocks.
:meth:`close` disconnects and joins the thread. No rclpy here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from awscrt import exceptions as crt_exceptions
from awscrt import mqtt

from robot_platform.exceptions import ConfigError
from robot_platform.messaging.backoff import Backoff

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 30
FIRST_CONNECT_BACKOFF_MAX_S = 15.0
RECONNECT_MAX_S = 30
SUBSCRIBE_TIMEOUT_S = 10.0

OnMessage = Callable[[str, bytes], None]


class MqttLink:
    """A mutual-TLS MQTT 3.1.1 connection with persistent session, fixed subscriptions and callbacks.

    Args:
        endpoint, port: broker (AWS IoT Core ATS endpoint, or the site's Mosquitto).
        ca_file, cert_file, key_file: PEM paths (site CA or Amazon root CA; client certificate and key).
        client_id: MQTT client id (unique per connection; AWS IoT policies often tie it to the thing name).
        subscriptions: topic filters subscribed at QoS 1 on every connection.
        on_message: ``(topic, payload)`` from awscrt's event-loop thread; must not block.
        on_connected: called (from a CRT thread) after every (re)connection once subscriptions are made.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        port: int,
        ca_file: str,
        cert_file: str,
        key_file: str,
        client_id: str,
        subscriptions: Sequence[str],
        on_message: OnMessage,
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        for name, value in (("mqtt_cert", cert_file), ("mqtt_key", key_file)):
            if not value:
                raise ConfigError(name, value, "mutual TLS needs a client certificate and key")
        if not 0 < port < 65536:
            raise ConfigError("mqtt_port", port, "must be a TCP port")
        self.endpoint, self.port, self.client_id = endpoint, port, client_id
        self.ca_file, self.cert_file, self.key_file = ca_file, cert_file, key_file
        self.subscriptions = tuple(subscriptions)
        self.on_message = on_message
        self.on_connected = on_connected or (lambda: None)
        self.connected = threading.Event()
        self.published = 0
        self.publish_errors = 0
        self.denied_subscriptions: list[str] = []
        self._stop = threading.Event()
        self._conn: mqtt.Connection | None = None
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{client_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def publish(self, topic: str, payload: bytes) -> None:
        """QoS 1, non-blocking. awscrt queues while a dropped connection is being re-established; before
        the first connection the message is dropped and counted (both ends re-sync on connect)."""
        conn = self._conn
        if conn is None:
            self.publish_errors += 1
            return
        try:
            future, _packet_id = conn.publish(topic, payload, mqtt.QoS.AT_LEAST_ONCE)
        except crt_exceptions.AwsCrtError as exc:
            self.publish_errors += 1
            log.warning("MQTT publish to %s failed: %s", topic, exc)
            return
        self.published += 1
        future.add_done_callback(self._publish_done)

    def _publish_done(self, future: Future) -> None:
        if future.exception() is not None:
            self.publish_errors += 1

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout)

    # ---- internals ----------------------------------------------------------------------------------
    def _build(self) -> mqtt.Connection:
        from awsiot import mqtt_connection_builder

        return mqtt_connection_builder.mtls_from_path(
            endpoint=self.endpoint,
            port=self.port,
            cert_filepath=self.cert_file,
            pri_key_filepath=self.key_file,
            ca_filepath=self.ca_file or None,
            client_id=self.client_id,
            clean_session=False,  # the broker keeps subscriptions and QoS 1 messages while offline
            keep_alive_secs=KEEP_ALIVE_S,
            reconnect_min_timeout_secs=1,
            reconnect_max_timeout_secs=RECONNECT_MAX_S,
            enable_metrics_collection=False,  # no SDK version in the CONNECT user name
            on_connection_interrupted=self._interrupted,
            on_connection_resumed=self._resumed,
        )

    def _run(self) -> None:
        backoff = Backoff(0.5, FIRST_CONNECT_BACKOFF_MAX_S)
        while not self._stop.is_set():
            try:
                conn = self._build()
                # One handler for every message, set before CONNECT: with a persistent session the broker
                # delivers what it queued while we were away right after CONNACK, before our SUBSCRIBEs are
                # answered; per-subscription callbacks would not exist yet and awscrt would drop it (acked).
                conn.on_message(self._on_raw)
                conn.connect().result(timeout=CONNECT_TIMEOUT_S)
            except (crt_exceptions.AwsCrtError, FutureTimeout, OSError, RuntimeError) as exc:
                log.warning("MQTT connect to %s:%d as %s failed: %s", self.endpoint, self.port, self.client_id, exc)
                self._stop.wait(backoff.next_delay())
                continue
            self._conn = conn
            log.info("MQTT connected to %s:%d as %s", self.endpoint, self.port, self.client_id)
            self._on_up()
            break
        self._stop.wait()
        conn, self._conn = self._conn, None
        self.connected.clear()
        if conn is not None:
            with contextlib.suppress(crt_exceptions.AwsCrtError, FutureTimeout):
                conn.disconnect().result(timeout=3.0)

    def _on_up(self) -> None:
        conn = self._conn
        if conn is None:
            return
        for topic_filter in self.subscriptions:
            try:
                future, _ = conn.subscribe(topic_filter, mqtt.QoS.AT_LEAST_ONCE)  # delivered to on_message
                granted = future.result(timeout=SUBSCRIBE_TIMEOUT_S).get("qos")
            except (crt_exceptions.AwsCrtError, FutureTimeout, mqtt.SubscribeError) as exc:
                granted = None
                log.debug("subscribe %s: %s", topic_filter, exc)
            if granted is None:
                self.denied_subscriptions.append(topic_filter)
                log.error("MQTT broker refused the subscription to %s (check the ACL / IoT policy)", topic_filter)
        self.connected.set()
        try:
            self.on_connected()
        except Exception:  # the owner's re-sync failing must not kill the CRT thread; logged with traceback
            log.exception("on_connected failed")

    def _on_raw(self, topic: str, payload: bytes, **_kwargs: object) -> None:
        try:
            self.on_message(topic, bytes(payload))
        except Exception:  # a handler bug must not kill the CRT thread; logged with traceback
            log.exception("MQTT message handler failed for %s", topic)

    def _interrupted(self, connection: mqtt.Connection, error: Exception, **_kwargs: object) -> None:
        self.connected.clear()
        log.warning("MQTT connection to %s interrupted: %s", self.endpoint, error)

    def _resumed(self, connection: mqtt.Connection, return_code: object, session_present: bool, **_kw: object) -> None:
        log.info("MQTT connection to %s resumed (session present: %s)", self.endpoint, session_present)
        # Subscribing again is harmless with a present session and required without one. Done in a thread:
        # waiting for SUBACKs inside a CRT callback would block the event loop that delivers them.
        threading.Thread(target=self._on_up, name=f"mqtt-resync-{self.client_id}", daemon=True).start()
