"""System test of fleet deployments over the AWS IoT Jobs protocol.

Real parts: Mosquitto (TLS, client certificates from the site CA, the shipped config/mosquitto/ config and
ACL), SeaweedFS (S3 packages), nats-server (console API), ``jobs_service`` and three ``deploy_service``
nodes (real processes, each robot on its own ROS domain). Packages are built, signed and pushed with the
real CLI. Checked:

* a rollout with a canary of one reaches SUCCEEDED on all three robots; the third robot is offline when
  the job is created and runs it when it comes back;
* a package that fails on the canary aborts the rollout: the other robots' executions are CANCELED and
  they never start it (nothing downloaded or installed);
* a malformed job document is REJECTED by the robot with a reason;
* a rollback job (``operation: rollback``) with nothing to roll back to is REJECTED with the reason; after
  a 2.0.0 job it brings the robot back to 1.0.0 (SUCCEEDED, version/previous_version in the details);
* one robot's certificate can neither read nor write another robot's job topics (the broker refuses).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import fixtures_s3
from fixtures_s3 import SeaweedFS
from helpers import REPO, DomainReservation, free_port, ros_env, wait_for, wait_port
from robot_platform.cli.jobs import request
from robot_platform.site_setup import certs
from robot_platform.site_setup.mosquitto_config import render_conf, site_overrides
from test_deploy_system import BUCKET, Publisher, function_source

seaweedfs = fixtures_s3.seaweedfs
SRC = str(REPO / "src" / "robot_platform")
WAIT_S = 90.0
ROBOTS = ("r1", "r2", "r3")

DEPLOY_PARAMS = """
/**/deploy_service:
  ros__parameters:
    robot_id: {robot}
    install_root: {root}
    s3_endpoint_url: {endpoint}
    s3_bucket: {bucket}
    s3_credentials_file: {creds}
    trusted_keys: [{key}]
    download_retries: 1
    mqtt_endpoint: 127.0.0.1
    mqtt_port: {mqtt_port}
    mqtt_ca: {secrets}/ca.crt
    mqtt_cert: {secrets}/robots/{robot}.crt
    mqtt_key: {secrets}/robots/{robot}.key
"""


class Site:
    """Certificates, Mosquitto, the jobs service; robots are started on demand."""

    def __init__(self, procs: Any, tmp: Path, nats_url: str) -> None:
        self.procs, self.tmp, self.nats_url = procs, tmp, nats_url
        self.secrets = tmp / "secrets"
        certs.init_ca(self.secrets)
        for robot in ROBOTS:
            certs.issue_robot(self.secrets, robot)
        certs.issue(self.secrets, "mosquitto", "mosquitto", server=True, dns=["localhost"], ips=["127.0.0.1"])
        certs.issue(self.secrets, "jobs-service", "jobs-service", server=False)
        self.mqtt_port = free_port()
        (tmp / "mosquitto-data").mkdir()
        conf = tmp / "mosquitto.conf"
        overrides = site_overrides(
            self.mqtt_port,
            self.secrets,
            REPO / "config" / "mosquitto" / "acl",
            tmp / "mosquitto-data",
            user="root" if os.geteuid() == 0 else "",
        )
        conf.write_text(render_conf((REPO / "config" / "mosquitto" / "mosquitto.conf").read_text(), overrides))
        procs.start("mosquitto", ["/usr/sbin/mosquitto", "-c", str(conf)])
        wait_port(self.mqtt_port)
        self.domains = DomainReservation(count=1 + len(ROBOTS))

    def env(self, index: int) -> dict[str, str]:
        env = ros_env(
            self.domains.domain_id + index, {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
        )
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.pop(key, None)
        return env

    def start_jobs_service(self, extra: tuple[str, ...] = ()) -> Any:
        """Start (or restart, on the same store) the jobs service; its Popen once its API answers."""
        params = [
            *extra,
            f"store_path:={self.tmp / 'jobs.sqlite3'}",
            f"nats_url:={self.nats_url}",
            "mqtt_endpoint:=127.0.0.1",
            f"mqtt_port:={self.mqtt_port}",
            f"mqtt_ca:={self.secrets / 'ca.crt'}",
            f"mqtt_cert:={self.secrets / 'jobs-service.crt'}",
            f"mqtt_key:={self.secrets / 'jobs-service.key'}",
            "metrics_port:=0",
        ]
        argv = [sys.executable, "-m", "robot_platform.jobs.node", "--ros-args"]
        for param in params:
            argv += ["-p", param]
        proc = self.procs.start("jobs_service", argv, env=self.env(0))
        wait_for(lambda: request(self.nats_url, "list", {}) is not None, 60, "jobs_service API on NATS", period=0.3)
        return proc

    def start_robot(self, robot: str, s3: SeaweedFS, trusted: str, nats_url: str = "") -> None:
        """deploy_service for ``robot`` on MQTT; with ``nats_url`` also on NATS (statuses, installed)."""
        params = self.tmp / f"{robot}.yaml"
        nats = f"    nats_url: {nats_url}\n" if nats_url else ""
        params.write_text(
            DEPLOY_PARAMS.format(
                robot=robot,
                root=self.tmp / "robots" / robot,
                endpoint=s3.endpoint_url,
                bucket=BUCKET,
                creds=s3.credentials_file,
                key=json.dumps(trusted),
                mqtt_port=self.mqtt_port,
                secrets=self.secrets,
            )
            + nats
        )
        argv = [sys.executable, "-m", "robot_platform.deploy.node", "--ros-args", "--params-file", str(params)]
        self.procs.start(f"deploy_service_{robot}", argv, env=self.env(1 + ROBOTS.index(robot)))

    def close(self) -> None:
        self.domains.release()


@pytest.fixture
def site(procs: Any, tmp_path: Path, nats_server: Any) -> Any:
    s = Site(procs, tmp_path, nats_server.url)
    try:
        yield s
    finally:
        procs.stop_all()
        s.close()


def job(site: Site, job_id: str) -> dict[str, Any]:
    return request(site.nats_url, "get", {"job_id": job_id})


def statuses(site: Site, job_id: str) -> dict[str, str]:
    return {ex["thing"]: ex["status"] for ex in job(site, job_id)["executions"]}


def wait_statuses(site: Site, job_id: str, expected: dict[str, str], timeout: float = WAIT_S) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        current = job(site, job_id)
        seen = {ex["thing"]: ex["status"] for ex in current["executions"]}
        return current if all(seen.get(k) == v for k, v in expected.items()) else None

    try:
        return wait_for(reached, timeout, f"{job_id} executions {expected}", period=0.5)
    except TimeoutError:
        raise AssertionError(f"{job_id}: wanted {expected}, job is {json.dumps(job(site, job_id), indent=1)}") from None


def failing_source(root: Path) -> Path:
    """A package whose install step fails (exit 3): the deployment FAILS on the robot and is rolled back."""
    src = root / "broken_fn"
    src.mkdir(parents=True)
    manifest = {
        "name": "broken_fn",
        "version": "1.0.0",
        "kind": "function",
        "runtime": "python3",
        "handler": "fn.main",
        "timeout_s": 10,
        "install": [["python3", "-c", "import sys; print('no disk'); sys.exit(3)"]],
    }
    (src / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    (src / "fn.py").write_text(textwrap.dedent("def main(event, context):\n    return event\n"))
    return src


def flaky_source(root: Path, flag: Path) -> Path:
    """A package whose install step fails the first time only (a transient fault: storage, a lock...)."""
    src = root / "flaky_fn"
    src.mkdir(parents=True)
    manifest = {
        "name": "flaky_fn",
        "version": "1.0.0",
        "kind": "function",
        "runtime": "python3",
        "handler": "fn.main",
        "timeout_s": 10,
        "environment": {"FLAG": str(flag)},
        "install": [["python3", "-c", "import os, sys; f = os.environ['FLAG']; seen = os.path.exists(f); "
                     "open(f, 'w').close(); sys.exit(0 if seen else 3)"]],
    }  # fmt: skip
    (src / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    (src / "fn.py").write_text(textwrap.dedent("def main(event, context):\n    return event\n"))
    return src


def test_staged_rollouts_offline_robot_abort_and_malformed(seaweedfs: SeaweedFS, site: Site, tmp_path: Path) -> None:
    seaweedfs.create_bucket(BUCKET)
    pub = Publisher(seaweedfs, tmp_path)
    good = {"operation": "deploy", **pub.publish(function_source(tmp_path, "1.0.0"))}
    site.start_jobs_service()
    site.start_robot("r1", seaweedfs, pub.trusted)
    site.start_robot("r2", seaweedfs, pub.trusted)  # r3 is offline for now

    # ---- a rollout with a canary of one; r3 offline at creation
    t0 = time.monotonic()
    created = request(
        site.nats_url,
        "create",
        {
            "job_id": "good-1",
            "document": good,
            "targets": list(ROBOTS),
            "rollout": {"canary": 1, "max_per_minute": 60},
            "timeout_s": 120,
        },
    )
    assert [(e["thing"], e["status"], e["canary"]) for e in created["executions"]] == [
        ("r1", "QUEUED", True),
        ("r2", "SCHEDULED", False),
        ("r3", "SCHEDULED", False),
    ]
    # the canary finishes before anyone else is released
    canary = wait_statuses(site, "good-1", {"r1": "SUCCEEDED"})
    canary_s = time.monotonic() - t0
    assert {ex["thing"]: ex["status"] for ex in canary["executions"]}["r2"] in ("QUEUED", "IN_PROGRESS", "SUCCEEDED")
    r1 = next(ex for ex in canary["executions"] if ex["thing"] == "r1")
    assert r1["status_details"]["version"] == "1.0.0" and r1["status_details"]["step"] == "done"
    assert r1["version"] >= 4  # start-next + IN_PROGRESS step updates + SUCCEEDED went through the broker
    current = wait_statuses(site, "good-1", {"r2": "SUCCEEDED", "r3": "QUEUED"})
    assert current["status"] == "IN_PROGRESS"
    # r3 comes back: it asks for its pending jobs and runs the one queued while it was away
    t1 = time.monotonic()
    site.start_robot("r3", seaweedfs, pub.trusted)
    done = wait_statuses(site, "good-1", {"r3": "SUCCEEDED"})
    offline_s = time.monotonic() - t1
    done = wait_for(lambda: (j := job(site, "good-1"))["status"] == "COMPLETED" and j, 10, "good-1 COMPLETED")
    assert done["counts"] == {"SUCCEEDED": 3}
    for robot in ROBOTS:
        assert (tmp_path / "robots" / robot / "hello_fn").is_dir()

    # ---- a package that fails on the canary: abort, the others never start it
    broken = {"operation": "deploy", **pub.publish(failing_source(tmp_path))}
    request(
        site.nats_url,
        "create",
        {"job_id": "bad-1", "document": broken, "targets": ["r2", "r1", "r3"], "rollout": {"canary": 1}},
    )
    aborted = wait_statuses(site, "bad-1", {"r2": "FAILED", "r1": "CANCELED", "r3": "CANCELED"})
    assert aborted["status"] == "CANCELED" and aborted["reason_code"] == "ABORTED"
    r2 = next(ex for ex in aborted["executions"] if ex["thing"] == "r2")
    assert "install" in r2["status_details"]["reason"] and "exit" in r2["status_details"]["reason"].lower()
    assert aborted["reason"].startswith("canary r2 FAILED")
    for robot in ("r1", "r3"):
        ex = next(e for e in aborted["executions"] if e["thing"] == robot)
        assert ex["started_at"] is None and ex["queued_at"] is None  # never released to the robot
        assert not (tmp_path / "robots" / robot / "broken_fn").exists()

    # ---- a malformed job document: REJECTED by the robot with the reason
    bad_doc = {k: v for k, v in good.items() if k != "sha256"}
    request(site.nats_url, "create", {"job_id": "malformed-1", "document": bad_doc, "targets": ["r3"]})
    rejected = wait_statuses(site, "malformed-1", {"r3": "REJECTED"})
    reason = rejected["executions"][0]["status_details"]["reason"]
    assert "malformed job document" in reason and "sha256" in reason
    bad_sig = {**good, "version": "1.0.1", "signature": "AAAA"}  # well-formed, refused by the engine
    request(site.nats_url, "create", {"job_id": "badsig-1", "document": bad_sig, "targets": ["r1"]})
    rejected = wait_statuses(site, "badsig-1", {"r1": "REJECTED"})
    assert "signature" in rejected["executions"][0]["status_details"]["reason"]

    # ---- rollback as a job operation: nothing earlier -> REJECTED; after a 2.0.0 job, back to 1.0.0
    rollback = {"operation": "rollback", "package_name": "hello_fn", "to_version": ""}
    request(site.nats_url, "create", {"job_id": "rollback-0", "document": rollback, "targets": ["r2"]})
    rejected = wait_statuses(site, "rollback-0", {"r2": "REJECTED"})
    assert "no earlier version" in rejected["executions"][0]["status_details"]["reason"]
    v2 = {"operation": "deploy", **pub.publish(function_source(tmp_path, "2.0.0"))}
    request(site.nats_url, "create", {"job_id": "good-2", "document": v2, "targets": ["r2"]})
    wait_statuses(site, "good-2", {"r2": "SUCCEEDED"})
    assert os.readlink(tmp_path / "robots" / "r2" / "hello_fn" / "current").endswith("2.0.0")
    t2 = time.monotonic()
    request(site.nats_url, "create", {"job_id": "rollback-1", "document": rollback, "targets": ["r2"]})
    rolled = wait_statuses(site, "rollback-1", {"r2": "SUCCEEDED"})
    rollback_s = time.monotonic() - t2
    details = rolled["executions"][0]["status_details"]
    assert (details["version"], details["previous_version"]) == ("1.0.0", "2.0.0"), details
    assert rolled["executions"][0]["version"] >= 3  # IN_PROGRESS step updates before SUCCEEDED
    assert os.readlink(tmp_path / "robots" / "r2" / "hello_fn" / "current").endswith("1.0.0")
    print(f"\nrollback job on r2 SUCCEEDED {rollback_s:.1f} s after create")

    # ---- retries: the first attempt fails (transient), the job's retry config queues it again on r1
    flaky = {"operation": "deploy", **pub.publish(flaky_source(tmp_path, tmp_path / "flaky-flag"))}
    request(site.nats_url, "create", {"job_id": "retry-1", "document": flaky, "targets": ["r1"],
                                      "retry": {"failed": 1}})  # fmt: skip
    retried = wait_statuses(site, "retry-1", {"r1": "SUCCEEDED"})
    ex = retried["executions"][0]
    assert ex["attempt"] == 2 and "attempt 2 after FAILED" in ex["reason"], ex
    assert (tmp_path / "robots" / "r1" / "flaky_fn").is_dir()
    print(f"\ncanary r1 SUCCEEDED {canary_s:.1f} s after create; offline r3 SUCCEEDED {offline_s:.1f} s after start")


def test_robot_certificate_cannot_use_another_robots_topics(site: Site) -> None:
    from awscrt import mqtt
    from awsiot import mqtt_connection_builder

    def connect(name: str, cert: Path, key: Path) -> Any:
        conn = mqtt_connection_builder.mtls_from_path(
            endpoint="127.0.0.1",
            port=site.mqtt_port,
            cert_filepath=str(cert),
            pri_key_filepath=str(key),
            ca_filepath=str(site.secrets / "ca.crt"),
            client_id=name,  # the broker allows a certificate only its own client ids (CN = name)
            clean_session=True,
            enable_metrics_collection=False,
        )
        conn.connect().result(10)
        return conn

    def robot(name: str) -> Any:
        return connect(name, site.secrets / "robots" / f"{name}.crt", site.secrets / "robots" / f"{name}.key")

    site.start_jobs_service()
    request(site.nats_url, "create", {"job_id": "acl-1", "document": {"x": 1}, "targets": ["r2"]})
    r1, r2 = robot("r1"), robot("r2")
    got: dict[str, list[str]] = {"r1": [], "r2": []}
    lock = threading.Lock()

    def collect(who: str) -> Any:
        def on_message(topic: str, payload: bytes, **_kw: Any) -> None:
            with lock:
                got[who].append(topic)

        return on_message

    try:
        # r1 subscribes to r2's topics; whatever the SUBACK says, the broker must deliver nothing
        future, _ = r1.subscribe("$aws/things/r2/jobs/#", mqtt.QoS.AT_LEAST_ONCE, collect("r1"))
        try:
            granted = future.result(10).get("qos")
        except mqtt.SubscribeError:
            granted = None
        r2.subscribe("$aws/things/r2/jobs/#", mqtt.QoS.AT_LEAST_ONCE, collect("r2"))[0].result(10)
        # r1 writes to r2's request topic: the broker must drop it (the service never answers)
        r1.publish("$aws/things/r2/jobs/get", b'{"clientToken":"from-r1"}', mqtt.QoS.AT_LEAST_ONCE)[0].result(10)
        # positive control: r2 asking for its own jobs is answered, and r2 sees the answer
        r2.publish("$aws/things/r2/jobs/get", b'{"clientToken":"from-r2"}', mqtt.QoS.AT_LEAST_ONCE)[0].result(10)
        wait_for(lambda: "$aws/things/r2/jobs/get/accepted" in got["r2"], 20, "r2's own get answered")
        time.sleep(1.0)  # give a (wrongly) routed message time to arrive: absence cannot be awaited
        with lock:
            assert got["r1"] == [], f"r1 received r2's topics (SUBACK qos {granted}): {got['r1']}"
            answers = [t for t in got["r2"] if t.endswith("get/accepted")]
        assert len(answers) == 1, f"the service answered a get r1 published on r2's topic: {got['r2']}"
    finally:
        for conn in (r1, r2):
            conn.disconnect().result(5)
