"""config/prometheus and config/grafana: valid for promtool, and every metric they query exists."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from robot_platform.health.metrics import HealthMetrics
from robot_platform.health.monitor import HealthMonitor
from robot_platform.health.tree_builder import build_tree

REPO = Path(__file__).resolve().parents[3]
PROM = REPO / "config" / "prometheus"
GRAFANA = REPO / "config" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PROMTOOL = shutil.which("promtool")


def _require_promtool() -> None:
    """A missing promtool is a failure, not a skip: `make setup` installs it (requirements/apt.txt)."""
    assert PROMTOOL is not None, "promtool not installed: run `make setup` (apt package prometheus)"


needs_promtool = pytest.mark.usefixtures("_promtool_present")


@pytest.fixture
def _promtool_present() -> None:
    _require_promtool()


METRIC_RE = re.compile(r"\brobot_health_[a-z_]+\b")


def promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def exported_names() -> set[str]:
    """Sample names the health node exports (one tick of a small tree)."""
    config = {
        "checks": [
            {"name": "b", "kind": "battery"},
            {"name": "n", "kind": "nats_link"},
            {"name": "s", "kind": "topic_silence", "topic": "scan", "timeout_s": 1.0},
            {"name": "o", "kind": "host_overload"},
        ],
        "topics": {"scan": "sensor_msgs/msg/LaserScan"},
    }
    t = [0.0]
    monitor = HealthMonitor(build_tree(config, clock=lambda: t[0], pressure=lambda: None), "r1", clock=lambda: t[0])
    metrics = HealthMetrics("r1")
    result = monitor.tick()
    metrics.observe_tick(monitor, result, 0.0)
    metrics.count_alert("ros", "ok")
    for _, event in result.events:
        metrics.count_event("b", event)
    text = generate_latest(metrics.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def dashboard_exprs() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for t in panel["targets"]:
                out.append((f"{path.name}:{panel['title']}", t["expr"]))
    return out


@needs_promtool
def test_promtool_accepts_scrape_config_and_rules() -> None:
    for args in (("check", "config", "prometheus.yml"), ("check", "rules", "alert_rules.yml")):
        res = promtool(*args)
        assert res.returncode == 0, res.stdout + res.stderr


@needs_promtool
def test_alert_rules_unit_tests_pass() -> None:
    res = promtool("test", "rules", "alert_rules_test.yml")
    assert res.returncode == 0, res.stdout + res.stderr


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query:{i}", "expr": expr.replace("$__rate_interval", "1m").replace("$robot", "r1")}
        for i, (_, expr) in enumerate(dashboard_exprs())
    ]
    (tmp_path / "dash_rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "dash", "rules": rules}]}))
    res = promtool("check", "rules", "dash_rules.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_queried_metric_is_exported() -> None:
    names = exported_names()
    rules_text = (PROM / "alert_rules.yml").read_text()
    used = {(where, m) for where, expr in dashboard_exprs() for m in METRIC_RE.findall(expr)}
    used |= {("alert_rules.yml", m) for m in METRIC_RE.findall(rules_text)}
    assert used, "no robot_health metric queried at all"
    missing = sorted((w, m) for w, m in used if m not in names)
    assert not missing, f"queried but not exported: {missing}; exported: {sorted(names)}"


def test_dashboards_are_provisionable() -> None:
    assert [p.name for p in DASHBOARDS] == ["fleet_overview.json", "robot_detail.json"]
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    ds_uid = ds["datasources"][0]["uid"]
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == ds_uid and panel["targets"], panel["title"]
            g = panel["gridPos"]
            assert g["x"] + g["w"] <= 24, f"{path.name}:{panel['title']} wider than the grid"
    assert len(uids) == len(DASHBOARDS)
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "robot_platform.yml").read_text())
    assert provider["providers"][0]["type"] == "file"


def test_logic_modules_import_no_rclpy() -> None:
    """House rule 1: everything but health/node.py is plain Python (tests run without a ROS graph)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import robot_platform.health.check_kinds, robot_platform.health.fault_state, robot_platform.health.metrics\n"
        "import robot_platform.health.monitor, robot_platform.health.outputs, robot_platform.health.tree_builder\n"
        "import robot_platform.health.nats_out, robot_platform.health.mqtt_out, robot_platform.health.sources\n"
        "assert 'rclpy' not in sys.modules, sorted(m for m in sys.modules if m.startswith('rcl'))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr


def test_mqtt_publisher_refuses_unsafe_settings() -> None:
    from robot_platform.exceptions import ConfigError
    from robot_platform.health.mqtt_out import MqttAlertPublisher

    ok = {"host": "127.0.0.1", "port": 1883, "client_id": "c", "topic": "robots/r1/alerts"}
    MqttAlertPublisher(**ok)  # plain TCP to loopback is fine (not started)
    with pytest.raises(ConfigError, match="loopback"):
        MqttAlertPublisher(**{**ok, "host": "broker.example.com"})
    with pytest.raises(ConfigError, match="both"):
        MqttAlertPublisher(**{**ok, "cert_file": "/x.pem"})
    with pytest.raises(ConfigError, match="wildcards"):
        MqttAlertPublisher(**{**ok, "topic": "robots/+/alerts"})
