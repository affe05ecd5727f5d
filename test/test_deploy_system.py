"""System test of deploy_service: real SeaweedFS, real nats-server, the real node in its own process.

Packages are built, signed and pushed with the real CLI (``python -m robot_platform.cli.main package ...``), then
deployed through the ROS ``deploy`` service; statuses are observed on the ROS topic and on NATS. Checked:
a function deploys and is invoked over NATS; an app deploys and runs; an app version that fails its
health check is rolled back with the first version still running; a tampered archive, an unknown signing
key, a path-traversal archive and a missing object are refused with the old version untouched; the
rollback and list services; killing the node in the middle of an install and restarting it leaves the
previous version active and running; a download interrupted half-way resumes with a ranged GET.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import nats
import pytest
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

import fixtures_s3
from fixtures_s3 import SeaweedFS
from helpers import REPO, ros_env, wait_for
from robot_platform.deploy.errors import FetchError, LimitExceededError
from robot_platform.deploy.fetch import S3Config, S3Fetcher
from robot_platform_interfaces.msg import DeploymentStatus
from robot_platform_interfaces.srv import Deploy, InvokeFunction, ListPackages, Rollback

seaweedfs = fixtures_s3.seaweedfs  # the module-scoped SeaweedFS fixture, used by every test here
SRC = str(REPO / "src" / "robot_platform")
WAIT_S = 60.0
BUCKET = "packages"

PARAMS = """
/**/deploy_service:
  ros__parameters:
    robot_id: r1
    install_root: {root}
    s3_endpoint_url: {endpoint}
    s3_bucket: {bucket}
    s3_credentials_file: {creds}
    trusted_keys: [{key}]
    max_archive_mb: 8
    download_retries: 1
    nats_url: {nats}
"""


# ---- package sources ---------------------------------------------------------------------------------


def function_source(root: Path, version: str) -> Path:
    src = root / f"fn-{version}"
    src.mkdir(parents=True)
    (src / "manifest.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "hello_fn",
                "version": version,
                "kind": "function",
                "runtime": "python3",
                "handler": "handler.main",
                "environment": {"GREETING": "hello"},
                "timeout_s": 10,
                "limits": {"memory_mb": 512, "cpu_s": 10},
            }
        )
    )
    (src / "handler.py").write_text(
        textwrap.dedent(f"""
        import os
        def main(event, context):
            print("handling", event)
            return {{"greeting": os.environ["GREETING"], "echo": event, "version": "{version}"}}
        """)
    )
    return src


def trigger_source(root: Path) -> Path:
    """A function fired by a NATS subject, a ROS topic and a schedule."""
    src = root / "tick_fn"
    src.mkdir(parents=True)
    (src / "manifest.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "tick_fn",
                "version": "1.0.0",
                "kind": "function",
                "runtime": "python3",
                "handler": "fn.on_event",
                "timeout_s": 10,
                "triggers": [{"nats": "robots.r1.events.door"}, {"ros_topic": "/door_events"}, {"schedule_s": 1.0}],
            }
        )
    )
    (src / "fn.py").write_text("def on_event(event, context):\n    return {'seen': event}\n")
    return src


async def triggered_results(url: str, domain_pub: Any, timeout: float) -> dict[str, Any]:
    """Fire tick_fn through NATS and ROS; collect results until every source (and the schedule) answered."""
    nc = await nats.connect(url)
    seen: dict[str, Any] = {}
    try:
        sub = await nc.subscribe("robots.r1.deploy.result.tick_fn")
        deadline = time.monotonic() + timeout
        while len(seen) < 3 and time.monotonic() < deadline:
            if "nats:robots.r1.events.door" not in seen:
                await nc.publish("robots.r1.events.door", msgpack.packb({"door": "open"}))
            if "ros:/door_events" not in seen:
                domain_pub()
            try:
                msg = await sub.next_msg(timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            body = msgpack.unpackb(msg.data)
            seen.setdefault(body["source"], body)
        return seen
    finally:
        await nc.drain()


def app_source(root: Path, version: str, healthy: bool = True, install_sleep_s: float = 0) -> Path:
    src = root / f"app-{version}"
    src.mkdir(parents=True)
    check = "import os,sys; sys.exit(0 if os.path.exists('ready') else 1)" if healthy else "import sys; sys.exit(1)"
    install = [["python3", "-c", f"import time; time.sleep({install_sleep_s})"]] if install_sleep_s else []
    (src / "manifest.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "demo_app",
                "version": version,
                "kind": "app",
                "runtime": "python3",
                "timeout_s": 4,
                "run": ["python3", "app.py"],
                "install": install,
                "health_check": {"command": ["python3", "-c", check], "interval_s": 0.2},
            }
        )
    )
    (src / "app.py").write_text(
        textwrap.dedent("""
        import os, signal, sys, time
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        open("ready", "w").write(str(os.getpid()))
        while True:
            time.sleep(0.5)
        """)
    )
    return src


def cli(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the real package CLI; return its JSON output."""
    out = subprocess.run(
        [sys.executable, "-m", "robot_platform.cli.main", "package", *args],
        env={**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class Publisher:
    """build + sign + push with the CLI, against the test's SeaweedFS."""

    def __init__(self, s3: SeaweedFS, workdir: Path) -> None:
        self.s3 = s3
        self.workdir = workdir
        self.key = workdir / "signing.pem"
        self.trusted = cli("keygen", str(self.key))["trusted_key"]

    def push_args(self) -> list[str]:
        return [
            "--bucket",
            BUCKET,
            "--endpoint-url",
            self.s3.endpoint_url,
            "--credentials-file",
            str(self.s3.credentials_file),
            "--create-bucket",
        ]

    def publish(self, src: Path, key: Path | None = None) -> dict[str, Any]:
        archive = cli("build", str(src), "-o", str(self.workdir / "dist"))["archive"]
        cli("sign", archive, "--key", str(key or self.key))
        return cli("push", archive, *self.push_args())


# ---- the ROS side of the test --------------------------------------------------------------------------


class Client:
    """In-process rclpy node: service clients and a status subscriber."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("deploy_system_test")
        self.statuses: list[DeploymentStatus] = []
        self._lock = threading.Lock()
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(DeploymentStatus, "deployment_status", self._on_status, qos)
        self.deploy_cli = self.node.create_client(Deploy, "deploy")
        self.rollback_cli = self.node.create_client(Rollback, "rollback")
        self.list_cli = self.node.create_client(ListPackages, "list_packages")
        self.invoke_cli = self.node.create_client(InvokeFunction, "invoke")
        self.executor = SingleThreadedExecutor(context=self.node.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_status(self, msg: DeploymentStatus) -> None:
        with self._lock:
            self.statuses.append(msg)

    def call(self, client: Any, request: Any, timeout: float = WAIT_S) -> Any:
        assert client.wait_for_service(timeout_sec=timeout), f"service {client.srv_name} not available"
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        assert done.wait(timeout), f"no answer from {client.srv_name}"
        return future.result()

    def deploy(self, doc: dict[str, Any], job_id: str, **override: str) -> Deploy.Response:
        fields = {k: doc[k] for k in ("package_name", "version", "artifact_uri", "sha256", "signature", "kind")}
        return self.call(self.deploy_cli, Deploy.Request(job_id=job_id, **{**fields, **override}))

    def final(self, job_id: str, timeout: float = WAIT_S) -> DeploymentStatus:
        def done() -> DeploymentStatus | None:
            with self._lock:
                finals = [
                    s for s in self.statuses if s.job_id == job_id and s.state >= DeploymentStatus.STATE_SUCCEEDED
                ]
            return finals[-1] if finals else None

        return wait_for(done, timeout, f"final status of job {job_id}")

    def steps(self, job_id: str) -> list[str]:
        """The job's steps in order, each once (download reports progress several times)."""
        with self._lock:
            steps = [s.step for s in self.statuses if s.job_id == job_id and s.step]
        return [step for i, step in enumerate(steps) if i == 0 or steps[i - 1] != step]

    def packages(self, name: str = "") -> dict[str, Any]:
        return {p.name: p for p in self.call(self.list_cli, ListPackages.Request(package_name=name)).packages}

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.thread.join(timeout=5.0)


@pytest.fixture
def ros_context(ros_domain: int):
    rclpy.init()
    try:
        yield ros_domain
    finally:
        rclpy.try_shutdown()


def start_node(
    procs: Any, workdir: Path, domain: int, s3: SeaweedFS, trusted: str, nats_url: str, name: str = "deploy_service"
) -> Any:
    params = workdir / "deploy.yaml"
    params.write_text(
        PARAMS.format(
            root=workdir / "robot",
            endpoint=s3.endpoint_url,
            bucket=BUCKET,
            creds=s3.credentials_file,
            key=json.dumps(trusted),
            nats=nats_url,
        )
    )
    env = ros_env(domain, {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")})
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(key, None)  # the node must get its credentials from its credentials file
    argv = [sys.executable, "-m", "robot_platform.deploy.node", "--ros-args", "--params-file", str(params)]
    return procs.start(name, argv, env=env)


def app_pids(root: Path) -> list[int]:
    """Processes whose working directory is inside the install root (the apps we started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd").startswith(str(root)):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


async def nats_invoke(url: str, package: str, event: Any) -> dict[str, Any]:
    nc = await nats.connect(url)
    try:
        reply = await nc.request(f"robots.r1.deploy.invoke.{package}", msgpack.packb(event), timeout=30)
        return msgpack.unpackb(reply.data)
    finally:
        await nc.drain()


async def nats_restart(url: str, package: str) -> dict[str, Any]:
    """robot_agent's restart_app remote action, as it reaches deploy_service."""
    nc = await nats.connect(url)
    try:
        reply = await nc.request(f"robots.r1.deploy.restart.{package}", b"", timeout=30)
        return msgpack.unpackb(reply.data)
    finally:
        await nc.drain()


async def nats_statuses(url: str, job_id: str, timeout: float) -> list[dict[str, Any]]:
    """Subscribe and collect statuses of ``job_id`` until a final one arrives."""
    nc = await nats.connect(url)
    got: list[dict[str, Any]] = []
    try:
        sub = await nc.subscribe("robots.r1.deploy.status")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = await sub.next_msg(timeout=deadline - time.monotonic())
            assert msg.headers["rp-type"] == "robot_platform_interfaces/msg/DeploymentStatus"
            body = msgpack.unpackb(msg.data)
            if body["job_id"] == job_id:
                got.append(body)
                if body["state"] >= DeploymentStatus.STATE_SUCCEEDED:
                    return got
        return got
    finally:
        await nc.drain()


# ---- tests ----------------------------------------------------------------------------------------------


def test_download_resumes_and_unreachable_storage_fails(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    seaweedfs.create_bucket(BUCKET)
    blob = os.urandom(3 * 1024 * 1024 + 17)
    seaweedfs.client().put_object(Bucket=BUCKET, Key="big/blob.bin", Body=blob)
    etag = seaweedfs.client().head_object(Bucket=BUCKET, Key="big/blob.bin")["ETag"]
    dest = tmp_path / "blob.bin"
    # An earlier attempt got the first MB before the link dropped.
    (tmp_path / "blob.bin.part").write_bytes(blob[: 1024 * 1024])
    (tmp_path / "blob.bin.part.etag").write_text(etag)
    seen: list[int] = []
    config = S3Config(
        endpoint_url=seaweedfs.endpoint_url, access_key_id=seaweedfs.access_key, secret_access_key=seaweedfs.secret_key
    )
    size = S3Fetcher(config).download(
        f"s3://{BUCKET}/big/blob.bin", dest, 10 * 1024 * 1024, lambda have, total: seen.append(have)
    )
    assert size == len(blob) and dest.read_bytes() == blob
    assert seen[0] > 1024 * 1024  # the first progress report already counts the resumed bytes
    assert not (tmp_path / "blob.bin.part").exists()

    with pytest.raises(LimitExceededError) as err:  # oversized: refused from HEAD, before any byte
        S3Fetcher(config).download(f"s3://{BUCKET}/big/blob.bin", tmp_path / "big2", 1024 * 1024)
    assert err.value.what == "archive_bytes" and not (tmp_path / "big2.part").exists()

    dead = S3Config(
        endpoint_url="http://127.0.0.1:9", access_key_id="x", secret_access_key="y", connect_timeout_s=0.5, retries=1
    )
    started = time.monotonic()
    with pytest.raises(FetchError, match="unreachable"):
        S3Fetcher(dead, sleep=lambda s: None).download(f"s3://{BUCKET}/x.tar.gz", tmp_path / "x", 1000)
    assert time.monotonic() - started < 15


def test_deploy_function_and_apps_through_ros(
    seaweedfs: SeaweedFS, nats_server: Any, ros_context: int, procs: Any, tmp_path: Path
) -> None:
    seaweedfs.create_bucket(BUCKET)
    pub = Publisher(seaweedfs, tmp_path)
    start_node(procs, tmp_path, ros_context, seaweedfs, pub.trusted, nats_server.url)
    client = Client()
    root = tmp_path / "robot"
    try:
        # ---- a function: built, signed, pushed, deployed through ROS, invoked through NATS
        fn1 = pub.publish(function_source(tmp_path, "1.0.0"))
        assert fn1["artifact_uri"] == f"s3://{BUCKET}/hello_fn/hello_fn-1.0.0.tar.gz"
        t0 = time.monotonic()
        nats_task = threading.Thread(
            target=lambda: results.update(nats=asyncio.run(nats_statuses(nats_server.url, "fn-1", WAIT_S)))
        )
        results: dict[str, Any] = {}
        nats_task.start()
        time.sleep(0.5)  # let the NATS subscription settle before the job starts
        answer = client.deploy(fn1, "fn-1")
        assert answer.accepted and answer.state == DeploymentStatus.STATE_QUEUED, answer.message
        final = client.final("fn-1")
        deploy_s = time.monotonic() - t0 - 0.5
        assert final.state == DeploymentStatus.STATE_SUCCEEDED, final.reason
        assert client.steps("fn-1")[:2] == ["download", "verify"]
        nats_task.join(timeout=WAIT_S)
        assert [s["state_name"] for s in results["nats"]][-1] == "SUCCEEDED"
        reply = asyncio.run(nats_invoke(nats_server.url, "hello_fn", {"n": 7}))
        assert reply["ok"], reply
        assert reply["result"] == {"greeting": "hello", "echo": {"n": 7}, "version": "1.0.0"}
        assert "handling" in reply["logs"]
        # ... and through the ROS service (`ros2 service call /invoke ...`), event and result as JSON text
        invoked = client.call(client.invoke_cli, InvokeFunction.Request(package_name="hello_fn", event_json='{"n": 8}',
                                                                         invocation_id="ros-1"))  # fmt: skip
        assert invoked.ok and invoked.invocation_id == "ros-1", invoked.error
        assert json.loads(invoked.result_json) == {"greeting": "hello", "echo": {"n": 8}, "version": "1.0.0"}
        assert "handling" in invoked.logs and invoked.duration_s > 0
        for bad, why in (("{not json", "event_json: not valid JSON"), ("", "no active version")):
            refused = client.call(client.invoke_cli, InvokeFunction.Request(
                package_name="hello_fn" if bad else "no_such_fn", event_json=bad))  # fmt: skip
            assert not refused.ok and why in refused.error, refused.error
        print(f"\nsmall function package: request -> SUCCEEDED in {deploy_s:.2f} s")

        # ---- a function with triggers: NATS subject, ROS topic, schedule
        tick = pub.publish(trigger_source(tmp_path))
        client.deploy(tick, "tick-1")
        assert client.final("tick-1").state == DeploymentStatus.STATE_SUCCEEDED
        door_pub = client.node.create_publisher(String, "/door_events", 10)
        seen = asyncio.run(
            triggered_results(nats_server.url, lambda: door_pub.publish(String(data='{"door": 2}')), WAIT_S)
        )
        assert seen["nats:robots.r1.events.door"]["result"] == {"seen": {"door": "open"}}
        assert seen["ros:/door_events"]["result"] == {"seen": {"door": 2}}
        assert seen["schedule"]["ok"]

        # ---- a repeated job id is idempotent
        again = client.deploy(fn1, "fn-1")
        assert again.accepted and again.state == DeploymentStatus.STATE_SUCCEEDED

        # ---- tampered archive: the bytes in storage no longer match the signed sha256
        fn2 = pub.publish(function_source(tmp_path, "2.0.0"))
        s3c = seaweedfs.client()
        key = "hello_fn/hello_fn-2.0.0.tar.gz"
        body = s3c.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        s3c.put_object(Bucket=BUCKET, Key=key, Body=body + b"\0tampered")
        assert client.deploy(fn2, "fn-2-tampered").accepted
        final = client.final("fn-2-tampered")
        assert final.state == DeploymentStatus.STATE_REJECTED and "sha256 mismatch" in final.reason
        assert client.packages("hello_fn")["hello_fn"].active_version == "1.0.0"

        # ---- signed with a key the robot does not trust: rejected at once
        other = tmp_path / "other.pem"
        cli("keygen", str(other))
        foreign = pub.publish(function_source(tmp_path / "foreign", "3.0.0"), key=other)
        answer = client.deploy(foreign, "fn-3-foreign")
        assert not answer.accepted and answer.state == DeploymentStatus.STATE_REJECTED
        assert "no trusted key" in answer.message

        # ---- path traversal inside a validly signed archive
        evil = tmp_path / "dist" / "hello_fn-4.0.0.tar.gz"
        with tarfile.open(evil, "w:gz") as tar:
            manifest = (function_source(tmp_path / "evil", "4.0.0") / "manifest.yaml").read_bytes()
            for name, data in (("manifest.yaml", manifest), ("../../escape.txt", b"owned")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        cli("sign", str(evil), "--key", str(pub.key))
        evil_doc = cli("push", str(evil), *pub.push_args())
        client.deploy(evil_doc, "fn-4-traversal")
        final = client.final("fn-4-traversal")
        assert final.state == DeploymentStatus.STATE_REJECTED and "'..'" in final.reason
        assert not list(tmp_path.rglob("escape.txt"))

        # ---- '..' in artifact_uri: REJECTED at once (it used to be fetched and end FAILED)
        dotdot = dict(fn1, version="6.0.0", artifact_uri=f"s3://{BUCKET}/hello_fn/../hello_fn/hello_fn-1.0.0.tar.gz")
        answer = client.deploy(dotdot, "fn-6-dotdot")
        assert not answer.accepted and answer.state == DeploymentStatus.STATE_REJECTED
        assert "artifact_uri" in answer.message and "'..'" in answer.message

        # ---- a new package refused after download (archive says hello_fn): nothing left under install_root
        ghost = dict(fn1, package_name="ghost_fn")
        assert client.deploy(ghost, "ghost-1").accepted
        final = client.final("ghost-1")
        assert final.state == DeploymentStatus.STATE_REJECTED and "name" in final.reason
        assert not (root / "ghost_fn").exists()

        # ---- a missing object: FAILED with the storage's answer
        missing = dict(fn1, version="5.0.0", artifact_uri=f"s3://{BUCKET}/hello_fn/none.tar.gz")
        client.deploy(missing, "fn-5-missing")
        final = client.final("fn-5-missing")
        assert final.state == DeploymentStatus.STATE_FAILED and "404" in final.reason
        assert client.packages("hello_fn")["hello_fn"].versions == ["1.0.0"]

        # ---- an app: deployed, running; a second version failing its health check is rolled back
        app1 = pub.publish(app_source(tmp_path, "1.0.0"))
        client.deploy(app1, "app-1")
        assert client.final("app-1").state == DeploymentStatus.STATE_SUCCEEDED
        info = client.packages()["demo_app"]
        assert info.running and info.active_version == "1.0.0" and info.kind == "app"
        [pid1] = app_pids(root / "demo_app")
        app2 = pub.publish(app_source(tmp_path, "2.0.0", healthy=False))
        client.deploy(app2, "app-2")
        final = client.final("app-2")
        assert final.state == DeploymentStatus.STATE_FAILED, final.reason
        assert "not healthy" in final.reason and final.previous_version == "1.0.0"
        assert "rollback" in client.steps("app-2")
        info = client.packages("demo_app")["demo_app"]
        assert info.active_version == "1.0.0" and info.running and list(info.versions) == ["1.0.0"]
        [pid_after] = app_pids(root / "demo_app")
        assert os.readlink(f"/proc/{pid_after}/cwd").endswith("versions/1.0.0")
        assert pid_after != pid1  # stopped for the switch and started again

        # ---- rollback service: deploy a good 3.0.0, then roll back to 1.0.0
        app3 = pub.publish(app_source(tmp_path, "3.0.0"))
        client.deploy(app3, "app-3")
        assert client.final("app-3").state == DeploymentStatus.STATE_SUCCEEDED
        rolled = client.call(client.rollback_cli, Rollback.Request(package_name="demo_app"))
        assert rolled.success and rolled.active_version == "1.0.0", rolled.message
        assert client.packages("demo_app")["demo_app"].running

        # ---- restart over NATS (remote action): a new process of the same version, healthy
        [pid_before] = app_pids(root / "demo_app")
        restarted = asyncio.run(nats_restart(nats_server.url, "demo_app"))
        assert restarted["ok"] and restarted["version"] == "1.0.0", restarted
        [pid_restarted] = app_pids(root / "demo_app")
        assert pid_restarted != pid_before and restarted["pid"] == pid_restarted
        refused = asyncio.run(nats_restart(nats_server.url, "hello_fn"))
        assert not refused["ok"] and "not an app" in refused["error"]
    finally:
        client.close()
    node = procs.child("deploy_service").popen
    node.send_signal(signal.SIGTERM)
    assert node.wait(timeout=30) == 0
    assert wait_for(lambda: not app_pids(root), 10, "apps stopped with the node")


def test_kill_during_install_keeps_old_version(
    seaweedfs: SeaweedFS, nats_server: Any, ros_context: int, procs: Any, tmp_path: Path
) -> None:
    seaweedfs.create_bucket(BUCKET)
    pub = Publisher(seaweedfs, tmp_path)
    root = tmp_path / "robot"
    node = start_node(procs, tmp_path, ros_context, seaweedfs, pub.trusted, nats_server.url)
    client = Client()
    try:
        client.deploy(pub.publish(app_source(tmp_path, "1.0.0")), "k-1")
        assert client.final("k-1").state == DeploymentStatus.STATE_SUCCEEDED
        client.deploy(pub.publish(app_source(tmp_path, "2.0.0", install_sleep_s=60)), "k-2")
        wait_for(lambda: "install" in client.steps("k-2"), WAIT_S, "job k-2 to reach its install step")
        os.killpg(node.pid, signal.SIGKILL)  # power loss, as far as deploy_service can tell
        node.wait(timeout=10)
        assert (root / "demo_app" / "journal.json").exists()

        start_node(procs, tmp_path, ros_context, seaweedfs, pub.trusted, nats_server.url, name="deploy_service_2")
        final = client.final("k-2")  # reported by the restarted node's recovery
        assert final.state == DeploymentStatus.STATE_FAILED and "interrupted" in final.reason
        info = wait_for(lambda: client.packages("demo_app").get("demo_app"), WAIT_S, "list_packages")
        assert info.active_version == "1.0.0" and list(info.versions) == ["1.0.0"]
        assert wait_for(lambda: client.packages("demo_app")["demo_app"].running, 10, "v1 running again")
        assert not (root / "demo_app" / "journal.json").exists()
        assert len(app_pids(root / "demo_app")) == 1  # the orphan of the killed node was stopped
        # and the next deployment works
        client.deploy(pub.publish(app_source(tmp_path, "3.0.0")), "k-3")
        assert client.final("k-3").state == DeploymentStatus.STATE_SUCCEEDED
    finally:
        client.close()
        procs.stop_all()
        for pid in app_pids(root):  # nothing may outlive the test, even if an assertion failed
            os.kill(pid, signal.SIGKILL)
