"""A real SeaweedFS S3 server for system tests (and benchmarks), on free loopback ports.

Use in a test module::

    from fixtures_s3 import seaweedfs  # noqa: F401  (pytest fixture)

    def test_x(seaweedfs):
        s3 = seaweedfs.client()   # boto3 S3 client with the test credentials
        seaweedfs.create_bucket("packages")

or, outside pytest, ``with SeaweedFS(tmp_dir) as s3: ...``.

Why its own process handling rather than the ``procs`` fixture: the server is module-scoped (starting it
takes seconds on 2 cores), while ``procs`` is per test. ``weed`` can ignore SIGTERM while it is still
starting, so stop is SIGTERM to its process group, then SIGKILL after a bounded wait. Telemetry is
switched off and every listener (master, volume, filer, s3 and their gRPC ports) is bound to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from helpers import free_port, wait_for
from robot_platform.site_setup import seaweedfs as weed

START_TIMEOUT_S = 90.0
STOP_TERM_WAIT_S = 5.0


class SeaweedFS:
    """``weed server`` with S3 enabled and one admin identity (random keys per instance)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.access_key = "rp" + secrets.token_hex(8)
        self.secret_key = secrets.token_hex(20)
        self.region = "us-east-1"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "weed.log"
        self.credentials_file = self.workdir / "s3-credentials.json"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SeaweedFS:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        admin = weed.Identity("admin", weed.publisher_identity().actions, self.access_key, self.secret_key)
        s3_config = weed.write_identities(self.workdir / "s3.json", [admin])
        weed.write_credentials(self.credentials_file, admin)
        self.port = free_port()
        argv = weed.weed_argv(data, self.port, {name: free_port() for name in weed.PORT_NAMES}, s3_config)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_for(self._ready, START_TIMEOUT_S, f"SeaweedFS S3 on {self.endpoint_url}", period=0.3)
        except TimeoutError:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"weed exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            self.client(connect_timeout=1).list_buckets()
            return True
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            return False

    def client(self, connect_timeout: float = 5) -> Any:
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=30,
            retries={"max_attempts": 2},
            s3={"addressing_style": "path"},
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=config,
        )

    def create_bucket(self, name: str) -> None:
        """Create a bucket (idempotent); retried briefly while the filer settles after start."""
        client = self.client()

        def create() -> bool:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
                client.create_bucket(Bucket=name)
            client.head_bucket(Bucket=name)
            return True

        wait_for(create, 30.0, f"bucket {name}", period=0.3)

    def env(self) -> dict[str, str]:
        """AWS_* variables for a process that should reach this server through boto3's default chain."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "RP_S3_ENDPOINT_URL": self.endpoint_url,
        }

    def log_tail(self, max_bytes: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_bytes()[-max_bytes:].decode(errors="replace")
        return ""

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL after a bounded wait (it may ignore SIGTERM)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, STOP_TERM_WAIT_S), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            deadline = time.monotonic() + wait_s
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.poll() is not None:
                break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the server left in its group

    def __enter__(self) -> SeaweedFS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A running SeaweedFS S3 server shared by the tests of one module."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
