"""Unit tests of MqttAlertPublisher: configuration checks, the bounded queue, delivery on a fake broker connection."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path

import pytest
from awscrt import exceptions as crt_exceptions
from mqtt_testutil import FakeConnection

from robot_platform.exceptions import ConfigError
from robot_platform.health.mqtt_out import MqttAlertPublisher


def make(tmp_path: Path, **kw: str) -> MqttAlertPublisher:
    args = {"host": "127.0.0.1", "port": 8883, "client_id": "health-r1", "topic": "robots/r1/alerts"}
    args.update(kw)
    return MqttAlertPublisher(**args)  # type: ignore[arg-type]


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, str]:
    files = {}
    for name in ("ca", "cert", "key"):
        path = tmp_path / f"{name}.pem"
        path.write_text("-----BEGIN X-----\n-----END X-----\n")
        files[f"{name}_file"] = str(path)
    return files


def test_tls_files_present_is_accepted(tmp_path: Path, pem: dict[str, str]) -> None:
    pub = make(tmp_path, host="broker.site", **pem)
    assert (pub.settings.cert_file, pub.settings.key_file) == (pem["cert_file"], pem["key_file"])


@pytest.mark.parametrize("missing", ["ca_file", "cert_file", "key_file"])
def test_missing_tls_file_is_a_config_error_naming_the_parameter(
    tmp_path: Path, pem: dict[str, str], missing: str
) -> None:
    pem[missing] = str(tmp_path / "nope.pem")
    with pytest.raises(ConfigError) as err:
        make(tmp_path, **pem)
    assert err.value.key == f"mqtt_{missing}" and "not readable" in str(err.value)


def test_cert_without_key_and_plain_tcp_off_loopback_are_refused(tmp_path: Path, pem: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="mqtt_cert_file"):
        make(tmp_path, cert_file=pem["cert_file"])
    with pytest.raises(ConfigError, match="loopback"):
        make(tmp_path, host="10.0.0.5")


@pytest.mark.parametrize("topic", ["", "robots/+/alerts", "robots/#"])
def test_wildcard_or_empty_topic_is_refused(tmp_path: Path, topic: str) -> None:
    with pytest.raises(ConfigError, match="mqtt_topic"):
        make(tmp_path, topic=topic)


def test_full_queue_drops_the_oldest_alert_and_counts_it(tmp_path: Path) -> None:
    results: list[str] = []
    pub = MqttAlertPublisher(
        host="127.0.0.1", port=1883, client_id="health-r1", topic="robots/r1/alerts",
        on_result=results.append, queue_max=2,
    )  # fmt: skip
    for n in range(3):
        pub.publish(b"%d" % n)  # not started: nothing is sent, the queue only fills
    assert results == ["dropped"] and list(pub._queue) == [b"1", b"2"]
    pub.close()


def test_alerts_wait_for_the_connection_and_a_failed_puback_is_retried() -> None:
    conn = FakeConnection()
    results: list[str] = []
    done = threading.Event()

    def on_result(result: str) -> None:
        results.append(result)
        if result == "ok":
            done.set()

    pub = MqttAlertPublisher(
        host="127.0.0.1", port=1883, client_id="health-r1", topic="robots/r1/alerts", on_result=on_result,
        build=lambda settings, interrupted, resumed: conn,
    )  # fmt: skip
    conn.puback = Future()
    conn.puback.set_exception(crt_exceptions.AwsCrtError(1, "AWS_ERROR_MQTT_TIMEOUT", "no PUBACK"))
    pub.publish(b"alert-1")  # queued before the start: sent once connected
    pub.start()
    try:
        assert done.wait(10.0)
        assert results == ["error", "ok"]
        assert conn.published == [("robots/r1/alerts", b"alert-1")] * 2
    finally:
        pub.close()
