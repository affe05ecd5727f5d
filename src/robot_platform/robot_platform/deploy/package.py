"""Build, sign and verify package archives.

An archive is a gzip'd tar of a package directory with ``manifest.yaml`` at its root, built
deterministically (sorted names, zero mtimes and owners) so the same sources give the same sha256.

Signing: Ed25519 over the 32 raw bytes of the archive's sha256 digest (what ``Deploy.srv`` calls
"signature over the archive's sha256 digest"), base64 encoded. Signing the digest keeps the signer
streaming-friendly (a 50 MB archive is hashed once) and lets the robot check the signature before it
trusts the sha256 it was given.

Keys on disk: private keys as PKCS#8 PEM (``robot-platform package keygen``), public keys as
SubjectPublicKeyInfo PEM. In config a trusted key is either a path to such a PEM file or an inline
``ed25519:<base64 of the 32 raw bytes>``. A key's id is the first 16 hex digits of sha256(raw key).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from robot_platform.deploy.errors import IntegrityError, ManifestError, SignatureError
from robot_platform.deploy.manifest import MANIFEST_NAME, Manifest, load_manifest

HASH_CHUNK_BYTES = 1024 * 1024
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
INLINE_KEY_PREFIX = "ed25519:"
SIGNATURE_SUFFIX = ".sig.json"
_BUILD_EXCLUDES = {"__pycache__", ".git", ".pytest_cache"}

# cryptography (about 7 MB of a robot agent's memory) is imported by the functions that use keys: a
# robot with no trusted key configured (every deployment refused) and the package tools that only hash
# never load it.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


@dataclass(frozen=True)
class SignedArchive:
    """What a deploy request needs to name an archive: its digest and signature."""

    sha256: str
    signature: str
    key_id: str


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _add_tree(tar: tarfile.TarFile, source: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if d not in _BUILD_EXCLUDES)
        base = Path(dirpath)
        for name in [*dirnames, *sorted(filenames)]:
            path = base / name
            rel = path.relative_to(source).as_posix()
            if path.is_symlink():
                raise ManifestError("", f"{rel} is a symlink; packages contain regular files only")
            info = tar.gettarinfo(str(path), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o755 if (info.isdir() or info.mode & 0o100) else 0o644
            if info.isdir():
                tar.addfile(info)
            elif info.isreg():
                with open(path, "rb") as stream:
                    tar.addfile(info, stream)
            else:
                raise ManifestError("", f"{rel} is not a regular file or directory")


def build_archive(source: Path, out_dir: Path) -> tuple[Path, Manifest]:
    """Validate ``source/manifest.yaml`` and write ``out_dir/<name>-<version>.tar.gz``."""
    source = Path(source)
    manifest = load_manifest(source)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{manifest.name}-{manifest.version}.tar.gz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_tree(tar, source)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as sink, gzip.GzipFile(fileobj=sink, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    os.replace(tmp, out)
    return out, manifest


def read_manifest_from_archive(archive: Path) -> bytes:
    """The bytes of ``manifest.yaml`` inside an archive (for tools; the robot reads it after extraction)."""
    with tarfile.open(archive, mode="r:*") as tar:
        for member in tar:
            if member.isreg() and member.name.lstrip("./") == MANIFEST_NAME:
                stream = tar.extractfile(member)
                if stream is not None:
                    return stream.read()
    raise ManifestError("", f"{MANIFEST_NAME} is missing at the archive root")


# ---- keys ---------------------------------------------------------------------------------------------


def generate_private_key_pem() -> bytes:
    """A new Ed25519 private key as unencrypted PKCS#8 PEM (store it with mode 0600)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(private_pem: bytes) -> bytes:
    """The SubjectPublicKeyInfo PEM matching a private key PEM."""
    from cryptography.hazmat.primitives import serialization

    key = load_private_key(private_pem)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"signing key is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError("signing key is not an Ed25519 key")
    return key


def key_id(key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(spec: str) -> Ed25519PublicKey:
    """A trusted key from config: ``ed25519:<base64 raw>`` or a path to a PEM public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if spec.startswith(INLINE_KEY_PREFIX):
        try:
            raw = base64.b64decode(spec[len(INLINE_KEY_PREFIX) :], validate=True)
            return Ed25519PublicKey.from_public_bytes(raw)
        except (binascii.Error, ValueError) as exc:
            raise SignatureError(f"trusted key {spec[:24]!r}... is not 32 base64 raw bytes") from exc
    try:
        data = Path(spec).read_bytes()
    except OSError as exc:
        raise SignatureError(f"trusted key file {spec!r} cannot be read: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise SignatureError(f"trusted key file {spec!r} is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"trusted key file {spec!r} is not an Ed25519 key")
    return key


def inline_public_key(key: Ed25519PublicKey) -> str:
    """``ed25519:<base64>`` form of a public key (for config files)."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return INLINE_KEY_PREFIX + base64.b64encode(raw).decode()


class TrustStore:
    """The set of public keys whose signatures the robot accepts."""

    def __init__(self, keys: list[Ed25519PublicKey]) -> None:
        self._keys = {key_id(k): k for k in keys}

    @classmethod
    def from_specs(cls, specs: list[str]) -> TrustStore:
        return cls([load_public_key(s) for s in specs if s.strip()])

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def verify_digest(self, sha256_hex: str, signature_b64: str) -> str:
        """Return the id of the trusted key that signed ``sha256_hex``; raise :class:`SignatureError`."""
        if not self._keys:
            raise SignatureError("no trusted keys are configured (parameter trusted_keys)")
        from cryptography.exceptions import InvalidSignature

        signature = decode_signature(signature_b64)
        digest = bytes.fromhex(sha256_hex)
        for kid, key in self._keys.items():
            try:
                key.verify(signature, digest)
                return kid
            except InvalidSignature:
                continue
        raise SignatureError("no trusted key verifies it (unknown signer or tampered digest)", self.key_ids)


def decode_signature(signature_b64: str) -> bytes:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except binascii.Error as exc:
        raise SignatureError("not valid base64") from exc
    if len(signature) != 64:
        raise SignatureError(f"an Ed25519 signature has 64 bytes, got {len(signature)}")
    return signature


def sign_archive(archive: Path, private_pem: bytes) -> SignedArchive:
    """Sign an archive's sha256 and write ``<archive>.sig.json`` next to it."""
    key = load_private_key(private_pem)
    digest = sha256_file(archive)
    signature = base64.b64encode(key.sign(bytes.fromhex(digest))).decode()
    signed = SignedArchive(sha256=digest, signature=signature, key_id=key_id(key.public_key()))
    Path(str(archive) + SIGNATURE_SUFFIX).write_text(json.dumps(signed.__dict__, indent=2) + "\n")
    return signed


def read_signature_file(archive: Path) -> SignedArchive:
    data = json.loads(Path(str(archive) + SIGNATURE_SUFFIX).read_text())
    return SignedArchive(sha256=data["sha256"], signature=data["signature"], key_id=data.get("key_id", ""))


def verify_archive(archive: Path, expected_sha256: str, signature_b64: str, trust: TrustStore) -> str:
    """Check the signature over the expected digest, then the file's digest. Returns the signer key id.

    The signature is checked first: a request whose digest was not signed by a trusted key is refused
    without reading the archive at all.
    """
    expected = expected_sha256.lower()
    if not SHA256_RE.match(expected):
        raise IntegrityError(expected_sha256, "(not a 64-digit hex sha256)")
    signer = trust.verify_digest(expected, signature_b64)
    actual = sha256_file(archive)
    if actual != expected:
        raise IntegrityError(expected, actual)
    return signer
