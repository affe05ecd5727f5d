"""The demo's site services, so push-button deployments work end to end on one machine.

A real site runs these on its control server; the demo starts them next to the hub:

* **Mosquitto** (``config/mosquitto/mosquitto.conf`` as shipped, only listener and paths rewritten):
  MQTT over TLS with client certificates from a demo CA; the shipped ACL gives each robot its own
  ``$aws/things/<id>/jobs/...`` topics only. jobs_service plays AWS IoT Jobs on it, every robot's
  deploy_service is a Jobs device.
* **SeaweedFS** S3 (:mod:`.seaweedfs`): the package store. The publisher identity writes; robots get a
  read-only identity for the ``packages`` bucket.
* A **signing key** (Ed25519): robots trust only its public key; the demo signs the sample packages
  in ``examples/packages`` with it and pushes them, writing each job document to
  ``<state_dir>/packages/<name>-<version>.json`` for ``robot-platform deploy create --document ...`` or the
  console's deploy view.

Everything lives under the demo's state directory (certificates, keys and credentials mode 0600) and
is reused on the next run; nothing listens on anything but 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from robot_platform.exceptions import ConfigError
from robot_platform.launcher.processes import ProcessSpec
from robot_platform.site_setup import seaweedfs

log = logging.getLogger("robot-platform.demo")

BUCKET = "packages"
S3_REGION = "us-east-1"
JOBS_CLIENT = "jobs-service"
SAMPLE_VERSIONS = ("1.0.0", "1.1.0")  # two versions of each sample: deploy one, then the other, roll back
S3_READY_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class SitePorts:
    mqtt: int = 8883
    s3: int = 8333
    weed_base: int = 19330  # master, master gRPC, volume, volume gRPC, filer, filer gRPC, S3 gRPC: base+0..6

    def weed(self) -> dict[str, int]:
        return {name: self.weed_base + i for i, name in enumerate(seaweedfs.PORT_NAMES)}


@dataclass(frozen=True)
class DemoSite:
    """Paths and endpoints of the demo's site services (made by :func:`prepare`)."""

    root: Path
    ports: SitePorts
    pki: Path
    mosquitto_conf: Path
    s3_config: Path
    publisher: seaweedfs.Identity
    publisher_credentials: Path  # for `robot-platform package push --credentials-file` (write access)
    robot_credentials: Path
    signing_key: Path
    trusted_key: Path

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.s3}"

    @property
    def documents_dir(self) -> Path:
        return self.root / "packages"


def mosquitto_executable() -> str:
    exe = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None)
    if exe is None:
        raise ConfigError("PATH", "mosquitto", "Mosquitto not found: run `make setup` (apt mosquitto)")
    return exe


def prepare(state_dir: Path, robot_ids: list[str], share: Path, ports: SitePorts) -> DemoSite:
    """Certificates, broker config, S3 identities and the signing key (existing ones are kept)."""
    from robot_platform.cli.deploy import keygen
    from robot_platform.site_setup import certs
    from robot_platform.site_setup.mosquitto_config import render_conf, site_overrides

    root = Path(state_dir).resolve() / "site"
    pki = root / "pki"
    certs.init_ca(pki)
    certs.issue(pki, "mosquitto", "mosquitto", server=True, dns=["localhost"], ips=["127.0.0.1"])
    certs.issue(pki, JOBS_CLIENT, JOBS_CLIENT, server=False)
    for rid in robot_ids:
        certs.issue_robot(pki, rid)

    data = root / "mosquitto-data"
    data.mkdir(parents=True, exist_ok=True)
    overrides = site_overrides(ports.mqtt, pki, share / "config" / "mosquitto" / "acl", data,
                               user="root" if os.geteuid() == 0 else "")  # fmt: skip
    conf = root / "mosquitto.conf"
    conf.write_text(render_conf((share / "config" / "mosquitto" / "mosquitto.conf").read_text(), overrides))

    # New S3 keys every run (the identities file is config, the stored packages are data and stay).
    publisher, robots = seaweedfs.publisher_identity(), seaweedfs.robot_identity(BUCKET)
    s3_config = seaweedfs.write_identities(root / "s3-identities.json", [publisher, robots])
    robot_credentials = seaweedfs.write_credentials(root / "s3-robot-credentials.json", robots)
    publisher_credentials = seaweedfs.write_credentials(root / "s3-publisher-credentials.json", publisher)

    keys = root / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    os.chmod(keys, 0o700)
    signing_key = keys / "demo-signing.pem"
    if not signing_key.exists():
        keygen(signing_key)
    trusted_key = keys / "demo-signing.pub.pem"
    return DemoSite(root, ports, pki, conf, s3_config, publisher, publisher_credentials, robot_credentials, signing_key,
                    trusted_key)  # fmt: skip


def processes(site: DemoSite) -> list[ProcessSpec]:
    """Mosquitto and SeaweedFS, stopped after the nodes like the NATS servers."""
    data = site.root / "seaweedfs"
    data.mkdir(parents=True, exist_ok=True)
    return [
        ProcessSpec("control/mosquitto", [mosquitto_executable(), "-c", str(site.mosquitto_conf)], server=True),
        ProcessSpec("control/seaweedfs", seaweedfs.weed_argv(data, site.ports.s3, site.ports.weed(), site.s3_config),
                    server=True),
    ]  # fmt: skip


def jobs_params(site: DemoSite) -> dict[str, str]:
    """jobs_service's MQTT parameters and its read-only view of the packages bucket (jobs.catalogue, with
    the robots' read-only identity); the rest comes from config/control.yaml."""
    return {
        "mqtt_endpoint": "127.0.0.1", "mqtt_port": str(site.ports.mqtt), "mqtt_ca": str(site.pki / "ca.crt"),
        "mqtt_cert": str(site.pki / f"{JOBS_CLIENT}.crt"), "mqtt_key": str(site.pki / f"{JOBS_CLIENT}.key"),
        "packages_bucket": BUCKET, "s3_endpoint_url": site.s3_endpoint, "s3_region": S3_REGION,
        "s3_credentials_file": str(site.robot_credentials),
    }  # fmt: skip


def deploy_params(site: DemoSite, robot_id: str) -> dict[str, str]:
    """One robot's deploy_service parameters: its own install root, certificate and read-only S3 key."""
    return {
        "install_root": str(site.root / "robots" / robot_id),
        "s3_endpoint_url": site.s3_endpoint, "s3_bucket": BUCKET, "s3_region": S3_REGION,
        "s3_credentials_file": str(site.robot_credentials), "trusted_keys": f"[{site.trusted_key}]",
        "mqtt_endpoint": "127.0.0.1", "mqtt_port": str(site.ports.mqtt), "mqtt_ca": str(site.pki / "ca.crt"),
        "mqtt_cert": str(site.pki / "robots" / f"{robot_id}.crt"),
        "mqtt_key": str(site.pki / "robots" / f"{robot_id}.key"),
    }  # fmt: skip


def publish_samples(site: DemoSite, samples_dir: Path, stop: threading.Event) -> list[Path]:
    """Build, sign and push every sample package in SAMPLE_VERSIONS; return the job documents written.

    Waits (bounded) for the S3 endpoint first. Versions already in the bucket are pushed again: the
    archive is rebuilt byte-for-byte differently (timestamps), so its signature must match the new one.
    """
    import botocore.exceptions  # here, not at import: the CLI's start-up must not pay for boto

    from robot_platform.cli.deploy import build, push, sign
    from robot_platform.deploy.fetch import FetchError, S3Config, S3Fetcher

    s3 = S3Config(endpoint_url=site.s3_endpoint, region=S3_REGION, access_key_id=site.publisher.access_key,
                  secret_access_key=site.publisher.secret_key, connect_timeout_s=1.0, retries=0)  # fmt: skip
    deadline = time.monotonic() + S3_READY_TIMEOUT_S
    while True:
        try:
            S3Fetcher(s3).ensure_bucket(BUCKET)
            break
        except (FetchError, botocore.exceptions.BotoCoreError) as exc:  # refused while it starts
            if stop.is_set() or time.monotonic() > deadline:
                raise ConfigError("s3", site.s3_endpoint, f"SeaweedFS did not come up: {exc}") from exc
            time.sleep(0.5)
    site.documents_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="rp-demo-packages-") as tmp:
        for source in sorted(p for p in Path(samples_dir).iterdir() if (p / "manifest.yaml").is_file()):
            for version in SAMPLE_VERSIONS:
                work = Path(tmp) / f"{source.name}-{version}"
                shutil.copytree(source, work)
                manifest = yaml.safe_load((work / "manifest.yaml").read_text())
                manifest["version"] = version
                (work / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
                archive = Path(build(work, Path(tmp) / "dist")["archive"])
                sign(archive, site.signing_key)
                document = {"operation": "deploy", **push(archive, s3, BUCKET)}
                out = site.documents_dir / f"{document['package_name']}-{version}.json"
                out.write_text(json.dumps(document, indent=2) + "\n")
                written.append(out)
    log.info("sample packages pushed to s3://%s: %s", BUCKET, ", ".join(p.stem for p in written))
    return written
