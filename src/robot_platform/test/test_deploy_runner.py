"""runner + sandbox with real child processes: limits applied, environment isolated, restart policy."""

import os
import time

import pytest

from robot_platform.deploy.apps import AppProcess
from robot_platform.deploy.code_runner import invoke_function, run_step
from robot_platform.deploy.errors import RunError, StepTimeoutError
from robot_platform.deploy.manifest import parse_manifest


def fn_manifest(**kw):
    return parse_manifest(
        {
            "name": "f",
            "version": "1",
            "kind": "function",
            "runtime": "python3",
            "handler": "h.main",
            "timeout_s": 10,
            **kw,
        }
    )


def test_memory_limit_and_clean_environment(tmp_path, monkeypatch):
    (tmp_path / "h.py").write_text(
        "import os\n"
        "def main(event, context):\n"
        "    if event == 'env':\n"
        "        return sorted(k for k in os.environ if k.startswith(('AWS', 'ROS', 'SECRET')))\n"
        "    blob = bytearray(event * 1024 * 1024)\n"
        "    return len(blob)\n"
    )
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "must-not-leak")
    manifest = fn_manifest(limits={"memory_mb": 200})
    leaked = invoke_function(tmp_path, manifest, "env")
    assert leaked.ok and leaked.result == [], leaked.result
    assert invoke_function(tmp_path, manifest, 20).result == 20 * 1024 * 1024
    big = invoke_function(tmp_path, manifest, 400)
    assert not big.ok and "MemoryError" in big.error


def test_handler_module_does_not_shadow_platform_modules(tmp_path):
    (tmp_path / "store.py").write_text("def main(event, context):\n    return 'package store module'\n")
    manifest = parse_manifest(
        {"name": "f", "version": "1", "kind": "function", "runtime": "python3", "handler": "store.main"}
    )
    assert invoke_function(tmp_path, manifest, None).result == "package store module"


def test_run_step_failure_and_timeout(tmp_path):
    manifest = fn_manifest()
    assert "hi" in run_step("install", manifest, ["python3", "-c", "print('hi')"], tmp_path, 10)
    with pytest.raises(RunError) as err:
        run_step("install", manifest, ["python3", "-c", "import sys; print('boom'); sys.exit(3)"], tmp_path, 10)
    assert err.value.returncode == 3 and "boom" in err.value.reason
    started = time.monotonic()
    with pytest.raises(StepTimeoutError):
        run_step("install", manifest, ["python3", "-c", "import time; time.sleep(30)"], tmp_path, 0.5)
    assert time.monotonic() - started < 5
    with pytest.raises(RunError):
        run_step("install", manifest, ["/nonexistent/binary"], tmp_path, 5)


def test_app_restart_policy(tmp_path):
    (tmp_path / "app.py").write_text(
        "import os, sys, time\n"
        "n = len(os.listdir('runs'))\n"
        "open(f'runs/{n}', 'w').close()\n"
        "if n == 0:\n    sys.exit(1)\n"
        "time.sleep(30)\n"
    )
    (tmp_path / "runs").mkdir()
    manifest = parse_manifest(
        {
            "name": "a",
            "version": "1",
            "kind": "app",
            "runtime": "python3",
            "run": ["python3", "app.py"],
            "restart": "on-failure",
        }
    )
    app = AppProcess(tmp_path, manifest, tmp_path / "app.log")
    app.start()
    try:
        deadline = time.monotonic() + 10
        while app.restarts == 0 and time.monotonic() < deadline:
            app.supervise()
            time.sleep(0.05)
        assert app.restarts == 1
        deadline = time.monotonic() + 10
        while len(os.listdir(tmp_path / "runs")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.alive() and len(os.listdir(tmp_path / "runs")) == 2
    finally:
        app.stop()
    assert not app.alive()
    assert "--- start a 1" in (tmp_path / "app.log").read_text()
