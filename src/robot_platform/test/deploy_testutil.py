"""Helpers for deploy_service unit tests: write package sources, build and sign archives."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import yaml

from robot_platform.deploy.package import build_archive, generate_private_key_pem, sign_archive


def write_function_source(root: Path, name: str = "hello_fn", version: str = "1.0.0", body: str = "") -> Path:
    src = root / f"src-{name}-{version}"
    src.mkdir(parents=True)
    manifest = {
        "name": name,
        "version": version,
        "kind": "function",
        "runtime": "python3",
        "handler": "handler.main",
        "environment": {"GREETING": "hello"},
        "timeout_s": 10,
        "limits": {"memory_mb": 512, "cpu_s": 10},
    }
    (src / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    (src / "handler.py").write_text(
        body
        or textwrap.dedent(f"""
        import os

        def main(event, context):
            print("invoked", context.function_name)
            return {{"greeting": os.environ["GREETING"], "echo": event, "version": "{version}",
                    "left_ms": context.get_remaining_time_in_millis()}}
        """)
    )
    return src


def write_app_source(
    root: Path, name: str = "demo_app", version: str = "1.0.0", healthy: bool = True, timeout_s: float = 5,
    check: str = "",
) -> Path:
    """An app that writes a ready file; its health check looks for it (or always fails, or ``check``)."""
    src = root / f"src-{name}-{version}"
    src.mkdir(parents=True)
    if not check:
        check = "import os,sys; sys.exit(0 if os.path.exists('ready') else 1)" if healthy else "import sys; sys.exit(3)"
    manifest = {
        "name": name,
        "version": version,
        "kind": "app",
        "runtime": "python3",
        "run": ["python3", "app.py"],
        "timeout_s": timeout_s,
        "health_check": {"command": ["python3", "-c", check], "interval_s": 0.2},
        "install": [["python3", "-c", "open('installed', 'w').write('yes')"]],
    }
    (src / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    (src / "app.py").write_text(
        textwrap.dedent("""
        import signal, sys, time, os
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        open('ready', 'w').write(str(os.getpid()))
        while True:
            time.sleep(0.2)
        """)
    )
    return src


def build_signed(src: Path, out: Path, key_pem: bytes):
    archive, manifest = build_archive(src, out)
    signed = sign_archive(archive, key_pem)
    return archive, manifest, signed


def new_key(tmp: Path) -> tuple[bytes, Path]:
    """A private key PEM and the path of its public key PEM."""
    from robot_platform.deploy.package import public_key_pem

    pem = generate_private_key_pem()
    pub = tmp / f"key-{len(list(tmp.glob('key-*')))}.pub.pem"
    pub.write_bytes(public_key_pem(pem))
    return pem, pub


class LocalFetcher:
    """Test double of S3Fetcher for engine unit tests: 'downloads' from a dict uri -> local file."""

    def __init__(self) -> None:
        self.objects: dict[str, Path] = {}
        self.calls = 0

    def download(self, uri, dest, max_bytes, progress=None, cancelled=lambda: False):
        from robot_platform.deploy.errors import FetchError, LimitExceededError

        self.calls += 1
        if uri not in self.objects:
            raise FetchError(uri, "HTTP 404 NoSuchKey")
        size = self.objects[uri].stat().st_size
        if size > max_bytes:
            raise LimitExceededError("archive_bytes", size, max_bytes)
        shutil.copyfile(self.objects[uri], dest)
        if progress:
            progress(size, size)
        return size
