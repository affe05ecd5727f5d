"""``robot-platform certs init|robot|server|client``: the site CA and MQTT/TLS certificates (cryptography).

Same directory layout, key type (EC P-256) and names as ``docker/gen-secrets.sh``, so both tools work on
one secrets directory: ``ca.crt``/``ca.key``, ``robots/<id>.crt|.key`` (CN = robot id = thing name, the
user name Mosquitto's ACL applies), ``mosquitto.crt|.key`` (server), ``jobs-service.crt|.key``. Use the
script to generate a whole container deployment; use this command to add one robot to an existing site
(``robot-platform certs robot r7 --dir docker/secrets``), on machines without openssl, and in tests.
Unlike the script, server certificates get IP subject alternative names too (``--ip 127.0.0.1``), which
TLS clients that verify the host (awscrt) need when they connect to an address rather than a name.

Private keys are written with mode 0600 and never overwritten; existing certificates are kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from robot_platform.exceptions import ConfigError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")  # as gen-secrets.sh's valid_name
# Mosquitto lets a certificate use the client ids <CN>, deploy-<CN> and health-<CN> (config/mosquitto/
# mosquitto.conf, plugin_opt_client_ids): a client certificate named deploy-r1 would own r1's deploy id.
RESERVED_CLIENT_PREFIXES = ("deploy-", "health-")
CA_DAYS = 3650
CERT_DAYS = 825
ORG = "robot_platform"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as stream:
        pkcs8 = serialization.PrivateFormat.PKCS8
        stream.write(key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def init_ca(directory: Path) -> dict[str, str]:
    """Create ``ca.key``/``ca.crt`` unless they exist (an existing CA is never replaced)."""
    directory = Path(directory)
    crt, key_path = directory / "ca.crt", directory / "ca.key"
    if crt.exists():
        return {"ca": str(crt), "created": "false"}
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("robot_platform site CA"))
        .issuer_name(_name("robot_platform site CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return {"ca": str(crt), "created": "true"}


def issue(
    directory: Path, base: str, cn: str, server: bool, dns: list[str] | None = None, ips: list[str] | None = None
) -> dict[str, str]:
    """Issue ``<directory>/<base>.crt|.key`` signed by the site CA (kept if it exists)."""
    if not NAME_RE.match(cn):
        raise ConfigError("name", cn, f"must match {NAME_RE.pattern}")
    if not server and cn.startswith(RESERVED_CLIENT_PREFIXES):
        prefixes = " or ".join(RESERVED_CLIENT_PREFIXES)
        raise ConfigError("name", cn, f"a client certificate's CN must not start with {prefixes} "
                          "(it would own another certificate's MQTT client ids)")  # fmt: skip
    directory = Path(directory)
    crt, key_path = directory / f"{base}.crt", directory / f"{base}.key"
    if crt.exists():
        return {"certificate": str(crt), "key": str(key_path), "cn": cn, "created": "false"}
    try:
        ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError("dir", str(directory), f"no usable site CA ({exc}); run `robot-platform certs init`") from exc
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError("dir", str(directory), "the CA key must be an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in (dns or [])]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in (ips or [])]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(key_path, key)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return {"certificate": str(crt), "key": str(key_path), "cn": cn, "created": "true"}


def issue_robot(directory: Path, robot_id: str) -> dict[str, str]:
    """A robot's client certificate (CN = robot id = thing name), under ``robots/``."""
    (Path(directory) / "robots").mkdir(parents=True, exist_ok=True)
    return issue(directory, f"robots/{robot_id}", robot_id, server=False, dns=[robot_id])


def _run(args: argparse.Namespace) -> int:
    try:
        if args.certs_cmd == "init":
            result: Any = init_ca(args.dir)
        elif args.certs_cmd == "robot":
            init_ca(args.dir)
            result = [issue_robot(args.dir, robot) for robot in args.robot_ids]
        elif args.certs_cmd == "server":
            init_ca(args.dir)
            result = issue(args.dir, args.name, args.name, server=True, dns=args.dns or ["localhost"], ips=args.ip)
        else:
            init_ca(args.dir)
            result = issue(args.dir, args.name, args.name, server=False)
    except (ConfigError, OSError, ValueError) as exc:
        sys.stderr.write(f"error: {getattr(exc, 'reason', exc)}\n")
        return 1
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


def add_subparsers(subparsers: Any) -> None:
    """Add ``certs init|robot|server|client`` to the main CLI."""
    certs = subparsers.add_parser("certs", help="site CA and MQTT/TLS certificates (same layout as gen-secrets.sh)")
    certs.add_argument("--dir", type=Path, default=Path("docker/secrets"), help="secrets directory")
    sub = certs.add_subparsers(dest="certs_cmd", required=True)
    sub.add_parser("init", help="create the site CA (kept if it exists)")
    p = sub.add_parser("robot", help="client certificates for robots (CN = robot id = thing name)")
    p.add_argument("robot_ids", nargs="+")
    p = sub.add_parser("server", help="a server certificate, e.g. mosquitto")
    p.add_argument("name", help="file base name and CN, e.g. mosquitto")
    p.add_argument("--dns", action="append", help="DNS name (repeatable; default localhost)")
    p.add_argument("--ip", action="append", default=[], help="IP address SAN (repeatable), e.g. 127.0.0.1")
    p = sub.add_parser("client", help="a client certificate for a service, e.g. jobs-service")
    p.add_argument("name", help="file base name and CN (the MQTT user name in the ACL)")
    certs.set_defaults(func=_run)
