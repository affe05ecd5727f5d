"""mqtt.connection: broker settings checks shared by deploy_service, health_monitor_tree and jobs_service."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_platform.exceptions import ConfigError
from robot_platform.mqtt.connection import BrokerSettings, ParamNames, build_connection, check_publish_topic

HEALTH = ParamNames(host="mqtt_host", ca_file="mqtt_ca_file", cert_file="mqtt_cert_file", key_file="mqtt_key_file")


def tls(tmp_path: Path, host: str = "broker.site", port: int = 8883) -> BrokerSettings:
    files = {}
    for name in ("ca", "cert", "key"):
        path = tmp_path / f"{name}.pem"
        path.write_text("-----BEGIN X-----\n-----END X-----\n")
        files[f"{name}_file"] = str(path)
    return BrokerSettings(host, port, "deploy-r1", **files)


def test_mutual_tls_settings_pass_every_check(tmp_path: Path) -> None:
    settings = tls(tmp_path)
    assert settings.mutual_tls
    settings.validate(files_must_exist=True)
    settings.validate(HEALTH, plain_to_loopback=True, files_must_exist=True)


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_a_port_outside_tcp_range_is_refused(tmp_path: Path, port: int) -> None:
    with pytest.raises(ConfigError) as err:
        BrokerSettings("127.0.0.1", port, "c", cert_file="c", key_file="k").validate()
    assert err.value.key == "mqtt_port"


@pytest.mark.parametrize("missing", ["cert_file", "key_file"])
def test_mutual_tls_is_required_unless_plain_loopback_is_allowed(tmp_path: Path, missing: str) -> None:
    settings = BrokerSettings("127.0.0.1", 8883, "c", cert_file="c.pem", key_file="k.pem")
    settings = BrokerSettings(**{**settings.__dict__, missing: ""})
    with pytest.raises(ConfigError, match="mutual TLS needs") as err:
        settings.validate()
    assert err.value.key == f"mqtt_{missing.removesuffix('_file')}"


def test_plain_tcp_only_to_loopback_and_only_with_both_or_neither_file() -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        BrokerSettings(host, 1883, "c").validate(HEALTH, plain_to_loopback=True)
    with pytest.raises(ConfigError, match="loopback") as err:
        BrokerSettings("10.0.0.5", 1883, "c").validate(HEALTH, plain_to_loopback=True)
    assert err.value.key == "mqtt_host"
    with pytest.raises(ConfigError, match="set both mqtt_cert_file and mqtt_key_file"):
        BrokerSettings("127.0.0.1", 1883, "c", cert_file="/x.pem").validate(HEALTH, plain_to_loopback=True)


@pytest.mark.parametrize("missing", ["ca_file", "cert_file", "key_file"])
def test_an_unreadable_pem_is_a_config_error_when_asked(tmp_path: Path, missing: str) -> None:
    settings = BrokerSettings(**{**tls(tmp_path).__dict__, missing: str(tmp_path / "nope.pem")})
    settings.validate()  # not checked unless asked: the owner retries until the file appears
    with pytest.raises(ConfigError, match="not readable") as err:
        settings.validate(HEALTH, plain_to_loopback=True, files_must_exist=True)
    assert err.value.key == f"mqtt_{missing}"


@pytest.mark.parametrize("topic", ["", "robots/+/alerts", "robots/#", "a\0b"])
def test_publish_topics_must_be_concrete(topic: str) -> None:
    with pytest.raises(ConfigError, match="mqtt_topic"):
        check_publish_topic("mqtt_topic", topic)
    check_publish_topic("mqtt_topic", "robots/r1/alerts")


def test_plain_settings_build_an_unconnected_connection() -> None:
    conn = build_connection(BrokerSettings("127.0.0.1", 1883, "c"), lambda *a, **k: None, lambda *a, **k: None)
    assert conn.client_id == "c" and conn.host_name == "127.0.0.1" and conn.port == 1883
    assert conn.clean_session is False
