"""MQTT client-id takeover (hardening item 4) against a real Mosquitto run from the shipped config.

Before the fix, Mosquitto ran with ``use_identity_as_username`` and no check at CONNECT: r1's certificate
connected with client id ``deploy-r2`` and, by MQTT session takeover, disconnected r2's job listener.
Now the rp_client_id_auth plugin (built by colcon from src/robot_platform_mosquitto_auth) binds the client
id to the certificate's CN. With two robots' certificates:

- r2's job listener (``deploy-r2``) is connected and subscribed to its job notifications;
- r1's certificate is refused with ``deploy-r2`` and every other id that is not its own (r2's other ids,
  the jobs service's, a made-up one, a near miss), and the refusals are logged with a count;
- r2's listener was never interrupted and still receives the jobs service's notification afterwards;
- r1's own ids (``deploy-r1``, ``health-r1``, ``r1``) connect, and the user name is the certificate's CN
  whatever the client sends: r1 claiming the user name ``jobs-service`` still cannot read r2's jobs.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import REPO, free_port, wait_for, wait_port
from robot_platform.site_setup import certs
from robot_platform.site_setup.mosquitto_config import render_conf, site_overrides

MOSQUITTO = "/usr/sbin/mosquitto"
QUIET_S = 1.0  # a message that must not arrive is watched this long after a later one did


class Client:
    """awscrt MQTT 3.1.1 client with a site certificate (what deploy_service and jobs_service use)."""

    def __init__(self, port: int, secrets: Path, cert_name: str, client_id: str, username: str = "") -> None:
        from awsiot import mqtt_connection_builder

        base = secrets / "robots" / cert_name if cert_name.startswith("r") else secrets / cert_name
        self.messages: list[tuple[str, bytes]] = []
        self.interrupted = threading.Event()
        self._lock = threading.Lock()
        self.conn = mqtt_connection_builder.mtls_from_path(
            endpoint="127.0.0.1", port=port, cert_filepath=f"{base}.crt", pri_key_filepath=f"{base}.key",
            ca_filepath=str(secrets / "ca.crt"), client_id=client_id, clean_session=True,
            enable_metrics_collection=False, username=username,
            on_connection_interrupted=lambda connection, error, **kw: self.interrupted.set(),
        )  # fmt: skip

    def connect(self) -> None:
        self.conn.connect().result(10)

    def subscribe(self, topic_filter: str) -> int:
        from awscrt import mqtt

        def on_message(topic: str, payload: bytes, **_kw: Any) -> None:
            with self._lock:
                self.messages.append((topic, payload))

        future, _ = self.conn.subscribe(topic_filter, mqtt.QoS.AT_LEAST_ONCE, on_message)
        return int(future.result(10)["qos"])

    def publish(self, topic: str, payload: bytes) -> None:
        from awscrt import mqtt

        self.conn.publish(topic, payload, mqtt.QoS.AT_LEAST_ONCE)[0].result(10)

    def received(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.conn.disconnect().result(5)


def test_a_certificate_can_only_use_its_own_client_ids(procs: Any, tmp_path: Path) -> None:
    from awscrt import mqtt
    from awscrt.exceptions import AwsCrtError

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
    overrides = site_overrides(port, secrets, REPO / "config" / "mosquitto" / "acl", tmp_path / "mosquitto-data",
                               user="root" if os.geteuid() == 0 else "")  # fmt: skip
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(render_conf((REPO / "config" / "mosquitto" / "mosquitto.conf").read_text(), overrides))
    procs.start("mosquitto", [MOSQUITTO, "-c", str(conf)], stop_last=True)
    wait_port(port)

    listener = Client(port, secrets, "r2", "deploy-r2")
    listener.connect()
    assert listener.subscribe("$aws/things/r2/jobs/notify-next") == mqtt.QoS.AT_LEAST_ONCE
    server = Client(port, secrets, "jobs-service", "jobs-service")
    server.connect()
    opened = [listener, server]
    try:
        stolen_ids = ["deploy-r2", "health-r2", "r2", "jobs-service", "deploy-r1x", "xdeploy-r1", "anything"]
        log = procs.child("mosquitto").output
        for client_id in stolen_ids:
            thief = Client(port, secrets, "r1", client_id)
            # MQTT 3.1.1 CONNACK "not authorized"; awscrt reports it as a failed connect (a protocol error)
            with pytest.raises(AwsCrtError):
                thief.connect()
            line = f"refused CONNECT of client id '{client_id}' with certificate CN 'r1'"
            wait_for(lambda line=line: line in log(), 5.0, f"the refusal of {client_id} in Mosquitto's log")
        assert f"({len(stolen_ids)} refused so far)" in log()

        # r2's listener was never kicked off and still gets its job notifications.
        server.publish("$aws/things/r2/jobs/notify-next", b'{"execution": {"jobId": "j1"}}')
        wait_for(lambda: listener.received(), 10.0, "r2's notification after the takeover attempts")
        assert not listener.interrupted.is_set(), "r2's job listener was disconnected"

        # r1's own ids work; the user name is the CN whatever the client claims.
        for client_id in ("deploy-r1", "health-r1", "r1"):
            own = Client(port, secrets, "r1", client_id)
            own.connect()
            opened.append(own)
        claimer = Client(port, secrets, "r1", "health-r1", username="jobs-service")  # takes over r1's own id only
        claimer.connect()
        opened.append(claimer)
        claimer.subscribe("$aws/things/+/jobs/#")  # granted or not, the ACL of CN r1 applies to deliveries
        claimer.subscribe("$aws/things/r1/jobs/#")
        server.publish("$aws/things/r2/jobs/notify-next", b"for-r2")
        server.publish("$aws/things/r1/jobs/notify-next", b"for-r1")
        wait_for(lambda: any(p == b"for-r1" for _, p in claimer.received()), 10.0, "r1's own notification")
        time.sleep(QUIET_S)
        assert all(p != b"for-r2" for _, p in claimer.received()), "r1 read r2's jobs by claiming a user name"
        assert not listener.interrupted.is_set()
    finally:
        for client in opened:
            with contextlib.suppress(Exception):  # a client the broker already dropped
                client.close()
