"""The pip-only runner: the processes it derives from the launch plan, and how it stops them."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from robot_platform.demo.fleet import DemoLayout, demo_processes
from robot_platform.exceptions import ConfigError
from robot_platform.launcher import plan
from robot_platform.launcher.processes import Installation, control_processes, robot_processes
from robot_platform.launcher.supervisor import ProcessGroup

INSTALL = Installation(share=Path("/opt/rp/share/robot_platform"), lib=Path("/opt/rp/lib/robot_platform"))


def robot_values(**changes: str) -> dict[str, str]:
    """A robot's values in the split layout (a process per node, the layout these tests look into)."""
    return plan.defaults(plan.ROBOT_ARGUMENTS) | {"robot_id": "r1", "agent_layout": "split"} | changes


def test_robot_processes_use_the_shared_config_and_overrides() -> None:
    specs = {s.name: s for s in robot_processes(robot_values(robot_id="r7", enable_camera="true"), INSTALL)}
    assert set(specs) == {"r7/nats-server"} | {f"r7/{n.name}" for n in plan.ROBOT_NODES}
    sim = specs["r7/robot_sim"].argv
    assert sim[0] == "/opt/rp/lib/robot_platform/robot_sim"
    assert sim[sim.index("--params-file") + 1] == "/opt/rp/share/robot_platform/config/robot.yaml"
    assert 'robot_id:="r7"' in sim and "enable_camera:=true" in sim
    nats = specs["r7/nats-server"]
    assert nats.argv[-1] == "/opt/rp/share/robot_platform/config/nats/robot.conf"
    assert nats.env["RP_ROBOT_ID"] == '"r7"' and nats.env["RP_NATS_HOST"] == "127.0.0.1"  # a string to NATS
    # Nodes reach the robot's own nats-server unless told otherwise.
    assert 'nats_url:="nats://127.0.0.1:4222"' in specs["r7/health_monitor_tree"].argv


def test_camera_brings_frame_publisher_and_the_large_data_dds_profile() -> None:
    without = {s.name: s for s in robot_processes(robot_values(), INSTALL)}
    assert "r1/frame_publisher" not in without
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in without["r1/robot_sim"].env
    with_camera = {s.name: s for s in robot_processes(robot_values(enable_camera="true"), INSTALL)}
    assert "r1/frame_publisher" in with_camera
    profile = "/opt/rp/share/robot_platform/config/fastdds/large_data.xml"
    assert with_camera["r1/robot_sim"].env["FASTRTPS_DEFAULT_PROFILES_FILE"] == profile
    assert with_camera["r1/frame_publisher"].env["FASTRTPS_DEFAULT_PROFILES_FILE"] == profile


def test_disabled_parts_are_not_started() -> None:
    flags = {spec.enabled_by: "false" for spec in plan.ROBOT_NODES}
    specs = robot_processes(robot_values(start_nats="false", **flags), INSTALL)
    assert specs == []
    only_sim = robot_processes(robot_values(start_nats="false", **(flags | {"use_sim": "true"})), INSTALL)
    assert [s.name for s in only_sim] == ["r1/robot_sim"]
    control_flags = {spec.enabled_by: "false" for spec in plan.CONTROL_NODES}
    control = plan.defaults(plan.CONTROL_ARGUMENTS) | {"start_nats": "false"} | control_flags
    assert control_processes(control, INSTALL) == []


def test_list_arguments_become_ros_list_parameters() -> None:
    control = plan.defaults(plan.CONTROL_ARGUMENTS) | {"fleet_robots": "[r1, r2,r3]"}
    bridge = next(s for s in control_processes(control, INSTALL) if s.name == "control/nats_bridge")
    assert 'fleet_robots:=["r1","r2","r3"]' in bridge.argv
    assert plan.coerce("[a, 'b']", plan.STRING_ARRAY) == ["a", "b"]


@pytest.mark.parametrize("bad", ["r1.x", "r*", "r>", "a b", ""])
def test_robot_ids_that_would_break_subjects_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="robot_id"):
        robot_processes(robot_values(robot_id=bad), INSTALL)


def test_demo_gives_each_robot_its_own_domain_and_ports(tmp_path: Path) -> None:
    layout = DemoLayout(robots=3, state_dir=tmp_path)
    specs = demo_processes(layout, INSTALL)
    domains = {s.name: s.env["ROS_DOMAIN_ID"] for s in specs}
    assert domains["r1/robot_sim"] == "11" and domains["r3/robot_sim"] == "13"
    assert domains["control/nats-hub"] == "10"
    ports = [s.env["RP_NATS_PORT"] for s in specs if "RP_NATS_PORT" in s.env]
    assert len(ports) == len(set(ports)) == 4


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_stop_all_escalates_and_takes_grandchildren(tmp_path: Path) -> None:
    group = ProcessGroup(log_dir=tmp_path)
    polite = group.start("polite", _python("import time\ntry:\n time.sleep(60)\nexcept KeyboardInterrupt:\n pass"))
    stubborn = group.start("stubborn", _python(
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\ntime.sleep(60)"))
    parent = group.start("parent", _python(
        "import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('ready', flush=True)\ntime.sleep(60)"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(
        "ready" in group.child(n).output() for n in ("stubborn", "parent")
    ):
        time.sleep(0.05)
    grandchildren = psutil.Process(parent.pid).children()
    assert grandchildren
    codes = group.stop_all(sigint_wait_s=1.0, sigterm_wait_s=1.0)
    assert codes["polite"] == 0
    assert codes["stubborn"] == -signal.SIGKILL
    assert polite.poll() is not None and stubborn.poll() is not None
    _, alive = psutil.wait_procs(grandchildren, timeout=5)
    assert not alive


def test_servers_stop_after_the_nodes_that_use_them(tmp_path: Path) -> None:
    group = ProcessGroup(log_dir=tmp_path)
    node = group.start("node", _python(
        "import time\nprint('ready', flush=True)\ntry:\n time.sleep(60)\nexcept KeyboardInterrupt:\n time.sleep(0.5)"))
    group.start("server", _python(
        "import os, sys, time\nprint('ready', flush=True)\ntry:\n time.sleep(60)\nexcept KeyboardInterrupt:\n"
        f" try:\n  os.kill({node.pid}, 0)\n  print('node still running')\n except ProcessLookupError:\n"
        "  print('node gone')\n"), stop_last=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all("ready" in group.child(n).output() for n in ("node", "server")):
        time.sleep(0.05)
    codes = group.stop_all()
    assert codes == {"node": 0, "server": 0}
    assert "node gone" in group.child("server").output()


REPO = Path(__file__).resolve().parents[3]


def test_demo_site_wires_deployments_with_least_privilege(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from robot_platform.demo import site_services
    from robot_platform.site_setup import seaweedfs

    monkeypatch.setattr(site_services, "mosquitto_executable", lambda: "/usr/sbin/mosquitto")
    monkeypatch.setattr(seaweedfs, "weed_executable", lambda: "/usr/bin/weed")
    layout = DemoLayout(robots=2, state_dir=tmp_path)
    site = site_services.prepare(tmp_path, ["r1", "r2"], REPO, layout.site_ports)
    # secrets are this user's only; the broker config is the shipped one on loopback
    for secret in (site.signing_key, site.robot_credentials, site.s3_config, site.pki / "robots" / "r1.key"):
        assert secret.stat().st_mode & 0o077 == 0, secret
    conf = site.mosquitto_conf.read_text()
    assert f"listener {layout.site_ports.mqtt} 127.0.0.1" in conf and "require_certificate true" in conf
    # robots get a read-only S3 identity for the packages bucket; the publisher is another key
    identities = {i["name"]: i for i in json.loads(site.s3_config.read_text())["identities"]}
    assert identities["robots"]["actions"] == ["Read:packages", "List:packages"]
    assert identities["robots"]["credentials"] != identities["publisher"]["credentials"]

    specs = demo_processes(layout, INSTALL, site=site)
    names = [s.name for s in specs]
    assert names[:3] == ["control/nats-hub", "control/mosquitto", "control/seaweedfs"]
    weed = next(s for s in specs if s.name == "control/seaweedfs")
    assert weed.server and "-ip.bind=127.0.0.1" in weed.argv and f"-s3.port={layout.site_ports.s3}" in weed.argv
    jobs = next(s for s in specs if s.name == "control/jobs_service").argv
    assert "mqtt_endpoint:=127.0.0.1" in jobs and f"mqtt_cert:={site.pki / 'jobs-service.crt'}" in jobs
    for rid in ("r1", "r2"):
        # the single layout (the demo's): deploy_service's values scoped to it in the agent process
        deploy = next(s for s in specs if s.name == f"{rid}/agent").argv
        # each robot: its own certificate (CN = thing name) and install root; the read-only S3 key
        assert f"deploy_service:mqtt_cert:={site.pki / 'robots' / f'{rid}.crt'}" in deploy
        assert f"deploy_service:install_root:={site.root / 'robots' / rid}" in deploy
        assert f"deploy_service:s3_credentials_file:={site.robot_credentials}" in deploy
        assert f"deploy_service:trusted_keys:=[{site.trusted_key}]" in deploy
        assert not any(word.startswith("mqtt_") for word in deploy)  # health_monitor_tree has mqtt_host too
    # a second prepare keeps the CA and the signing key (robots keep trusting what they trusted)
    ca, key = (site.pki / "ca.crt").read_bytes(), site.trusted_key.read_bytes()
    again = site_services.prepare(tmp_path, ["r1", "r2"], REPO, layout.site_ports)
    assert (again.pki / "ca.crt").read_bytes() == ca and again.trusted_key.read_bytes() == key


def test_demo_nats_is_the_secured_fleet_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from robot_platform.demo import nats_site
    from robot_platform.site_setup.nats_config import Endpoint

    monkeypatch.setattr(nats_site, "nats_server_executable", lambda: "/usr/bin/nats-server")
    layout = DemoLayout(robots=2, state_dir=tmp_path)
    nats = nats_site.prepare(tmp_path, {"r1": (4231, 8231), "r2": (4232, 8232)}, Endpoint(port=4222), 7422)
    hub = nats.hub_conf.read_text()
    for user in ("control", "console", "fleet_registry", "jobs", "r1", "r2"):
        assert f"user: {user}," in hub or f'user: "{user}"' in hub, user
        password = nats.password_files.get(user)
        if password:  # the service users' passwords, readable by this user only
            assert password.stat().st_mode & 0o077 == 0 and password.read_text().strip() in hub
    assert "nats-leaf://r1:" in nats.robot_confs["r1"].read_text()
    specs = {s.name: s for s in demo_processes(layout, INSTALL, nats=nats)}
    assert specs["control/nats-hub"].argv[-1] == str(nats.hub_conf)
    assert specs["r2/nats-server"].argv[-1] == str(nats.robot_confs["r2"])
    for node, user in nats_site.CONTROL_NODE_USERS.items():
        argv = specs[f"control/{node}"].argv
        assert f"nats_user:={user}" in argv and f"nats_password_file:={nats.password_files[user]}" in argv
    assert not any("nats_user" in a for a in specs["r1/agent"].argv)  # robots use their local server
