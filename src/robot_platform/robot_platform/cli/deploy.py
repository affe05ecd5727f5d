"""``robot-platform package keygen|build|sign|push``: make, sign and publish deployment packages.

The functions do the work and return data (testable, no printing); :func:`add_subparsers` wires them
into the main CLI's argparse tree and prints results as JSON, so scripts (and the fleet jobs service)
can take the job document ``push`` prints and send it as a deploy request as is.

Run through the main CLI: ``robot-platform package build DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from robot_platform.deploy.errors import DeployError
from robot_platform.deploy.fetch import S3Config, S3Fetcher, load_credentials_file
from robot_platform.deploy.jobs import artifact_key
from robot_platform.deploy.manifest import parse_manifest_text
from robot_platform.deploy.package import (
    build_archive,
    generate_private_key_pem,
    inline_public_key,
    load_public_key,
    public_key_pem,
    read_manifest_from_archive,
    read_signature_file,
    sign_archive,
)


def keygen(private_path: Path) -> dict[str, str]:
    """Write a new Ed25519 private key (mode 0600) and ``<name>.pub.pem``; return the public forms."""
    private_path = Path(private_path)
    private_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # `keygen keys/site.pem` in a fresh tree
    pem = generate_private_key_pem()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as stream:
        stream.write(pem)
    public_path = private_path.with_name(private_path.name.removesuffix(".pem") + ".pub.pem")
    public_path.write_bytes(public_key_pem(pem))
    return {
        "private_key": str(private_path),
        "public_key": str(public_path),
        "trusted_key": inline_public_key(load_public_key(str(public_path))),
    }


def build(source: Path, out_dir: Path) -> dict[str, str]:
    archive, manifest = build_archive(Path(source), Path(out_dir))
    return {"archive": str(archive), "name": manifest.name, "version": manifest.version, "kind": manifest.kind}


def sign(archive: Path, key_path: Path) -> dict[str, str]:
    signed = sign_archive(Path(archive), Path(key_path).read_bytes())
    return {"archive": str(archive), **signed.__dict__}


def push(archive: Path, s3: S3Config, bucket: str, create_bucket: bool = False) -> dict[str, str]:
    """Upload a signed archive (and its .sig.json and the job document .job.json) under
    ``<name>/<name>-<version>.tar.gz``.

    Returns the job document: the fields of a ``deploy`` request.
    """
    archive = Path(archive)
    manifest = parse_manifest_text(read_manifest_from_archive(archive))
    try:
        signed = read_signature_file(archive)
    except (OSError, ValueError, KeyError) as exc:
        raise DeployError(f"{archive}.sig.json missing or unreadable: sign the archive first") from exc
    fetcher = S3Fetcher(s3)
    if create_bucket:
        fetcher.ensure_bucket(bucket)
    uri = f"s3://{bucket}/{artifact_key(manifest.name, manifest.version)}"
    document = {
        "package_name": manifest.name,
        "version": manifest.version,
        "kind": manifest.kind,
        "artifact_uri": uri,
        "sha256": signed.sha256,
        "signature": signed.signature,
    }
    fetcher.upload(archive, uri)
    fetcher.upload(Path(f"{archive}.sig.json"), uri + ".sig.json")
    # The job document next to the archive: what jobs.catalogue offers the console (jobs/catalogue.py).
    doc_path = Path(f"{archive}.job.json")
    doc_path.write_text(json.dumps(document, indent=2) + "\n")
    fetcher.upload(doc_path, uri + ".job.json")
    return document


def _s3_from_args(args: argparse.Namespace) -> S3Config:
    access, secret = load_credentials_file(Path(args.credentials_file)) if args.credentials_file else ("", "")
    return S3Config(endpoint_url=args.endpoint_url, region=args.region, access_key_id=access, secret_access_key=secret)


def _run(args: argparse.Namespace) -> int:
    try:
        if args.package_cmd == "keygen":
            result: dict[str, Any] = keygen(args.private_key)
        elif args.package_cmd == "build":
            result = build(args.source, args.out_dir)
        elif args.package_cmd == "sign":
            result = sign(args.archive, args.key)
        else:
            result = push(args.archive, _s3_from_args(args), args.bucket, args.create_bucket)
    except (DeployError, OSError) as exc:
        sys.stderr.write(f"error: {getattr(exc, 'reason', exc)}\n")
        return 1
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


def add_subparsers(subparsers: Any) -> None:
    """Add ``package keygen|build|sign|push`` to the main CLI (``subparsers`` from add_subparsers())."""
    package = subparsers.add_parser("package", help="build, sign and push deployment packages")
    sub = package.add_subparsers(dest="package_cmd", required=True)
    p = sub.add_parser("keygen", help="create an Ed25519 signing key pair")
    p.add_argument("private_key", type=Path, help="path of the new private key (PEM, mode 0600)")
    p = sub.add_parser("build", help="build <name>-<version>.tar.gz from a package directory")
    p.add_argument("source", type=Path, help="directory with manifest.yaml at its root")
    p.add_argument("-o", "--out-dir", type=Path, default=Path("dist"), help="output directory (default dist/)")
    p = sub.add_parser("sign", help="sign an archive's sha256, writing <archive>.sig.json")
    p.add_argument("archive", type=Path)
    p.add_argument("--key", type=Path, required=True, help="Ed25519 private key PEM")
    p = sub.add_parser("push", help="upload a signed archive to S3-compatible storage; prints the job document")
    p.add_argument("archive", type=Path)
    p.add_argument("--bucket", default="packages")
    p.add_argument(
        "--endpoint-url",
        default=os.environ.get("RP_S3_ENDPOINT_URL", ""),
        help="S3 endpoint (default $RP_S3_ENDPOINT_URL, else AWS)",
    )
    p.add_argument("--region", default="us-east-1")
    p.add_argument(
        "--credentials-file", default="", help="JSON with access_key_id/secret_access_key (default: AWS_* environment)"
    )
    p.add_argument("--create-bucket", action="store_true", help="create the bucket if missing")
    package.set_defaults(func=_run)
