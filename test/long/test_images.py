"""The container images are really built and really start (``make images``: scripts/build_images.sh).

What it runs: the Debian 12 base by mmdebstrap (cached under .state/images/), the robot and control
images by ``podman build --isolation=chroot`` from docker/*.Dockerfile with that base as BASE_IMAGE,
then scripts/smoke_image.sh for each: the image's entrypoint in fresh pid/mount/net namespaces (loopback
only) chrooted into the mounted image as its non-root user; docker/healthcheck.py must pass inside with
every node process running, and SIGTERM must stop everything with exit 0 and no traceback.

What it would catch: a Dockerfile that no longer builds (a renamed requirement, a missing COPY, a wheel
that does not install on Debian's Python), an image whose entrypoint or nodes do not start (a missing
runtime library, a file left in the build stage), a health check that does not match the processes, an
unclean stop, and a base cache that is not reused. Takes minutes (first build ~10 min on a busy 2-core
machine; cached ~1-2 min), hence test/long/.

Needs root (mmdebstrap, podman storage, mount namespaces) and the Debian packages podman, mmdebstrap and
iproute2 (requirements/apt.txt). Missing ones are installed with apt-get; if that fails the test FAILS
naming them. It is skipped, with that reason, only where podman truly cannot be installed: not root or no
apt-get on this machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = {"podman": "podman", "mmdebstrap": "mmdebstrap", "ip": "iproute2", "unshare": "util-linux"}

pytestmark = pytest.mark.timeout(3600)


def _ensure_tools() -> None:
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"podman cannot be installed here (needs root and apt-get): missing {', '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    result = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *missing],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    still = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    assert result.returncode == 0 and not still, (
        f"could not install {', '.join(missing)} with apt-get (requirements/apt.txt); "
        f"make images needs them:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    )


@pytest.fixture(scope="module")
def tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("make images needs root (mmdebstrap, podman storage, mount namespaces); not root here")
    _ensure_tools()


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 3000) -> tuple[int, str, float]:
    start = time.monotonic()
    result = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout, check=False
    )
    return result.returncode, result.stdout + result.stderr, time.monotonic() - start


def test_make_images_builds_and_smoke_starts_both_images(tools: None) -> None:
    rc, out, took = _run(["scripts/build_images.sh"], {"RP_IMAGES_TAG": "test"})
    print(out, f"\n(took {took:.0f}s; load {Path('/proc/loadavg').read_text().split()[:3]})")
    assert rc == 0, out[-6000:]
    for kind in ("robot", "control"):
        assert re.search(rf"\[images\] {kind}: built in \d+s", out), out
        assert re.search(rf"\[images\] {kind} image: \d+ MB", out), out
        assert re.search(rf"\[smoke {kind}\] healthy after \d+s", out), out
        assert re.search(rf"\[smoke {kind}\] stopped cleanly by SIGTERM", out), out
    # the nodes really ran inside (the process list printed from the namespace)
    assert re.search(r"\[smoke robot\]\s+\d+ .*robot_sim", out), out
    assert re.search(r"\[smoke control\]\s+\d+ .*fleet_registry", out), out
    # nothing left behind: the smoke containers are removed, no dangling image is kept
    names = subprocess.run(
        ["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True, check=True
    ).stdout
    assert "rp-smoke-" not in names, names


def test_second_run_uses_the_caches(tools: None) -> None:
    """The base rootfs comes from .state/images/ and every image layer from podman's cache."""
    rc, out, took = _run(["scripts/build_images.sh"], {"RP_IMAGES_TAG": "test", "RP_IMAGES_SMOKE": "0"})
    print(out, f"\n(took {took:.0f}s; load {Path('/proc/loadavg').read_text().split()[:3]})")
    assert rc == 0, out[-6000:]
    assert "base rootfs: cached" in out, out
    assert "importing" not in out, out
    for name in ("build-stage", "robot", "control"):
        log = (ROOT / ".state/images" / f"build-{name}.log").read_text(encoding="utf-8")
        steps = re.findall(r"^(?:\[\d+/\d+\] )?STEP \d+/\d+: (RUN|COPY)", log, re.MULTILINE)
        cached = log.count("--> Using cache")
        assert steps and cached >= len(steps), f"{name}: {cached} cached of {len(steps)} RUN/COPY steps:\n{log}"


def test_smoke_start_fails_on_an_unhealthy_image(tools: None) -> None:
    """The smoke start can fail: a node process that never runs keeps the healthcheck failing."""
    rc, out, _ = _run(
        ["scripts/smoke_image.sh", "robot", "localhost/robot-platform/robot:test"],
        {"RP_SMOKE_TIMEOUT": "40", "RP_SMOKE_HEALTH_PROCS": "robot_sim,no_such_node"},
        timeout=300,
    )
    assert rc != 0, out
    assert "process no_such_node: not running" in out, out
    assert "FAILED: not healthy within 40s" in out, out
    names = subprocess.run(
        ["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True, check=True
    ).stdout
    assert "rp-smoke-" not in names, names
