import io
import tarfile

import pytest

from robot_platform.deploy.errors import LimitExceededError, UnsafeArchiveError
from robot_platform.deploy.safe_extract import ExtractLimits, safe_extract


def make_tar(path, entries, gz=True):
    """entries: (name, kind, data_or_linkname)."""
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                info.mode = 0o4755  # set-uid must not survive
                tar.addfile(info, io.BytesIO(payload))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "sym":
                info.type = tarfile.SYMTYPE
                info.linkname = payload
                tar.addfile(info)
            elif kind == "hard":
                info.type = tarfile.LNKTYPE
                info.linkname = payload
                tar.addfile(info)
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = 1, 3
                tar.addfile(info)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
    return path


def test_good_archive_extracts_with_safe_modes(tmp_path):
    archive = make_tar(
        tmp_path / "ok.tar.gz",
        [
            ("./pkg", "dir", None),
            ("pkg/a.txt", "file", b"hello"),
            ("pkg/link", "sym", "a.txt"),
            ("pkg/hard", "hard", "pkg/a.txt"),
            ("top.txt", "file", b"x"),
        ],
    )
    target = tmp_path / "out"
    written = safe_extract(archive, target)
    assert (target / "pkg/a.txt").read_bytes() == b"hello"
    assert (target / "pkg/link").is_symlink() and (target / "pkg/link").read_bytes() == b"hello"
    assert (target / "pkg/hard").read_bytes() == b"hello"
    assert (target / "pkg/a.txt").stat().st_mode & 0o7777 == 0o750
    assert written == 11


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ([("../evil.txt", "file", b"x")], "'..'"),
        ([("pkg/../../evil.txt", "file", b"x")], "'..'"),
        ([("/etc/evil", "file", b"x")], "absolute"),
        ([("link", "sym", "/etc/passwd")], "absolute"),
        ([("dir/link", "sym", "../../outside")], "leaves"),
        ([("link", "sym", ".."), ("link/evil", "file", b"x")], "leaves"),
        ([("ok", "sym", "."), ("ok/../x", "file", b"x")], "'..'"),
        ([("d", "dir", None), ("d/l", "sym", "."), ("d/l/f", "file", b"x")], "through a symlink"),
        ([("hard", "hard", "/etc/passwd")], "absolute"),
        ([("hard", "hard", "../outside")], "'..'"),
        ([("hard", "hard", "not_in_archive")], "not a file in this archive"),
        ([("dev", "chr", None)], "device"),
        ([("fifo", "fifo", None)], "device"),
    ],
)
def test_unsafe_members_are_rejected_before_writing(tmp_path, entries, problem):
    archive = make_tar(tmp_path / "bad.tar.gz", [("first.txt", "file", b"written?"), *entries])
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=problem):
        safe_extract(archive, target)
    assert list(target.iterdir()) == []  # validated before the first byte was written
    assert not (tmp_path / "evil.txt").exists()


def test_oversize_and_too_many_files(tmp_path):
    archive = make_tar(tmp_path / "big.tar.gz", [(f"f{i}", "file", b"0" * 1000) for i in range(5)])
    with pytest.raises(LimitExceededError) as err:
        safe_extract(archive, tmp_path / "a", ExtractLimits(max_total_bytes=4500, max_files=100))
    assert err.value.what == "extracted_bytes" and err.value.limit == 4500
    with pytest.raises(LimitExceededError) as err:
        safe_extract(archive, tmp_path / "b", ExtractLimits(max_total_bytes=10**6, max_files=4))
    assert err.value.what == "files"


def test_hardlinks_count_towards_size(tmp_path):
    archive = make_tar(
        tmp_path / "h.tar.gz", [("a", "file", b"0" * 1000)] + [(f"h{i}", "hard", "a") for i in range(10)]
    )
    with pytest.raises(LimitExceededError):
        safe_extract(archive, tmp_path / "out", ExtractLimits(max_total_bytes=5000))


def test_garbage_is_a_typed_error(tmp_path):
    bad = tmp_path / "junk.tar.gz"
    bad.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    with pytest.raises(UnsafeArchiveError):
        safe_extract(bad, tmp_path / "out")
