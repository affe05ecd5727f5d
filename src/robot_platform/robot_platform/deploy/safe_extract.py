"""Extract a package archive without letting it write outside the target directory.

Why our own loop rather than ``TarFile.extractall``: we want every decision explicit and testable, to
stop at the first bad member with a typed error, to count bytes as we write them (a decompression bomb
stops at the limit, not at the disk's end), and never to create devices, fifos, set-uid bits or owners
from the archive. Links are allowed only when they stay inside the target: symlinks are created with
their relative target after checking where they resolve; hardlinks become copies of a member extracted
earlier (no inode shared with anything outside).

The archive is fully validated (headers only) before the first byte is written, so a rejected archive
leaves an empty target; callers extract into a fresh staging directory and delete it on failure.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from robot_platform.deploy.errors import LimitExceededError, UnsafeArchiveError

COPY_CHUNK_BYTES = 1024 * 1024
MAX_NAME_BYTES = 1024


@dataclass(frozen=True)
class ExtractLimits:
    """Limits on what an archive may expand to."""

    max_total_bytes: int = 512 * 1024 * 1024
    max_files: int = 10_000


def _normalize(name: str) -> str:
    """The member's path relative to the target; raise if absolute, empty or climbing out with ``..``."""
    if not name or "\x00" in name or len(name.encode()) > MAX_NAME_BYTES:
        raise UnsafeArchiveError(name, "empty, too long or containing NUL")
    if name.startswith("/") or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(name, "absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(name, "'..' path component")
    if not parts:
        return ""
    return "/".join(parts)


def _check_symlink(rel: str, target: str) -> None:
    """Allow a symlink only if its target is relative and resolves inside the extraction root."""
    if not target or target.startswith("/") or "\x00" in target:
        raise UnsafeArchiveError(rel, f"symlink to absolute or empty target {target!r}")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    if resolved == ".." or resolved.startswith("../") or resolved.startswith("/"):
        raise UnsafeArchiveError(rel, f"symlink leaves the target directory ({target!r})")


def validate_members(members: list[tarfile.TarInfo], limits: ExtractLimits) -> list[tuple[str, tarfile.TarInfo]]:
    """Check every header; return ``(relative path, member)`` pairs in archive order."""
    if len(members) > limits.max_files:
        raise LimitExceededError("files", len(members), limits.max_files)
    total = 0
    seen_files: set[str] = set()
    symlinks: set[str] = set()
    out: list[tuple[str, tarfile.TarInfo]] = []
    for member in members:
        rel = _normalize(member.name)
        # A member below a symlink could be written through it, wherever the link points: refuse.
        parents = rel.split("/")[:-1]
        for i in range(1, len(parents) + 1):
            if "/".join(parents[:i]) in symlinks:
                raise UnsafeArchiveError(member.name, "path goes through a symlink member")
        if member.isreg():
            total += max(member.size, 0)
            if total > limits.max_total_bytes:
                raise LimitExceededError("extracted_bytes", total, limits.max_total_bytes)
            seen_files.add(rel)
        elif member.isdir():
            pass
        elif member.issym():
            _check_symlink(rel, member.linkname)
            symlinks.add(rel)
        elif member.islnk():
            link = _normalize(member.linkname)
            if link not in seen_files:
                raise UnsafeArchiveError(member.name, f"hardlink to {member.linkname!r}, not a file in this archive")
            size = next(m.size for r, m in reversed(out) if r == link and m.isreg())
            total += size
            if total > limits.max_total_bytes:
                raise LimitExceededError("extracted_bytes", total, limits.max_total_bytes)
            seen_files.add(rel)
        else:
            raise UnsafeArchiveError(member.name, "device, fifo or other special file")
        if not rel:
            continue
        out.append((rel, member))
    return out


def safe_extract(archive: Path, target: Path, limits: ExtractLimits | None = None) -> int:
    """Extract ``archive`` (tar, optionally gzip) into the empty directory ``target``.

    Returns the number of bytes written. Raises :class:`UnsafeArchiveError` or
    :class:`LimitExceededError` before writing anything if a header is bad; raises
    :class:`LimitExceededError` mid-way if the data is larger than the headers said.
    """
    limits = limits or ExtractLimits()
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = validate_members(tar.getmembers(), limits)
            written = 0
            for rel, member in members:
                dest = root / rel
                # Parents are real directories we created (symlinked parents were refused above).
                if member.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                    os.chmod(dest, 0o750)  # noqa: S103 - directories need x to be entered
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.is_symlink() or dest.exists():
                    if dest.is_dir() and not dest.is_symlink():
                        raise UnsafeArchiveError(member.name, "file member replaces a directory")
                    dest.unlink()
                if member.issym():
                    os.symlink(member.linkname, dest)
                elif member.islnk():
                    shutil.copyfile(root / _normalize(member.linkname), dest, follow_symlinks=False)
                    written += dest.stat().st_size
                else:
                    source = tar.extractfile(member)
                    if source is None:
                        raise UnsafeArchiveError(member.name, "unreadable member")
                    with source, open(dest, "xb") as sink:
                        remaining = member.size
                        while remaining > 0:
                            chunk = source.read(min(COPY_CHUNK_BYTES, remaining))
                            if not chunk:
                                raise UnsafeArchiveError(member.name, "truncated data")
                            sink.write(chunk)
                            remaining -= len(chunk)
                            written += len(chunk)
                            if written > limits.max_total_bytes:
                                raise LimitExceededError("extracted_bytes", written, limits.max_total_bytes)
                # Owner rwx, group r-x, others nothing; never set-uid/set-gid/sticky.
                if not member.issym():
                    mode = 0o750 if member.mode & stat.S_IXUSR else 0o640
                    os.chmod(dest, mode)
    except tarfile.TarError as exc:
        raise UnsafeArchiveError(str(archive.name), f"not a readable tar archive: {exc}") from exc
    except (EOFError, OSError, zlib.error) as exc:
        raise UnsafeArchiveError(str(archive.name), f"corrupt archive: {exc}") from exc
    return written
