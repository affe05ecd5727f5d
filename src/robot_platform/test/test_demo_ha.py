"""``robot-platform demo --ha``: the processes of a clustered hub and of active/standby control services."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_platform.demo import nats_site
from robot_platform.demo.fleet import DemoLayout, demo_processes
from robot_platform.launcher.processes import Installation
from robot_platform.site_setup.nats_config import Endpoint, HubCluster

REPO = Path(__file__).resolve().parents[3]
INSTALL = Installation(share=Path("/opt/rp/share/robot_platform"), lib=Path("/opt/rp/lib/robot_platform"))


def test_demo_ha_runs_three_hub_nodes_and_a_standby_of_jobs_and_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from robot_platform.demo import site_services
    from robot_platform.site_setup import seaweedfs

    monkeypatch.setattr(nats_site, "nats_server_executable", lambda: "/usr/bin/nats-server")
    monkeypatch.setattr(site_services, "mosquitto_executable", lambda: "/usr/sbin/mosquitto")
    monkeypatch.setattr(seaweedfs, "weed_executable", lambda: "/usr/bin/weed")
    layout = DemoLayout(robots=2, state_dir=tmp_path, ha=True)
    site = site_services.prepare(tmp_path, ["r1", "r2"], REPO, layout.site_ports)
    n = range(layout.hub_nodes)
    cluster = HubCluster.local([4222 + i for i in n], [7422 + i for i in n], [6222 + i for i in n],
                               layout.hub_monitor_ports())  # fmt: skip
    nats = nats_site.prepare(tmp_path, {"r1": (4231, 8231), "r2": (4232, 8232)}, Endpoint(port=4222), 7422, cluster)
    specs = {s.name: s for s in demo_processes(layout, INSTALL, nats=nats, site=site)}
    assert "control/nats-hub" not in specs
    confs = nats_site.hub_node_confs(tmp_path)
    assert [specs[f"control/nats-hub-{i}"].argv[-1] for i in n] == [str(c) for c in confs]
    assert all(specs[f"control/nats-hub-{i}"].server for i in n)
    robot = nats.robot_confs["r1"].read_text()
    assert all(f"@127.0.0.1:{7422 + i}" in robot for i in n)  # the leaf lists every node
    url = "nats_url:=nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"
    for node in nats_site.CONTROL_NODE_USERS:
        assert url in specs[f"control/{node}"].argv, node
    for node in ("jobs_service", "fleet_registry"):
        active, standby = specs[f"control/{node}"].argv, specs[f"control/{node}-standby"].argv
        assert "ha:=true" in active and "ha:=true" in standby
    standby = specs["control/jobs_service-standby"].argv
    assert "metrics_port:=0" in standby and any(a.endswith("jobs-standby.sqlite3") for a in standby)
    assert "mqtt_endpoint:=127.0.0.1" in standby  # the site's broker and certificates, like the active
    # a later run without --ha leaves no node config behind
    nats_site.prepare(tmp_path, {"r1": (4231, 8231)}, Endpoint(port=4222), 7422)
    assert nats_site.hub_node_confs(tmp_path) == []
