"""The demo's Prometheus config: the shipped one, with targets for every robot, bridge and control service."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from robot_platform.demo.fleet import DemoLayout, prometheus_targets
from robot_platform.demo.prometheus_site import prepare, process

REPO = Path(__file__).resolve().parents[3]


def test_demo_prometheus_scrapes_every_robot_its_bridge_and_the_control_services(tmp_path: Path) -> None:
    layout = DemoLayout(robots=3, state_dir=tmp_path)
    conf = prepare(tmp_path, REPO, prometheus_targets(layout), 19090)
    targets = {f.name: yaml.safe_load(f.read_text()) for f in (conf.parent / "targets").iterdir()}
    assert [(t["targets"], t["labels"]["robot"]) for t in targets["robots.yml"]] == [
        ([f"127.0.0.1:{9100 + i}"], f"r{i}") for i in (1, 2, 3)]  # fmt: skip
    assert [t["targets"][0] for t in targets["bridges.yml"]] == [f"127.0.0.1:{9150 + i}" for i in (1, 2, 3)]
    assert sorted(t["targets"][0] for t in targets["control.yml"]) == ["127.0.0.1:9202", "127.0.0.1:9203"]
    rendered = yaml.safe_load(conf.read_text())
    assert {j["job_name"] for j in rendered["scrape_configs"]} >= {"robot_health", "robot_bridge", "control"}
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run `make setup` (apt prometheus)"
    check = subprocess.run([promtool, "check", "config", str(conf)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    argv = process(conf, 19090).argv
    assert "--web.listen-address=127.0.0.1:19090" in argv and process(conf, 19090).server


def test_shipped_prometheus_config_scrapes_bridges_and_control_services() -> None:
    shipped = yaml.safe_load((REPO / "config" / "prometheus" / "prometheus.yml").read_text())
    assert {j["job_name"] for j in shipped["scrape_configs"]} >= {"robot_health", "robot_bridge", "control"}
    control = yaml.safe_load((REPO / "config" / "prometheus" / "targets" / "control.yml").read_text())
    assert sorted(t["targets"][0] for t in control) == ["127.0.0.1:9202", "127.0.0.1:9203"]
