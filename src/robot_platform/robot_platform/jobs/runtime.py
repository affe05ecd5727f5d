"""jobs_service's parts wired together: store, service, MQTT link, NATS API, tick thread, metrics.

Plain Python (the node only reads parameters into :class:`JobsConfig`). Start order: store (fails fast
on a bad path), service, metrics, NATS API, MQTT (on connect the service re-announces pending executions
to every thing), tick thread. :meth:`JobsRuntime.close` stops them in reverse order.

With ``ha`` (jobs/ha.py) only the store and metrics start at once; the API, MQTT and tick start when this
instance takes the lease (after rebuilding the store from the replicated state) and stop when it loses it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from robot_platform.common.metrics_server import MetricsServer
from robot_platform.deploy.fetch import S3Config, load_credentials_file
from robot_platform.exceptions import ConfigError
from robot_platform.jobs.catalogue import PackageCatalogue
from robot_platform.jobs.ha import JobsHa
from robot_platform.jobs.nats_api import JobsNatsApi
from robot_platform.jobs.service import JobsService
from robot_platform.jobs.store import JobStore
from robot_platform.messaging.connect import Credentials
from robot_platform.mqtt import jobs_protocol
from robot_platform.mqtt.client import MqttClient
from robot_platform.mqtt.connection import BrokerSettings
from robot_platform.mqtt.jobs_protocol import ExecStatus

log = logging.getLogger(__name__)

TICK_MAX_S = 1.0  # timeouts are checked at least this often
TICK_MIN_S = 0.05


@dataclass(frozen=True)
class JobsConfig:
    store_path: str
    nats_url: str = ""
    nats_user: str = ""
    nats_password: str = field(default="", repr=False)
    mqtt_endpoint: str = ""
    mqtt_port: int = 8883
    mqtt_ca: str = ""
    mqtt_cert: str = ""
    mqtt_key: str = ""
    mqtt_client_id: str = "jobs-service"
    host: str = "127.0.0.1"
    metrics_port: int = 0
    ha: bool = False
    packages_bucket: str = ""  # jobs.catalogue lists it (read-only); empty: no catalogue
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_credentials_file: str = ""


def catalogue_of(config: JobsConfig) -> PackageCatalogue | None:
    """The packages-bucket catalogue (jobs.catalogue) when ``packages_bucket`` is set."""
    if not config.packages_bucket:
        return None
    access, secret = load_credentials_file(Path(config.s3_credentials_file)) if config.s3_credentials_file else ("", "")
    s3 = S3Config(endpoint_url=config.s3_endpoint_url, region=config.s3_region, access_key_id=access,
                  secret_access_key=secret)  # fmt: skip
    return PackageCatalogue.from_config(config.packages_bucket, s3)


class _Collector:
    """Prometheus view of the service: request/outcome counters and executions per status."""

    def __init__(self, runtime: JobsRuntime) -> None:
        self.runtime = runtime

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        service = self.runtime.service
        counter = CounterMetricFamily("rp_jobs_events", "jobs service events by kind", labels=["kind"])
        for kind, value in sorted(service.counters.items()):
            counter.add_metric([kind], value)
        yield counter
        gauge = GaugeMetricFamily("rp_jobs_executions", "job executions by status", labels=["status"])
        with service.lock_for_read():
            for status in ExecStatus:
                gauge.add_metric([status.value], len(service.store.with_status(status)))
        yield gauge
        link = self.runtime.link
        yield GaugeMetricFamily(
            "rp_jobs_mqtt_connected",
            "1 when connected to the broker",
            value=float(bool(link and link.connected.is_set())),
        )
        yield CounterMetricFamily(
            "rp_jobs_mqtt_publish_errors", "MQTT publishes that failed", value=float(link.publish_errors if link else 0)
        )
        ha = self.runtime.ha
        if ha is not None:
            yield GaugeMetricFamily(
                "rp_jobs_ha_active", "1 while this instance holds the lease", value=float(ha.active.is_set())
            )
            yield GaugeMetricFamily(
                "rp_jobs_ha_pending", "committed rows not yet in JOBS_STATE", value=float(ha.pending)
            )
        api = self.runtime.api
        yield CounterMetricFamily(
            "rp_jobs_events_dropped",
            "console events dropped (queue full, NATS down)",
            value=float(api.dropped if api else 0),
        )


class JobsRuntime:
    """Runs the jobs service until :meth:`close`."""

    def __init__(self, config: JobsConfig) -> None:
        if config.mqtt_endpoint and not (config.mqtt_cert and config.mqtt_key):
            raise ConfigError("mqtt_cert", config.mqtt_cert, "the broker needs the service's client certificate")
        self.config = config
        self.store = JobStore(Path(config.store_path).expanduser())
        self.link: MqttClient | None = None
        self.api: JobsNatsApi | None = None
        self.service = JobsService(self.store, self._publish, self._on_event)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._metrics_server: MetricsServer | None = None
        self._thread: threading.Thread | None = None
        self.ha: JobsHa | None = None
        if config.ha:
            if not config.nats_url:
                raise ConfigError("ha", "true", "active/standby needs nats_url (the lease and state live in the hub)")
            credentials = Credentials(config.nats_user, config.nats_password)
            self.ha = JobsHa(config.nats_url, credentials, self._on_active, self._serve_stop)
            self.store.on_change = self.ha.replicate

    def start(self) -> None:
        config = self.config
        if config.metrics_port:
            registry = CollectorRegistry()
            registry.register(_Collector(self))
            self._metrics_server = MetricsServer(registry, address=config.host)
            self._metrics_server.start(config.metrics_port)
        if self.ha is not None:
            self.ha.start()
        else:
            self._serve_start()

    def _on_active(self, rows: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """The lease is ours: the replicated state replaces the local store (or seeds it), then serve."""
        with self.service.lock_for_read():
            if rows:
                self.store.replace_all(rows)
                seed = []
            else:
                seed = self.store.all_rows()
        self._serve_start()
        return seed

    def _serve_start(self) -> None:
        config = self.config
        self._stop.clear()
        if config.nats_url:
            self.api = JobsNatsApi(config.nats_url, self.service, user=config.nats_user, password=config.nats_password,
                                   catalogue=catalogue_of(config))  # fmt: skip
            self.api.start()
        if config.mqtt_endpoint:
            broker = BrokerSettings(
                host=config.mqtt_endpoint,
                port=config.mqtt_port,
                client_id=config.mqtt_client_id,
                ca_file=config.mqtt_ca,
                cert_file=config.mqtt_cert,
                key_file=config.mqtt_key,
            )
            broker.validate()
            self.link = MqttClient(
                broker,
                subscriptions=jobs_protocol.SERVER_SUBSCRIPTIONS,
                on_message=self.service.handle,
                on_connected=self.service.announce_all,
            )
            self.link.start()
        self._thread = threading.Thread(target=self._ticker, name="jobs-tick", daemon=True)
        self._thread.start()

    def _serve_stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self.link is not None:
            self.link.close()
            self.link = None
        if self.api is not None:
            self.api.stop()
            self.api = None

    def close(self) -> None:
        if self.ha is not None:
            self.ha.close()  # steps down (stops serving), writes what is queued, releases the lease
        self._serve_stop()
        if self._metrics_server is not None:
            self._metrics_server.close()
        self.store.close()

    def _publish(self, topic: str, payload: bytes) -> None:
        if self.link is not None:
            self.link.publish(topic, payload)

    def _on_event(self, event: dict[str, Any]) -> None:
        if self.api is not None:
            self.api.publish_event(event)
        self._wake.set()  # a change may make a release due sooner than the last tick computed

    def _ticker(self) -> None:
        delay = 0.0
        while not self._stop.is_set():
            self._wake.wait(timeout=delay)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                due = self.service.tick(devices_online=self.link is None or self.link.connected.is_set())
            except Exception:  # a failed tick (disk full...) must not end timeouts forever; logged, retried
                log.exception("jobs tick failed")
                due = None
            delay = TICK_MAX_S if due is None else max(TICK_MIN_S, min(TICK_MAX_S, due))
