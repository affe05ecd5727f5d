"""Diagnostics flattening and the Prometheus collector, from fake counter snapshots."""

from __future__ import annotations

import urllib.request

from prometheus_client import generate_latest

from robot_platform.bridge.core import TopicStats
from robot_platform.bridge.metrics import BridgeCollector, BridgeMetrics
from robot_platform.bridge.report import flat_values

LINK = {
    "state": "connected", "connected": True, "sent": 10, "received": 4, "queued": 2, "dropped_outbox": 1,
    "dropped_slow_consumer": 0, "connects": 1, "disconnects": 0, "connect_failures": 3,
}  # fmt: skip


def snapshot() -> dict:
    out = TopicStats(out=7, dropped_rate=3, codec_ns=2_000_000)
    out.errors["oversized"] = 1
    cmd = TopicStats(received=5, delivered=2, duplicates=1)
    cmd.errors.update({"malformed": 1, "wrong_type": 1})
    mirrored = TopicStats(received=3, delivered=3, duplicates=2)
    return {
        "robot_id": "r1",
        "out": {"/odom": out.as_dict()},
        "in": {"robots.r1.cmd.cmd_vel": cmd.as_dict()},
        "errors": {"malformed": 1, "wrong_type": 1, "oversized": 1},
        "mirror": {"robots.r2.ros.odom": mirrored.as_dict()},
        "mirror_errors": {"malformed": 4},
    }


def test_flat_values() -> None:
    v = flat_values(snapshot(), LINK)
    assert v["link_state"] == "connected" and v["connect_failures"] == 3
    assert v["errors.malformed"] == 5 and v["errors.oversized"] == 1
    assert v["duplicates"] == 3
    assert v["out/odom.out"] == 7 and v["out/odom.dropped_rate"] == 3 and v["out/odom.errors"] == 1
    assert v["in.robots.r1.cmd.cmd_vel.errors"] == 2 and v["in.robots.r1.cmd.cmd_vel.delivered"] == 2
    assert v["mirror.robots.r2.ros.odom.delivered"] == 3


def test_collector_exports_counters_and_serves_on_loopback() -> None:
    metrics = BridgeMetrics(BridgeCollector("r1", snapshot, lambda: LINK))
    text = generate_latest(metrics.registry).decode()
    assert 'robot_bridge_out_messages_total{robot="r1",topic="/odom"} 7.0' in text
    assert 'robot_bridge_out_errors_total{kind="oversized",robot="r1",topic="/odom"} 1.0' in text
    assert 'robot_bridge_in_errors_total{kind="malformed",robot="r1",subject="robots.r1.cmd.cmd_vel"} 1.0' in text
    assert 'robot_bridge_in_delivered_total{robot="r1",subject="robots.r2.ros.odom"} 3.0' in text
    assert 'robot_bridge_out_encode_seconds_total{robot="r1",topic="/odom"} 0.002' in text
    assert 'robot_bridge_link_up{robot="r1"} 1.0' in text
    assert 'robot_bridge_link_dropped_outbox_total{robot="r1"} 1.0' in text
    port = metrics.serve(0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert "robot_bridge_link_queued" in resp.read().decode()
    finally:
        metrics.close()
