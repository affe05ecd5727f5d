"""DeployEngine with a real store, real signatures and real child processes; only the S3 download is a
local test double (LocalFetcher). The SeaweedFS path is covered by test/test_deploy_system.py."""

import threading
import time

import pytest
from deploy_testutil import LocalFetcher, build_signed, new_key, write_app_source, write_function_source

from robot_platform.deploy import apps, code_runner
from robot_platform.deploy.engine import DeployEngine, EngineConfig
from robot_platform.deploy.jobs import DeployRequest, State
from robot_platform.deploy.package import TrustStore
from robot_platform.deploy.store import PackageStore


class Collector:
    def __init__(self):
        self.statuses = []
        self.cond = threading.Condition()

    def __call__(self, status):
        with self.cond:
            self.statuses.append(status)
            self.cond.notify_all()

    def final(self, job_id, timeout=30.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                done = [s for s in self.statuses if s.job_id == job_id and s.state.final]
                if done:
                    return done[-1]
                left = deadline - time.monotonic()
                assert left > 0, f"job {job_id} did not finish: {[s for s in self.statuses if s.job_id == job_id]}"
                self.cond.wait(left)

    def of(self, job_id):
        return [s for s in self.statuses if s.job_id == job_id]


@pytest.fixture
def env(tmp_path):
    pem, pub = new_key(tmp_path)
    fetcher = LocalFetcher()
    statuses = Collector()
    engine = DeployEngine(
        EngineConfig(robot_id="r1", default_bucket="packages"),
        PackageStore(tmp_path / "root"),
        fetcher,
        TrustStore.from_specs([str(pub)]),
        statuses,
    )
    engine.start()

    def publish(src, uri=None):
        archive, manifest, signed = build_signed(src, tmp_path / "dist", pem)
        uri = uri or f"s3://packages/{manifest.name}/{archive.name}"
        fetcher.objects[uri] = archive
        return DeployRequest("", manifest.name, manifest.version, uri, signed.sha256, signed.signature, manifest.kind)

    yield engine, publish, statuses, tmp_path, pem
    engine.shutdown()


def request(base, job_id, **kw):
    return DeployRequest(**{**base.__dict__, "job_id": job_id, **kw})


def test_function_deploys_and_invokes(env):
    engine, publish, statuses, tmp, _ = env
    req = request(publish(write_function_source(tmp)), "job-1")
    decision = engine.submit(req)
    assert decision.accepted and decision.state == State.QUEUED
    assert statuses.final("job-1").state == State.SUCCEEDED
    steps = [s.step for s in statuses.of("job-1") if s.state == State.IN_PROGRESS]
    assert steps[0] == "download" and steps[-1] == "health_check"
    assert [s for s in ("verify", "extract", "install", "activate", "start") if s not in steps] == []
    progress = [s.progress for s in statuses.of("job-1")]
    assert progress == sorted(progress) and progress[-1] == 1.0
    [info] = engine.list_packages("hello_fn")
    assert (info.kind, info.active_version, info.running) == ("function", "1.0.0", True)
    result = engine.invoke("hello_fn", {"x": 1})
    assert result.ok, result.error
    assert result.result["greeting"] == "hello" and result.result["echo"] == {"x": 1}
    assert 0 < result.result["left_ms"] <= 10_000
    assert "invoked hello_fn" in result.logs


def test_function_errors_and_timeouts_are_results(env):
    engine, publish, statuses, tmp, _ = env
    body = (
        "import time\ndef main(event, context):\n    if event == 'sleep':\n        time.sleep(30)\n"
        "    raise ValueError('bad event')\n"
    )
    req = request(publish(write_function_source(tmp, body=body)), "job-f")
    engine.submit(req)
    assert statuses.final("job-f").state == State.SUCCEEDED
    result = engine.invoke("hello_fn", "boom")
    assert not result.ok and "ValueError: bad event" in result.error
    from robot_platform.deploy.manifest import load_manifest

    started = time.monotonic()
    slow = code_runner.invoke_function(
        engine.store.active_dir("hello_fn"), load_manifest(engine.store.active_dir("hello_fn")), "sleep", timeout_s=1.0
    )
    assert not slow.ok and "timed out" in slow.error and time.monotonic() - started < 5


# First run answers "unhealthy" at once, every later run hangs past the deadline (a check slowed down by a
# busy machine): the verdict is the answer that came, not a timeout.
UNHEALTHY_THEN_HANGING = (
    "import os, sys, time\n"
    "if os.path.exists('checked'):\n    time.sleep(30)\n"
    "open('checked', 'w').write('1'); sys.exit(3)"
)


@pytest.mark.parametrize(("check", "state", "reason"), [
    (UNHEALTHY_THEN_HANGING, State.FAILED, "not healthy within 1.5 s (python3 exited with 3"),
    ("import time; time.sleep(30)", State.TIMED_OUT, "did not finish within 1.5 s"),
])  # fmt: skip
def test_health_verdict_is_the_last_answer_not_the_cut_attempt(env, check, state, reason):
    engine, publish, statuses, tmp, _ = env
    engine.submit(request(publish(write_app_source(tmp, version="1.0.0")), "app-1"))
    assert statuses.final("app-1").state == State.SUCCEEDED
    engine.submit(request(publish(write_app_source(tmp, version="2.0.0", timeout_s=1.5, check=check)), "app-2"))
    final = statuses.final("app-2")
    assert final.state == state and reason in final.reason, final
    assert engine.store.active_version("demo_app") == "1.0.0"


def test_app_unhealthy_second_version_rolls_back(env):
    engine, publish, statuses, tmp, _ = env
    engine.submit(request(publish(write_app_source(tmp, version="1.0.0")), "app-1"))
    assert statuses.final("app-1").state == State.SUCCEEDED
    app1 = engine.apps.get("demo_app")
    pid1 = app1.pid
    assert app1.alive() and (engine.store.active_dir("demo_app") / "installed").exists()
    engine.submit(request(publish(write_app_source(tmp, version="2.0.0", healthy=False, timeout_s=1.5)), "app-2"))
    final = statuses.final("app-2")
    assert final.state == State.FAILED
    assert "not healthy" in final.reason and "demo_app is on 1.0.0" in final.reason
    assert "rollback" in [s.step for s in statuses.of("app-2")]
    assert engine.store.active_version("demo_app") == "1.0.0"
    assert engine.store.installed_versions("demo_app") == ["1.0.0"]
    app = engine.apps.get("demo_app")
    assert app.alive() and app.pid != pid1  # the first version runs again (restarted after the stop)
    [info] = engine.list_packages("demo_app")
    assert info.running and info.active_version == "1.0.0"


def test_tampered_archive_rejected_old_version_untouched(env):
    engine, publish, statuses, tmp, _ = env
    engine.submit(request(publish(write_function_source(tmp)), "ok-1"))
    assert statuses.final("ok-1").state == State.SUCCEEDED
    req2 = publish(write_function_source(tmp, version="2.0.0"))
    path = tmp / "dist" / "hello_fn-2.0.0.tar.gz"
    path.write_bytes(path.read_bytes() + b"tampered")
    engine.submit(request(req2, "bad-2"))
    final = statuses.final("bad-2")
    assert final.state == State.REJECTED and "sha256 mismatch" in final.reason
    assert engine.store.active_version("hello_fn") == "1.0.0"
    assert engine.store.installed_versions("hello_fn") == ["1.0.0"]


def test_rejections_at_once(env):
    engine, publish, _statuses, tmp, _ = env
    base = publish(write_function_source(tmp))
    other_pem, _ = new_key(tmp)
    from robot_platform.deploy.package import sign_archive

    foreign = sign_archive(tmp / "dist" / "hello_fn-1.0.0.tar.gz", other_pem)
    cases = {
        "unknown-key": request(base, "unknown-key", signature=foreign.signature),
        "bad-sha": request(base, "bad-sha", sha256="xyz"),
        "bad-name": request(base, "bad-name", package_name="../etc"),
        "bad-kind": request(base, "bad-kind", kind="daemon"),
        "bad-uri": request(base, "bad-uri", artifact_uri="http://example.com/x"),
    }
    for job_id, req in cases.items():
        decision = engine.submit(req)
        assert not decision.accepted and decision.state == State.REJECTED, job_id
        assert decision.message
    assert "no trusted key" in engine.submit(cases["unknown-key"]).message
    assert engine.rejected_count == len(cases)  # the duplicate is answered, not counted again
    assert engine.list_packages() == []


def test_manifest_mismatch_and_missing_object(env):
    engine, publish, statuses, tmp, _ = env
    base = publish(write_function_source(tmp))
    engine.submit(request(base, "wrong-kind", kind="app"))
    final = statuses.final("wrong-kind")
    assert final.state == State.REJECTED and "kind" in final.reason
    engine.submit(request(base, "missing", artifact_uri="s3://packages/nope.tar.gz"))
    final = statuses.final("missing")
    assert final.state == State.FAILED and "404" in final.reason
    assert engine.list_packages() == []


def test_job_id_idempotent_and_per_package_queue(env):
    engine, publish, statuses, tmp, _ = env
    r1 = request(publish(write_function_source(tmp)), "same")
    r2 = request(publish(write_function_source(tmp, version="2.0.0")), "next")
    d1, d2 = engine.submit(r1), engine.submit(r2)
    assert d1.accepted and d2.accepted
    again = engine.submit(r1)
    assert again.accepted and again.job_id == "same"
    assert statuses.final("same").state == State.SUCCEEDED
    assert statuses.final("next").state == State.SUCCEEDED
    fetches = engine.fetcher.calls
    repeat = engine.submit(r1)
    assert repeat.accepted and repeat.state == State.SUCCEEDED and "duplicate" in repeat.message
    assert engine.fetcher.calls == fetches  # nothing was redone
    clash = engine.submit(request(r1, "same", version="2.0.0"))
    assert not clash.accepted and "different request" in clash.message
    assert engine.store.active_version("hello_fn") == "2.0.0"


def test_rollback_service_logic(env):
    engine, publish, statuses, tmp, _ = env
    for v in ("1.0.0", "2.0.0"):
        engine.submit(request(publish(write_app_source(tmp, version=v)), f"j-{v}"))
        assert statuses.final(f"j-{v}").state == State.SUCCEEDED
    result = engine.rollback("demo_app")
    assert result.success and result.active_version == "1.0.0", result.message
    assert engine.apps.get("demo_app").alive()
    assert engine.apps.get("demo_app").manifest.version == "1.0.0"
    result = engine.rollback("demo_app", "9.9.9")
    assert not result.success and "not installed" in result.message
    assert engine.rollback("demo_app", "2.0.0").active_version == "2.0.0"


def test_restart_recovers_and_restarts_app(env):
    engine, publish, statuses, tmp, _ = env
    engine.submit(request(publish(write_app_source(tmp)), "a1"))
    assert statuses.final("a1").state == State.SUCCEEDED
    pid = engine.apps.get("demo_app").pid
    # simulate a crash: forget the engine without stopping its app, then start a new one on the same root
    engine.apps.set("demo_app", None)
    second = Collector()
    engine2 = DeployEngine(engine.config, PackageStore(engine.store.root), engine.fetcher, engine.trust, second)
    engine2.start()
    try:
        assert apps._gone(pid)
        assert engine2.apps.get("demo_app").alive()
        repeat = engine2.submit(request(publish(write_app_source(tmp / "again")), "a1"))
        assert repeat.accepted and repeat.state == State.SUCCEEDED
    finally:
        engine2.shutdown()


def test_archive_with_invalid_manifest_is_rejected(env):
    """An archive whose manifest misses a field (built by hand: the CLI refuses to) is signed but rejected."""
    import io
    import tarfile

    from robot_platform.deploy.package import sha256_file, sign_archive

    engine, _publish, statuses, tmp, pem = env
    archive = tmp / "broken-1.0.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"name: broken\nversion: 1.0.0\nkind: function\nruntime: python3\n"  # no handler
        info = tarfile.TarInfo("manifest.yaml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    signed = sign_archive(archive, pem)
    assert signed.sha256 == sha256_file(archive)
    engine.fetcher.objects["s3://packages/broken.tar.gz"] = archive
    engine.submit(
        DeployRequest(
            "broken-1", "broken", "1.0.0", "s3://packages/broken.tar.gz", signed.sha256, signed.signature, "function"
        )
    )
    final = statuses.final("broken-1")
    assert final.state == State.REJECTED and "'handler'" in final.reason
    assert engine.list_packages() == []
    assert not (engine.store.root / "broken" / "staging").exists()


def test_shutdown_cancels_a_long_install_and_keeps_the_old_version(env):
    engine, publish, statuses, tmp, _ = env
    engine.submit(request(publish(write_app_source(tmp, version="1.0.0")), "c-1"))
    assert statuses.final("c-1").state == State.SUCCEEDED
    src = write_app_source(tmp, version="2.0.0")
    manifest = (
        (src / "manifest.yaml")
        .read_text()
        .replace("open('installed', 'w').write('yes')", "import time; time.sleep(60)")
    )
    (src / "manifest.yaml").write_text(manifest)
    engine.submit(request(publish(src), "c-2"))
    deadline = time.monotonic() + 20
    while "install" not in [s.step for s in statuses.of("c-2")] and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    engine.shutdown()
    assert time.monotonic() - started < 10
    final = statuses.final("c-2")
    assert final.state == State.CANCELED, final.reason
    assert engine.store.active_version("demo_app") == "1.0.0"
    assert engine.store.installed_versions("demo_app") == ["1.0.0"]
    assert engine.apps.get("demo_app") is None  # apps stopped with the engine


@pytest.mark.parametrize(
    "uri",
    [
        "s3://packages/../hello_fn/hello_fn-1.0.0.tar.gz",
        "s3://packages/hello_fn/../../etc/passwd",
        "s3://packages/hello_fn/./hello_fn-1.0.0.tar.gz",
        "s3://packages//hello_fn-1.0.0.tar.gz",
        "s3://packages/hello_fn\\..\\x.tar.gz",
        "s3://packages/hello_fn/x\n.tar.gz",
        "s3://pack..ages/hello_fn/hello_fn-1.0.0.tar.gz",
    ],
)
def test_artifact_uri_with_path_tricks_is_rejected_at_once(env, uri):
    """A '..' in artifact_uri is refused before any download (REJECTED), not FAILED after one."""
    engine, publish, _statuses, tmp, _ = env
    base = publish(write_function_source(tmp))
    engine.fetcher.objects[uri] = engine.fetcher.objects[base.artifact_uri]  # even if storage would serve it
    decision = engine.submit(request(base, "dotdot", artifact_uri=uri))
    assert not decision.accepted and decision.state == State.REJECTED
    assert "artifact_uri" in decision.message
    assert engine.fetcher.calls == 0
    assert not (tmp / "root" / "hello_fn").exists()


def test_rejected_or_failed_first_deployment_leaves_no_package_directory(env):
    """A refused first deployment of a package leaves nothing under install_root (hardening issue 7)."""
    engine, publish, statuses, tmp, _ = env
    base = publish(write_function_source(tmp))
    engine.submit(request(base, "wrong-kind", kind="app"))  # refused after download + verify + extract
    assert statuses.final("wrong-kind").state == State.REJECTED
    path = tmp / "dist" / "hello_fn-1.0.0.tar.gz"
    good = path.read_bytes()
    path.write_bytes(good + b"tampered")
    engine.fetcher.objects[base.artifact_uri] = path
    engine.submit(request(base, "tampered"))
    assert statuses.final("tampered").state == State.REJECTED
    engine.submit(request(base, "missing", artifact_uri="s3://packages/nope.tar.gz"))
    assert statuses.final("missing").state == State.FAILED
    assert not (tmp / "root" / "hello_fn").exists()
    assert [p.name for p in (tmp / "root").iterdir() if not p.name.startswith(".")] == []  # .cache, .jobs
    assert engine.list_packages() == []
    # The package deploys normally afterwards.
    path.write_bytes(good)
    engine.submit(request(base, "good"))
    assert statuses.final("good").state == State.SUCCEEDED
    assert engine.store.packages() == ["hello_fn"]
