"""One MQTT connection owned by a thread: the client deploy_service, health_monitor_tree and jobs_service share.

Lifecycle: :meth:`MqttClient.start` spawns a thread that makes the first connection with capped,
jittered backoff (awscrt itself reconnects after an established connection drops, see
:mod:`.connection`); on every (re)connection the subscriptions are (re)made at QoS 1, ``connected`` is
set and ``on_connected`` runs: that is where owners re-synchronise (the device asks for its pending
jobs, the server re-announces them, the alert publisher sends what it queued). :meth:`publish` never
blocks: it returns the PUBACK future for an owner that must know (alerts), the others let the counters
tell. :meth:`close` disconnects and joins the thread. No rclpy here.
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

from robot_platform.messaging.backoff import Backoff
from robot_platform.mqtt.connection import BrokerSettings, OnInterrupted, OnResumed, build_connection

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
FIRST_CONNECT_BACKOFF_MIN_S = 0.5
FIRST_CONNECT_BACKOFF_MAX_S = 15.0
SUBSCRIBE_TIMEOUT_S = 10.0
DISCONNECT_TIMEOUT_S = 3.0

OnMessage = Callable[[str, bytes], None]
Builder = Callable[[BrokerSettings, OnInterrupted, OnResumed], mqtt.Connection]


class MqttClient:
    """A persistent-session MQTT 3.1.1 connection with fixed subscriptions, QoS 1 publishes and counters.

    Args:
        settings: broker and identity (validated by the owner, who knows its parameter names).
        subscriptions: topic filters subscribed at QoS 1 on every connection.
        on_message: ``(topic, payload)`` from awscrt's event-loop thread; must not block.
        on_connected: called (from a client or CRT-spawned thread) after every (re)connection once the
            subscriptions are made.
        connect_timeout_s, backoff_max_s: the first connection's attempt timeout and retry ceiling.
        build: the connection factory (tests pass a fake; production uses :func:`build_connection`).

    Counters: ``published`` (handed to awscrt), ``publish_errors`` (refused, failed, or before the first
    connection), ``denied_subscriptions`` (filters the broker refused: an ACL or IoT policy problem).
    """

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        subscriptions: Sequence[str] = (),
        on_message: OnMessage | None = None,
        on_connected: Callable[[], None] | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        backoff_max_s: float = FIRST_CONNECT_BACKOFF_MAX_S,
        build: Builder = build_connection,
    ) -> None:
        self.settings = settings
        self.subscriptions = tuple(subscriptions)
        self.on_message = on_message
        self.on_connected = on_connected or (lambda: None)
        self.connect_timeout_s = connect_timeout_s
        self.backoff_max_s = backoff_max_s
        self._build = build
        self.connected = threading.Event()
        self.published = 0
        self.publish_errors = 0
        self.denied_subscriptions: list[str] = []
        self._stop = threading.Event()
        self._conn: mqtt.Connection | None = None
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{settings.client_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def publish(self, topic: str, payload: bytes) -> Future | None:
        """QoS 1, non-blocking; returns the future completed by the PUBACK (None when not handed over).

        awscrt queues while a dropped connection is being re-established; before the first connection
        the message is dropped and counted (owners re-sync in ``on_connected``)."""
        conn = self._conn
        if conn is None:
            self.publish_errors += 1
            return None
        try:
            future, _packet_id = conn.publish(topic, payload, mqtt.QoS.AT_LEAST_ONCE)
        except crt_exceptions.AwsCrtError as exc:
            self.publish_errors += 1
            log.warning("MQTT publish to %s failed: %s", topic, exc)
            return None
        self.published += 1
        future.add_done_callback(self._publish_done)
        return future

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect and join the thread (safe before :meth:`start` and twice)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    # ---- internals ----------------------------------------------------------------------------------
    def _publish_done(self, future: Future) -> None:
        if future.cancelled() or future.exception() is not None:
            self.publish_errors += 1

    def _run(self) -> None:
        settings = self.settings
        backoff = Backoff(FIRST_CONNECT_BACKOFF_MIN_S, self.backoff_max_s)
        while not self._stop.is_set():
            try:
                conn = self._build(settings, self._interrupted, self._resumed)
                if self.on_message is not None:
                    # One handler for every message, set before CONNECT: with a persistent session the
                    # broker delivers what it queued while we were away right after CONNACK, before our
                    # SUBSCRIBEs are answered; per-subscription callbacks would not exist yet and awscrt
                    # would drop the message (acked).
                    conn.on_message(self._on_raw)
                conn.connect().result(timeout=self.connect_timeout_s)
            except (crt_exceptions.AwsCrtError, FutureTimeout, OSError, RuntimeError) as exc:
                log.warning(
                    "MQTT connect to %s:%d as %s failed: %s", settings.host, settings.port, settings.client_id, exc
                )
                self._stop.wait(backoff.next_delay())
                continue
            self._conn = conn
            log.info("MQTT connected to %s:%d as %s", settings.host, settings.port, settings.client_id)
            self._on_up()
            break
        self._stop.wait()
        conn, self._conn = self._conn, None
        self.connected.clear()
        if conn is not None:
            with contextlib.suppress(crt_exceptions.AwsCrtError, FutureTimeout):  # broker gone: nothing to close
                conn.disconnect().result(timeout=DISCONNECT_TIMEOUT_S)

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
        except Exception:  # the owner's re-sync failing must not kill the thread; logged with traceback
            log.exception("on_connected failed")

    def _on_raw(self, topic: str, payload: bytes, **_kwargs: object) -> None:
        if self.on_message is None:
            return
        try:
            self.on_message(topic, bytes(payload))
        except Exception:  # a handler bug must not kill the CRT thread; logged with traceback
            log.exception("MQTT message handler failed for %s", topic)

    def _interrupted(self, connection: mqtt.Connection, error: Exception, **_kwargs: object) -> None:
        self.connected.clear()
        log.warning("MQTT connection to %s interrupted: %s", self.settings.host, error)

    def _resumed(self, connection: mqtt.Connection, return_code: object, session_present: bool, **_kw: object) -> None:
        log.info("MQTT connection to %s resumed (session present: %s)", self.settings.host, session_present)
        # Subscribing again is harmless with a present session and required without one. Done in a thread:
        # waiting for SUBACKs inside a CRT callback would block the event loop that delivers them.
        threading.Thread(target=self._on_up, name=f"mqtt-resync-{self.settings.client_id}", daemon=True).start()
