"""Prometheus metrics of the bridge, read from the bridge's own counters at scrape time.

A custom collector over :meth:`BridgeCore.snapshot` (+ mirror and link counters) rather than a second
set of prometheus Counters: one source of truth, nothing to keep in sync on the hot path. Registry per
instance (no global REGISTRY), served on 127.0.0.1 only (:class:`~robot_platform.common.metrics_server.MetricsServer`).

Exported (all labelled ``robot``):
    robot_bridge_out_messages_total{topic}               sent to NATS
    robot_bridge_out_dropped_rate_total{topic}           replaced by a newer message (keep-latest rate limit)
    robot_bridge_out_errors_total{topic,kind}            refused (oversized, invalid...)
    robot_bridge_out_encode_seconds_total{topic}         time spent encoding
    robot_bridge_in_messages_total{subject}              received on command subjects (and mirror subjects)
    robot_bridge_in_delivered_total{subject}             published into ROS
    robot_bridge_in_duplicates_total{subject}            dropped as duplicates (Nats-Msg-Id)
    robot_bridge_in_errors_total{subject,kind}           rejected (malformed, not_allowed, wrong_type...)
    robot_bridge_in_decode_seconds_total{subject}
    robot_bridge_link_*_total                            sent, received, dropped_outbox, dropped_slow_consumer,
                                                         connects, disconnects, connect_failures
    robot_bridge_link_up, robot_bridge_link_queued       gauges
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from robot_platform.common.metrics_server import MetricsServer

P = "robot_bridge"


class BridgeCollector:
    """Collector reading ``snapshot()`` (core + mirror) and ``link()`` (link counters) when scraped."""

    def __init__(self, robot_id: str, snapshot: Callable[[], dict[str, Any]], link: Callable[[], dict[str, Any]]):
        self.robot_id = robot_id
        self._snapshot = snapshot
        self._link = link

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        r = self.robot_id
        out_msgs = CounterMetricFamily(f"{P}_out_messages", "messages sent to NATS", labels=["robot", "topic"])
        out_drop = CounterMetricFamily(f"{P}_out_dropped_rate", "dropped by the rate limit", labels=["robot", "topic"])
        out_err = CounterMetricFamily(f"{P}_out_errors", "outbound refusals", labels=["robot", "topic", "kind"])
        out_t = CounterMetricFamily(f"{P}_out_encode_seconds", "encode time", labels=["robot", "topic"])
        for topic, st in snap.get("out", {}).items():
            out_msgs.add_metric([r, topic], st["out"])
            out_drop.add_metric([r, topic], st["dropped_rate"])
            out_t.add_metric([r, topic], st["codec_ms"] / 1000.0)
            for kind, n in st["errors"].items():
                out_err.add_metric([r, topic, kind], n)
        in_msgs = CounterMetricFamily(f"{P}_in_messages", "messages received", labels=["robot", "subject"])
        in_ok = CounterMetricFamily(f"{P}_in_delivered", "published into ROS", labels=["robot", "subject"])
        in_dup = CounterMetricFamily(f"{P}_in_duplicates", "duplicates dropped", labels=["robot", "subject"])
        in_err = CounterMetricFamily(f"{P}_in_errors", "inbound rejections", labels=["robot", "subject", "kind"])
        in_t = CounterMetricFamily(f"{P}_in_decode_seconds", "decode time", labels=["robot", "subject"])
        for group in ("in", "mirror"):
            for subject, st in snap.get(group, {}).items():
                in_msgs.add_metric([r, subject], st["in"])
                in_ok.add_metric([r, subject], st["delivered"])
                in_dup.add_metric([r, subject], st["duplicates"])
                in_t.add_metric([r, subject], st["codec_ms"] / 1000.0)
                for kind, n in st["errors"].items():
                    in_err.add_metric([r, subject, kind], n)
        yield from (out_msgs, out_drop, out_err, out_t, in_msgs, in_ok, in_dup, in_err, in_t)
        link = self._link()
        for name in ("sent", "received", "dropped_outbox", "dropped_slow_consumer", "connects", "disconnects",
                     "connect_failures"):  # fmt: skip
            family = CounterMetricFamily(f"{P}_link_{name}", f"NATS link {name}", labels=["robot"])
            family.add_metric([r], link[name])
            yield family
        up = GaugeMetricFamily(f"{P}_link_up", "1 while connected to NATS", labels=["robot"])
        up.add_metric([r], 1.0 if link["connected"] else 0.0)
        queued = GaugeMetricFamily(f"{P}_link_queued", "messages waiting in the outbox", labels=["robot"])
        queued.add_metric([r], link["queued"])
        yield up
        yield queued


class BridgeMetrics:
    """Owns the registry and the HTTP server."""

    def __init__(self, collector: BridgeCollector) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)  # type: ignore[arg-type]
        self._server = MetricsServer(self.registry)

    def serve(self, port: int) -> int:
        """Serve /metrics on 127.0.0.1:``port`` (0 picks a free port); returns the bound port."""
        return self._server.start(port)

    def close(self) -> None:
        self._server.close()
