"""Broker settings and the one place an awscrt MQTT connection is built (mutual TLS or loopback TCP).

Why one builder: deploy_service (IoT Jobs device side), health_monitor_tree (alert push) and
jobs_service (IoT Jobs server side) must connect the same way: ``mtls_from_path`` exactly as for AWS IoT
Core, so the same code talks to an on-site Mosquitto (site CA, client certificate CN = thing name) and
to AWS IoT Core (Amazon root CA, the thing's certificate, the account's ATS endpoint on 8883). Without
client certificates the connection is plain TCP, which :meth:`BrokerSettings.validate` allows only to a
loopback broker and only where the owner says so (the health alert push to an on-site broker).

Every connection: MQTT 3.1.1, persistent session (``clean_session=False``: the broker keeps
subscriptions and QoS 1 messages while we are offline), 30 s keep-alive, awscrt's own reconnect after
an established connection drops (1 s doubling to 30 s), no SDK version in the CONNECT user name.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from awscrt import io, mqtt

from robot_platform.exceptions import ConfigError

KEEP_ALIVE_S = 30
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

OnInterrupted = Callable[..., None]
OnResumed = Callable[..., None]


@dataclass(frozen=True)
class ParamNames:
    """The node parameter names quoted by configuration errors (nodes name their MQTT settings
    differently: deploy_service and jobs_service ``mqtt_cert``, health_monitor_tree ``mqtt_cert_file``)."""

    host: str = "mqtt_endpoint"
    port: str = "mqtt_port"
    ca_file: str = "mqtt_ca"
    cert_file: str = "mqtt_cert"
    key_file: str = "mqtt_key"


@dataclass(frozen=True)
class BrokerSettings:
    """Where and as whom to connect.

    Attributes:
        host, port: the broker (AWS IoT Core ATS endpoint, or the site's Mosquitto).
        client_id: MQTT client id (unique per connection; the site broker binds it to the certificate CN).
        ca_file, cert_file, key_file: PEM paths; ``ca_file`` empty uses the system trust store.
    """

    host: str
    port: int
    client_id: str
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @property
    def mutual_tls(self) -> bool:
        return bool(self.cert_file)

    def validate(
        self, names: ParamNames = ParamNames(), *, plain_to_loopback: bool = False, files_must_exist: bool = False
    ) -> None:
        """Raise :class:`ConfigError` (naming the parameter) for settings that can never work.

        Args:
            plain_to_loopback: allow no client certificate when the broker is on loopback.
            files_must_exist: check the PEM files are readable now: a missing file is then a
                configuration error reported at start, not a reason to retry forever.
        """
        if not 0 < self.port < 65536:
            raise ConfigError(names.port, self.port, "must be a TCP port")
        if plain_to_loopback:
            if bool(self.cert_file) != bool(self.key_file):
                raise ConfigError(
                    names.cert_file, self.cert_file, f"set both {names.cert_file} and {names.key_file}, or neither"
                )
            if not self.cert_file and self.host not in LOOPBACK_HOSTS:
                raise ConfigError(
                    names.host, self.host, "plain MQTT is only allowed to a loopback broker; set TLS files"
                )
        else:
            for name, value in ((names.cert_file, self.cert_file), (names.key_file, self.key_file)):
                if not value:
                    raise ConfigError(name, value, "mutual TLS needs a client certificate and key")
        if files_must_exist:
            for name, path in ((names.ca_file, self.ca_file), (names.cert_file, self.cert_file),
                               (names.key_file, self.key_file)):  # fmt: skip
                if path and not os.access(path, os.R_OK):
                    raise ConfigError(name, path, "file missing or not readable (PEM expected)")


def check_publish_topic(name: str, topic: str) -> None:
    """A topic to publish to must be concrete: no wildcards, no NUL, not empty."""
    if not topic or any(ch in topic for ch in "#+\0"):
        raise ConfigError(name, topic, "must be a concrete topic (no wildcards)")


def build_connection(settings: BrokerSettings, on_interrupted: OnInterrupted, on_resumed: OnResumed) -> mqtt.Connection:
    """A new, unconnected awscrt connection for ``settings`` (mutual TLS when a certificate is set)."""
    if settings.mutual_tls:
        from awsiot import mqtt_connection_builder  # imported late: pulls in the whole SDK

        return mqtt_connection_builder.mtls_from_path(
            endpoint=settings.host,
            port=settings.port,
            cert_filepath=settings.cert_file,
            pri_key_filepath=settings.key_file,
            ca_filepath=settings.ca_file or None,
            client_id=settings.client_id,
            clean_session=False,
            keep_alive_secs=KEEP_ALIVE_S,
            reconnect_min_timeout_secs=RECONNECT_MIN_S,
            reconnect_max_timeout_secs=RECONNECT_MAX_S,
            enable_metrics_collection=False,
            on_connection_interrupted=on_interrupted,
            on_connection_resumed=on_resumed,
        )
    elg = io.EventLoopGroup(1)
    bootstrap = io.ClientBootstrap(elg, io.DefaultHostResolver(elg))
    return mqtt.Connection(
        client=mqtt.Client(bootstrap, None),
        host_name=settings.host,
        port=settings.port,
        client_id=settings.client_id,
        clean_session=False,
        keep_alive_secs=KEEP_ALIVE_S,
        reconnect_min_timeout_secs=RECONNECT_MIN_S,
        reconnect_max_timeout_secs=RECONNECT_MAX_S,
        on_connection_interrupted=on_interrupted,
        on_connection_resumed=on_resumed,
    )
