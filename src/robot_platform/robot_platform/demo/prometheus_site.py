"""The demo's Prometheus: the shipped ``config/prometheus/prometheus.yml`` with targets for its N robots.

A site's control server runs Prometheus with the shipped config and its own target files; the demo
renders the same config into ``<state_dir>/prometheus/`` with file_sd targets for every robot's
health_monitor_tree and nats_bridge and for the control nats_bridge and jobs_service, the alert rules
from the installed config, and runs Debian's ``prometheus`` on 127.0.0.1 (data in the state directory,
kept one day). Grafana stays provisioning files (``config/grafana/``): it is not installable here.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from robot_platform.exceptions import ConfigError
from robot_platform.launcher.processes import ProcessSpec

RETENTION = "1d"
SELF_JOB = "prometheus"
TARGET_FILES = {"robot_health": "robots.yml", "robot_bridge": "bridges.yml", "control": "control.yml"}


@dataclass(frozen=True)
class Targets:
    """host:port per robot id for each robot job, and the control services' endpoints."""

    health: dict[str, int]
    bridges: dict[str, int]
    control: dict[str, int]  # service name -> port


def prometheus_executable() -> str:
    exe = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if exe is None:
        raise ConfigError("PATH", "prometheus", "Prometheus not found: run `make setup` (apt prometheus)")
    return exe


def _robot_targets(ports: dict[str, int]) -> list[dict[str, Any]]:
    return [{"targets": [f"127.0.0.1:{port}"], "labels": {"robot": rid}} for rid, port in sorted(ports.items())]


def render(shipped: dict[str, Any], directory: Path, rules: Path, port: int) -> dict[str, Any]:
    """The shipped config pointed at ``directory``'s target files, the installed rules and ``port``."""
    config = dict(shipped)
    config["rule_files"] = [str(rules)]
    jobs = []
    for job in shipped.get("scrape_configs", []):
        job = dict(job)
        name = job["job_name"]
        if name in TARGET_FILES:
            job["file_sd_configs"] = [{"files": [str(directory / "targets" / TARGET_FILES[name])],
                                       "refresh_interval": "5s"}]  # fmt: skip
        elif name == SELF_JOB:
            job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
        jobs.append(job)
    missing = set(TARGET_FILES) - {j["job_name"] for j in jobs}
    if missing:
        raise ConfigError("prometheus.yml", sorted(missing), "scrape jobs missing from the shipped config")
    config["scrape_configs"] = jobs
    return config


def prepare(state_dir: Path, share: Path, targets: Targets, port: int) -> Path:
    """Write the config and target files; return the config path."""
    directory = Path(state_dir).resolve() / "prometheus"
    (directory / "targets").mkdir(parents=True, exist_ok=True)
    shipped_dir = share / "config" / "prometheus"
    shipped = yaml.safe_load((shipped_dir / "prometheus.yml").read_text(encoding="utf-8"))
    files = {
        "robots.yml": _robot_targets(targets.health),
        "bridges.yml": _robot_targets(targets.bridges),
        "control.yml": [
            {"targets": [f"127.0.0.1:{p}"], "labels": {"service": name}} for name, p in sorted(targets.control.items())
        ],
    }
    for name, body in files.items():
        (directory / "targets" / name).write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    conf = directory / "prometheus.yml"
    rendered = render(shipped, directory, shipped_dir / "alert_rules.yml", port)
    conf.write_text("# Rendered by `robot-platform demo` from config/prometheus/prometheus.yml\n"
                    + yaml.safe_dump(rendered, sort_keys=False), encoding="utf-8")  # fmt: skip
    return conf


def process(conf: Path, port: int) -> ProcessSpec:
    """Prometheus on 127.0.0.1:``port``, its data next to the config; stopped after the nodes."""
    data = conf.parent / "data"
    return ProcessSpec("control/prometheus", [
        prometheus_executable(), f"--config.file={conf}", f"--storage.tsdb.path={data}",
        f"--storage.tsdb.retention.time={RETENTION}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
    ], server=True)  # fmt: skip
