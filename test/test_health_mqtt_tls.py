"""System test: health_monitor_tree pushes alerts over MQTT with mutual TLS to the site Mosquitto.

Real parts: Mosquitto run from the shipped config/mosquitto/mosquitto.conf and acl (TLS only, client
certificates from the site CA made by robot_platform/site_setup/certs.py, user = certificate CN), robot_sim
(fault injection) and health_monitor_tree with r1's certificate (mqtt_ca_file/mqtt_cert_file/
mqtt_key_file). Checked:

* a silenced /scan raises an alert that a subscriber holding the ``jobs-service`` certificate (allowed by
  the ACL to read ``robots/+/alerts``) receives on ``robots/r1/alerts``, same alert id as on ROS, and its
  clear after the scan is restored;
* r1's certificate cannot publish to ``robots/r2/alerts``: the broker drops it (MQTT 3.1.1 has no negative
  PUBACK), proven by a later message of r1 on its own topic arriving while the forged one never does.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import rclpy

from helpers import REPO, free_port, ros_env, wait_for, wait_port
from robot_platform.site_setup import certs
from robot_platform.site_setup.mosquitto_config import render_conf, site_overrides
from robot_platform_interfaces.srv import InjectFault
from test_health_system import CHECKS, SRC, TICK_HZ, WAIT_S, Observer

MOSQUITTO = "/usr/sbin/mosquitto"


class Subscriber:
    """awscrt MQTT client with a site certificate, collecting (topic, payload) of one filter."""

    def __init__(self, port: int, secrets: Path, name: str, cert: Path, key: Path) -> None:
        from awsiot import mqtt_connection_builder

        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.conn = mqtt_connection_builder.mtls_from_path(
            endpoint="127.0.0.1",
            port=port,
            cert_filepath=str(cert),
            pri_key_filepath=str(key),
            ca_filepath=str(secrets / "ca.crt"),
            client_id=name,  # the broker allows a certificate only its own client ids (CN = name)
            clean_session=True,
            enable_metrics_collection=False,
        )
        self.conn.connect().result(10)

    def subscribe(self, topic_filter: str) -> None:
        from awscrt import mqtt

        def on_message(topic: str, payload: bytes, **_kw: Any) -> None:
            with self._lock:
                self.messages.append((topic, payload))

        future, _ = self.conn.subscribe(topic_filter, mqtt.QoS.AT_LEAST_ONCE, on_message)
        assert future.result(10)["qos"] == mqtt.QoS.AT_LEAST_ONCE, "the ACL should grant this subscription"

    def publish(self, topic: str, payload: bytes) -> None:
        from awscrt import mqtt

        self.conn.publish(topic, payload, mqtt.QoS.AT_LEAST_ONCE)[0].result(10)

    def received(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def alerts(self) -> list[tuple[str, dict[str, Any]]]:
        return [(t, json.loads(p)) for t, p in self.received() if p.startswith(b"{")]

    def close(self) -> None:
        self.conn.disconnect().result(5)


def test_alert_push_over_mutual_tls_and_acl(ros_domain: int, procs: Any, tmp_path: Path) -> None:
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto not installed: apt-get install -y mosquitto (Debian package)")
    secrets = tmp_path / "secrets"
    certs.init_ca(secrets)
    for robot in ("r1", "r2"):
        certs.issue_robot(secrets, robot)
    certs.issue(secrets, "mosquitto", "mosquitto", server=True, dns=["localhost"], ips=["127.0.0.1"])
    certs.issue(secrets, "jobs-service", "jobs-service", server=False)
    port = free_port()
    (tmp_path / "mosquitto-data").mkdir()
    overrides = site_overrides(
        port,
        secrets,
        REPO / "config" / "mosquitto" / "acl",
        tmp_path / "mosquitto-data",
        user="root" if os.geteuid() == 0 else "",
    )
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(render_conf((REPO / "config" / "mosquitto" / "mosquitto.conf").read_text(), overrides))
    procs.start("mosquitto", [MOSQUITTO, "-c", str(conf)], stop_last=True)
    wait_port(port)

    env = ros_env(ros_domain, {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")})
    checks = tmp_path / "checks.yaml"
    checks.write_text(CHECKS)
    procs.start(
        "robot_sim", [sys.executable, "-m", "robot_platform.sim.node", "--ros-args", "-p", "robot_id:=r1"], env=env
    )
    argv = [sys.executable, "-m", "robot_platform.health.node", "--ros-args"]
    for param in (
        "robot_id:=r1",
        f"tick_rate_hz:={TICK_HZ}",
        f"checks_file:={checks}",
        "metrics_port:=0",
        "nats_url:=''",
        f"state_dir:={tmp_path / 'health-state'}",
        "mqtt_host:=127.0.0.1",
        f"mqtt_port:={port}",
        f"mqtt_ca_file:={secrets / 'ca.crt'}",
        f"mqtt_cert_file:={secrets / 'robots' / 'r1.crt'}",
        f"mqtt_key_file:={secrets / 'robots' / 'r1.key'}",
    ):
        argv += ["-p", param]
    procs.start("health_monitor_tree", argv, env=env)

    server = Subscriber(port, secrets, "jobs-service", secrets / "jobs-service.crt", secrets / "jobs-service.key")
    r1 = Subscriber(port, secrets, "r1", secrets / "robots" / "r1.crt", secrets / "robots" / "r1.key")
    rclpy.init()
    obs = Observer()
    try:
        server.subscribe("robots/+/alerts")
        obs.spin_until(
            obs.started_healthy,
            WAIT_S,
            "a healthy robot (0 active faults)",
        )
        injected = time.monotonic()
        obs.inject(InjectFault.Request.FAULT_SILENCE_SENSOR, target="scan")
        raised = obs.spin_until(lambda: obs.active_since("TOPIC_SILENT.scan", injected), WAIT_S, "scan alert on ROS")[0]
        topic, body = wait_for(
            lambda: next(((t, b) for t, b in server.alerts() if b["alert_id"] == raised.alert_id), None),
            WAIT_S,
            "the alert at the jobs-service subscriber over TLS",
        )
        assert topic == "robots/r1/alerts"
        assert body["active"] is True and body["code"] == "TOPIC_SILENT.scan" and body["robot_id"] == "r1"
        obs.inject(InjectFault.Request.FAULT_RESTORE_SENSOR, target="scan")
        wait_for(
            lambda: any(b["alert_id"] == raised.alert_id and not b["active"] for _, b in server.alerts()),
            WAIT_S,
            "the clear over TLS",
        )

        # ACL: r1 may write only robots/r1/alerts. The forged message goes first; the broker delivers one
        # publisher's messages in order, so once the later allowed one arrived the forged one never will.
        r1.publish("robots/r2/alerts", b"forged-by-r1")
        r1.publish("robots/r1/alerts", b"own-topic-marker")
        wait_for(lambda: ("robots/r1/alerts", b"own-topic-marker") in server.received(), WAIT_S, "r1's marker")
        forged = [(t, p) for t, p in server.received() if t == "robots/r2/alerts"]
        assert forged == [], f"the broker let r1 publish on r2's alert topic: {forged}"
    finally:
        obs.node.destroy_node()
        rclpy.try_shutdown()
        for client in (server, r1):
            client.close()
    codes = procs.stop_all()
    assert codes.get("health_monitor_tree") == 0, codes
