import base64
import tarfile

import pytest
from deploy_testutil import build_signed, new_key, write_function_source

from robot_platform.deploy.errors import IntegrityError, ManifestError, SignatureError
from robot_platform.deploy.package import (
    TrustStore,
    build_archive,
    inline_public_key,
    load_public_key,
    read_signature_file,
    sha256_file,
    verify_archive,
)


def test_build_is_deterministic_and_contains_manifest(tmp_path):
    src = write_function_source(tmp_path)
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.pyc").write_bytes(b"junk")
    a1, manifest = build_archive(src, tmp_path / "o1")
    a2, _ = build_archive(src, tmp_path / "o2")
    assert a1.name == "hello_fn-1.0.0.tar.gz" and manifest.version == "1.0.0"
    assert sha256_file(a1) == sha256_file(a2)
    with tarfile.open(a1) as tar:
        names = tar.getnames()
    assert "manifest.yaml" in names and "handler.py" in names
    assert not any("__pycache__" in n for n in names)


def test_build_refuses_invalid_manifest_and_symlinks(tmp_path):
    src = write_function_source(tmp_path)
    (src / "link").symlink_to("/etc/passwd")
    with pytest.raises(ManifestError, match="symlink"):
        build_archive(src, tmp_path / "out")
    (src / "link").unlink()
    (src / "manifest.yaml").write_text("name: x\n")
    with pytest.raises(ManifestError):
        build_archive(src, tmp_path / "out")


def test_signed_archive_verifies_with_trusted_key(tmp_path):
    pem, pub = new_key(tmp_path)
    archive, _, signed = build_signed(write_function_source(tmp_path), tmp_path / "out", pem)
    assert read_signature_file(archive) == signed
    trust = TrustStore.from_specs([str(pub)])
    assert verify_archive(archive, signed.sha256, signed.signature, trust) == signed.key_id
    # the inline config form names the same key
    inline = inline_public_key(load_public_key(str(pub)))
    assert TrustStore.from_specs([inline]).key_ids == trust.key_ids


def test_tampered_archive_is_rejected(tmp_path):
    pem, pub = new_key(tmp_path)
    archive, _, signed = build_signed(write_function_source(tmp_path), tmp_path / "out", pem)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as err:
        verify_archive(archive, signed.sha256, signed.signature, TrustStore.from_specs([str(pub)]))
    assert err.value.expected == signed.sha256 and err.value.actual != signed.sha256


def test_recomputed_digest_without_the_key_is_rejected(tmp_path):
    """An attacker who changes the archive and its sha256 cannot produce a valid signature."""
    pem, pub = new_key(tmp_path)
    archive, _, signed = build_signed(write_function_source(tmp_path), tmp_path / "out", pem)
    archive.write_bytes(archive.read_bytes() + b"\0")
    with pytest.raises(SignatureError, match="no trusted key"):
        verify_archive(archive, sha256_file(archive), signed.signature, TrustStore.from_specs([str(pub)]))


def test_untrusted_key_is_rejected(tmp_path):
    pem, _ = new_key(tmp_path)
    _, other_pub = new_key(tmp_path)
    archive, _, signed = build_signed(write_function_source(tmp_path), tmp_path / "out", pem)
    with pytest.raises(SignatureError) as err:
        verify_archive(archive, signed.sha256, signed.signature, TrustStore.from_specs([str(other_pub)]))
    assert err.value.key_ids and signed.key_id not in err.value.key_ids
    with pytest.raises(SignatureError, match="no trusted keys"):
        verify_archive(archive, signed.sha256, signed.signature, TrustStore([]))


@pytest.mark.parametrize("signature", ["%%%not base64", base64.b64encode(b"short").decode()])
def test_malformed_signatures(tmp_path, signature):
    _, pub = new_key(tmp_path)
    with pytest.raises(SignatureError):
        TrustStore.from_specs([str(pub)]).verify_digest("0" * 64, signature)


def test_bad_trusted_key_specs(tmp_path):
    with pytest.raises(SignatureError, match="cannot be read"):
        load_public_key(str(tmp_path / "missing.pem"))
    with pytest.raises(SignatureError, match="32 base64"):
        load_public_key("ed25519:abcd")
