"""Shipped configuration files agree with each other (the parts no node checks at start-up)."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]


def test_fleet_rviz_config_shows_the_mirrored_topics() -> None:
    """config/robot_platform.rviz is valid YAML and displays what the control bridge mirrors."""
    rviz = yaml.safe_load((REPO / "config" / "robot_platform.rviz").read_text())
    control = yaml.safe_load((REPO / "config" / "control.yaml").read_text())
    mirrored = control["/**/nats_bridge"]["ros__parameters"]["mirror"]["topics"]
    topics = {d["Topic"]["Value"] for d in rviz["Visualization Manager"]["Displays"] if "Topic" in d}
    assert "/odom" in mirrored
    assert {f"/fleet/r{i}/odom" for i in (1, 2, 3)} <= topics
    assert "/scan" in mirrored and {f"/fleet/r{i}/scan" for i in (1, 2, 3)} <= topics
    # the mirror's per-robot TF trees hang under "fleet" (bridge/fleet_tf_tree.py)
    assert control["/**/nats_bridge"]["ros__parameters"]["mirror"]["frame_prefix"] is True
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == "fleet"


def test_container_mosquitto_config_and_acl_are_the_shipped_ones() -> None:
    """docker/mosquitto/ is config/mosquitto/ (rendered for container paths): the containers run the same
    rules - the ACL (each robot only its own job topics and alert topic) and the client-id binding."""
    from robot_platform.site_setup.mosquitto_config import container_conf

    config, docker = REPO / "config" / "mosquitto", REPO / "docker" / "mosquitto"
    assert (docker / "acl").read_text() == (config / "acl").read_text(), (
        "docker/mosquitto/acl differs from config/mosquitto/acl: cp config/mosquitto/acl docker/mosquitto/acl"
    )
    assert (docker / "mosquitto.conf").read_text() == container_conf((config / "mosquitto.conf").read_text()), (
        "docker/mosquitto/mosquitto.conf is stale: python -m robot_platform.site_setup.mosquitto_config container "
        "> docker/mosquitto/mosquitto.conf"
    )
    chart_acl = REPO / "docker" / "helm" / "robot-platform" / "files" / "mosquitto" / "acl"
    assert chart_acl.read_text() == (config / "acl").read_text()


def test_shipped_mosquitto_config_binds_client_ids_to_certificates() -> None:
    """No `use_identity_as_username` (Mosquitto 2.0 runs no check at CONNECT with it), the plugin instead."""
    for conf in (REPO / "config" / "mosquitto" / "mosquitto.conf", REPO / "docker" / "mosquitto" / "mosquitto.conf"):
        directives = [line.split() for line in conf.read_text().splitlines() if line and not line.startswith("#")]
        names = {d[0]: d[1:] for d in directives}
        assert "use_identity_as_username" not in names and "use_subject_as_username" not in names, conf
        assert names["plugin"][0].endswith("/rp_client_id_auth.so") and names["require_certificate"] == ["true"]
        assert names["plugin_opt_client_ids"] == ["%u,deploy-%u,health-%u"]
        assert names["allow_anonymous"] == ["false"]


def _nats_settings(path: Path) -> dict[str, str]:
    """``key: value`` lines of a nats-server config (nesting flattened; enough for the shared limits)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        key, sep, value = line.partition(":")
        if sep and value.strip() and " " not in key.strip():
            out.setdefault(key.strip(), value.strip())
    return out


def test_container_nats_configs_keep_the_shipped_limits() -> None:
    """docker/nats/ is the clustered, mutual-TLS variant of config/nats/ (different topology on purpose),
    but the limits and JetStream domains a robot's code relies on must be the same in both."""
    shipped, container = REPO / "config" / "nats", REPO / "docker" / "nats"
    pairs = ((shipped / "hub.conf", container / "hub.conf"), (shipped / "robot.conf", container / "leaf.conf"))
    for ours, theirs in pairs:
        a, b = _nats_settings(ours), _nats_settings(theirs)
        for key in ("max_payload", "domain", "max_file_store", "server_name" if "robot" in ours.name else "port"):
            assert a.get(key) == b.get(key), f"{key}: {ours.name} has {a.get(key)!r}, {theirs.name} {b.get(key)!r}"
