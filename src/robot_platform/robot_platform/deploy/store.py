"""Versioned install directories with an atomic active-version switch and a crash journal.

Layout under ``root``::

    <root>/<package>/versions/<version>/   extracted package (never changed after install)
    <root>/<package>/versions/<version>.json  install record: sha256, kind, installed_at
    <root>/<package>/current -> versions/<version>   the active version (a relative symlink)
    <root>/<package>/state.json            activation history (for rollback), activated_at
    <root>/<package>/journal.json          present only while a transaction is in flight
    <root>/<package>/staging/<job>/        extraction in progress (deleted on commit or recovery)

Why a journal: power can fail between any two steps. Every transaction writes its intent first
(fsync'd, atomically renamed), and the only state change the robot relies on, the ``current``
symlink, is switched with ``rename(2)``, which is atomic. At start-up :meth:`PackageStore.recover`
reads each leftover journal and puts the package back on the version that was active before the
transaction (a deployment that did not reach its commit never passed its health check, so "old" is the
only version known to be good), removing the half-installed version. So after any crash a package is
on the old or the new version, never between, and never without a complete directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robot_platform.deploy.errors import StoreError
from robot_platform.deploy.manifest import NAME_RE, VERSION_RE

JOURNAL = "journal.json"
STATE = "state.json"
CURRENT = "current"
VERSIONS = "versions"
STAGING = "staging"
HISTORY_MAX = 20

# Journal phases, in order. ``recover`` undoes anything that did not reach COMMITTED.
PHASE_STAGING = "staging"  # extracting into staging/<job>
PHASE_INSTALLED = "installed"  # versions/<v> exists (created by this job if created_version)
PHASE_ACTIVATED = "activated"  # current -> versions/<v>; health check not passed yet


def _record_path(version_dir: Path) -> Path:
    """``versions/<version>.json`` (not ``with_suffix``: versions contain dots)."""
    return version_dir.with_name(version_dir.name + ".json")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that readers see the old or the new content, also after a power loss."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as stream:
        json.dump(data, stream, indent=1, sort_keys=True)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class Journal:
    """An in-flight transaction of one package (one per package: deployments are serialized)."""

    job_id: str
    package: str
    version: str
    previous_version: str
    phase: str = PHASE_STAGING
    created_version: bool = False
    started_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class InstalledInfo:
    """What ``list_packages`` reports for one package."""

    name: str
    kind: str
    active_version: str
    versions: tuple[str, ...]
    activated_at: float


@dataclass(frozen=True)
class Recovered:
    """A transaction found unfinished at start-up and what recovery did about it."""

    job_id: str
    package: str
    version: str
    previous_version: str
    active_version: str
    phase: str


class PackageStore:
    """Filesystem state of installed packages. Not thread-safe per package: the engine serializes."""

    def __init__(self, root: Path, keep_versions: int = 3) -> None:
        self.root = Path(root)
        self.keep_versions = max(2, keep_versions)
        self.root.mkdir(parents=True, exist_ok=True)

    # ---- paths --------------------------------------------------------------------------------------
    def package_dir(self, package: str) -> Path:
        if not NAME_RE.match(package):
            raise StoreError(f"invalid package name {package!r}")
        return self.root / package

    def version_dir(self, package: str, version: str) -> Path:
        if not VERSION_RE.match(version) or ".." in version:
            raise StoreError(f"invalid version {version!r}")
        return self.package_dir(package) / VERSIONS / version

    def staging_dir(self, package: str, job_id: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in job_id)[:96] or "job"
        return self.package_dir(package) / STAGING / safe

    # ---- queries ------------------------------------------------------------------------------------
    def active_version(self, package: str) -> str:
        link = self.package_dir(package) / CURRENT
        try:
            target = os.readlink(link)
        except OSError:
            return ""
        return Path(target).name

    def active_dir(self, package: str) -> Path | None:
        version = self.active_version(package)
        return self.version_dir(package, version) if version else None

    def install_record(self, package: str, version: str) -> dict[str, Any] | None:
        return _read_json(_record_path(self.version_dir(package, version)))

    def installed_versions(self, package: str) -> list[str]:
        """Complete versions (directory plus install record), oldest install first."""
        vdir = self.package_dir(package) / VERSIONS
        if not vdir.is_dir():
            return []
        found = []
        for path in vdir.iterdir():
            record = _read_json(_record_path(path)) if path.is_dir() else None
            if record is not None:
                found.append((record.get("installed_at", 0.0), path.name))
        return [v for _, v in sorted(found)]

    def packages(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME_RE.match(p.name))

    def info(self, package: str) -> InstalledInfo:
        active = self.active_version(package)
        record = self.install_record(package, active) if active else None
        state = _read_json(self.package_dir(package) / STATE) or {}
        versions = self.installed_versions(package)
        kind = (record or {}).get("kind", "")
        if not kind and versions:
            kind = (self.install_record(package, versions[-1]) or {}).get("kind", "")
        return InstalledInfo(
            name=package,
            kind=kind,
            active_version=active,
            versions=tuple(versions),
            activated_at=float(state.get("activated_at", 0.0)) if active else 0.0,
        )

    def previous_version(self, package: str) -> str:
        """The version active before the current one that is still installed (rollback target)."""
        state = _read_json(self.package_dir(package) / STATE) or {}
        active = self.active_version(package)
        installed = set(self.installed_versions(package))
        for version in reversed(state.get("history", [])):
            if version != active and version in installed:
                return version
        return ""

    # ---- journal ------------------------------------------------------------------------------------
    def begin(self, job_id: str, package: str, version: str) -> Journal:
        pdir = self.package_dir(package)
        pdir.mkdir(parents=True, exist_ok=True)
        if (pdir / JOURNAL).exists():
            raise StoreError(f"package {package} has an unfinished transaction; restart deploy_service")
        journal = Journal(
            job_id=job_id, package=package, version=version, previous_version=self.active_version(package)
        )
        self._write_journal(journal)
        return journal

    def _write_journal(self, journal: Journal) -> None:
        write_json_atomic(self.package_dir(journal.package) / JOURNAL, journal.__dict__)

    def advance(self, journal: Journal, phase: str) -> None:
        journal.phase = phase
        self._write_journal(journal)

    def commit(self, journal: Journal) -> None:
        """The transaction is done (new version healthy, or rollback finished): forget the journal."""
        pdir = self.package_dir(journal.package)
        shutil.rmtree(self.staging_dir(journal.package, journal.job_id), ignore_errors=True)
        with contextlib.suppress(OSError):
            (pdir / STAGING).rmdir()  # only when empty
        with contextlib.suppress(FileNotFoundError):
            (pdir / JOURNAL).unlink()
        _fsync_dir(pdir)
        self._forget_if_empty(journal.package)

    def _forget_if_empty(self, package: str) -> None:
        """Remove the directory of a package left with no version (its first deployment was rejected or
        failed), so a refused request leaves nothing behind. Only empty directories and the activation
        history go; install logs of a failed first install stay for diagnosis (and keep the directory)."""
        if self.active_version(package) or self.installed_versions(package):
            return
        pdir = self.package_dir(package)
        with contextlib.suppress(FileNotFoundError):
            (pdir / STATE).unlink()
        for sub in (VERSIONS, STAGING, "logs"):
            with contextlib.suppress(OSError):
                (pdir / sub).rmdir()  # only when empty
        with contextlib.suppress(OSError):
            pdir.rmdir()  # only when empty
            _fsync_dir(self.root)

    # ---- steps --------------------------------------------------------------------------------------
    def install(self, journal: Journal, staged: Path, record: dict[str, Any]) -> Path:
        """Move an extracted staging directory to ``versions/<version>`` and write its install record."""
        target = self.version_dir(journal.package, journal.version)
        if target.exists():
            raise StoreError(f"{journal.package} {journal.version} is already installed; versions are immutable")
        target.parent.mkdir(parents=True, exist_ok=True)
        journal.created_version = True
        self.advance(journal, PHASE_STAGING)  # record intent to create before creating
        os.rename(staged, target)
        write_json_atomic(_record_path(target), {**record, "installed_at": time.time()})
        self.advance(journal, PHASE_INSTALLED)
        return target

    def switch(self, package: str, version: str) -> None:
        """Point ``current`` at ``version`` atomically (new symlink, then rename over the old one)."""
        pdir = self.package_dir(package)
        if version and not self.version_dir(package, version).is_dir():
            raise StoreError(f"{package} {version} is not installed")
        link = pdir / CURRENT
        if not version:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            _fsync_dir(pdir)
            return
        tmp = pdir / f".{CURRENT}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(f"{VERSIONS}/{version}", tmp)
        os.replace(tmp, link)
        _fsync_dir(pdir)

    def activate(self, journal: Journal | None, package: str, version: str) -> None:
        """Switch to ``version`` and record it in the activation history."""
        if journal is not None:
            self.advance(journal, PHASE_ACTIVATED)
        self.switch(package, version)
        self._record_activation(package, version)

    def _record_activation(self, package: str, version: str) -> None:
        path = self.package_dir(package) / STATE
        state = _read_json(path) or {}
        history = list(state.get("history", []))
        if version:
            history = [v for v in history if v != version] + [version]
        write_json_atomic(path, {"history": history[-HISTORY_MAX:], "activated_at": time.time()})

    def remove_version(self, package: str, version: str) -> None:
        if version == self.active_version(package):
            raise StoreError(f"{package} {version} is active; activate another version first")
        vdir = self.version_dir(package, version)
        with contextlib.suppress(FileNotFoundError):
            _record_path(vdir).unlink()  # record first: a dir without record is ignored
        shutil.rmtree(vdir, ignore_errors=True)

    def undo(self, journal: Journal) -> None:
        """Put the package back on ``previous_version`` and drop what this job created, then commit."""
        active = self.active_version(journal.package)
        if active != journal.previous_version:
            self.advance(journal, PHASE_ACTIVATED)
            self.switch(journal.package, journal.previous_version)
            if journal.previous_version:
                self._record_activation(journal.package, journal.previous_version)
        if journal.created_version and journal.version != journal.previous_version:
            self.remove_version(journal.package, journal.version)
        self.commit(journal)

    def prune(self, package: str) -> list[str]:
        """Delete the oldest inactive versions beyond ``keep_versions``; returns what was removed."""
        active = self.active_version(package)
        versions = [v for v in self.installed_versions(package) if v != active]
        excess = len(versions) + (1 if active else 0) - self.keep_versions
        removed = versions[: max(0, excess)]
        for version in removed:
            self.remove_version(package, version)
        return removed

    # ---- start-up -----------------------------------------------------------------------------------
    def recover(self) -> list[Recovered]:
        """Finish or undo every transaction a crash left behind. Call once, before any deployment."""
        recovered = []
        for package in self.packages():
            pdir = self.package_dir(package)
            with contextlib.suppress(FileNotFoundError):
                (pdir / f".{CURRENT}.tmp").unlink()
            data = _read_json(pdir / JOURNAL)
            if data is None and (pdir / JOURNAL).exists():
                (pdir / JOURNAL).unlink()  # unreadable: `current` was never switched without a journal
            if data is not None:
                try:
                    journal: Journal | None = Journal(**data)
                except TypeError:
                    journal = None
                if journal is not None:
                    self.undo(journal)
                    recovered.append(
                        Recovered(
                            job_id=journal.job_id,
                            package=package,
                            version=journal.version,
                            previous_version=journal.previous_version,
                            active_version=self.active_version(package),
                            phase=journal.phase,
                        )
                    )
                else:
                    (pdir / JOURNAL).unlink()
            shutil.rmtree(pdir / STAGING, ignore_errors=True)
            # Version directories without an install record are half-moved leftovers.
            vdir = pdir / VERSIONS
            if vdir.is_dir():
                active = self.active_version(package)
                for path in vdir.iterdir():
                    if path.is_dir() and path.name != active and not _record_path(path).exists():
                        shutil.rmtree(path, ignore_errors=True)
        return recovered
