"""Deployment job data: requests, statuses, states and steps (mirroring DeploymentStatus.msg), validation.

Plain data, no ROS: the node converts :class:`Status` to ``DeploymentStatus`` and the NATS dict.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from robot_platform.deploy.errors import FetchError, RequestError
from robot_platform.deploy.fetch import parse_s3_uri
from robot_platform.deploy.manifest import KINDS, NAME_RE, VERSION_RE
from robot_platform.deploy.package import SHA256_RE, decode_signature
from robot_platform.deploy.store import write_json_atomic

JOB_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class State(IntEnum):
    """``DeploymentStatus.STATE_*`` (AWS IoT Jobs execution states)."""

    QUEUED = 0
    IN_PROGRESS = 1
    SUCCEEDED = 2
    FAILED = 3
    REJECTED = 4
    TIMED_OUT = 5
    CANCELED = 6

    @property
    def final(self) -> bool:
        return self not in (State.QUEUED, State.IN_PROGRESS)


class Step:
    """``DeploymentStatus.STEP_*`` and the job progress reached when each step starts."""

    DOWNLOAD = "download"
    VERIFY = "verify"
    EXTRACT = "extract"
    INSTALL = "install"
    ACTIVATE = "activate"
    START = "start"
    HEALTH_CHECK = "health_check"
    ROLLBACK = "rollback"
    PROGRESS = {
        DOWNLOAD: 0.0,
        VERIFY: 0.4,
        EXTRACT: 0.5,
        INSTALL: 0.6,
        ACTIVATE: 0.7,
        START: 0.75,
        HEALTH_CHECK: 0.8,
        ROLLBACK: 0.9,
    }


@dataclass(frozen=True)
class DeployRequest:
    """The fields of ``srv/Deploy`` (validated by :func:`validate_request`)."""

    job_id: str
    package_name: str
    version: str
    artifact_uri: str
    sha256: str
    signature: str
    kind: str

    def identity(self) -> tuple[str, ...]:
        """What must match for a repeated job id to count as the same job."""
        return (self.package_name, self.version, self.artifact_uri, self.sha256, self.signature, self.kind)


@dataclass(frozen=True)
class RollbackRequest:
    """A rollback asked for by a job (IoT job document ``operation: rollback``): the fields of ``srv/Rollback``.

    ``to_version`` empty means the version that was active before the current one (as the service).
    """

    job_id: str
    package_name: str
    to_version: str = ""

    def as_record(self) -> DeployRequest:
        """How the job log stores it: a request without sha256/signature marks a rollback, not a deploy."""
        return DeployRequest(self.job_id, self.package_name, self.to_version, "", "", "", "")


def validate_rollback(request: RollbackRequest) -> RollbackRequest:
    """Check a rollback job's fields (shape and syntax; the engine checks the versions exist)."""
    if not JOB_ID_RE.match(request.job_id):
        raise RequestError("job_id", f"must match {JOB_ID_RE.pattern}")
    if not NAME_RE.match(request.package_name):
        raise RequestError("package_name", f"must match {NAME_RE.pattern}")
    if request.to_version and (not VERSION_RE.match(request.to_version) or ".." in request.to_version):
        raise RequestError("to_version", f"must be empty (previous version) or match {VERSION_RE.pattern}")
    return request


@dataclass
class Status:
    """One ``DeploymentStatus``; ``stamp`` is wall-clock seconds."""

    robot_id: str
    job_id: str
    package_name: str
    version: str
    previous_version: str = ""
    state: State = State.QUEUED
    step: str = ""
    progress: float = 0.0
    reason: str = ""
    stamp: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = int(self.state)
        data["state_name"] = self.state.name
        return data


@dataclass(frozen=True)
class Decision:
    """The immediate answer to a deploy request (``srv/Deploy`` response)."""

    accepted: bool
    job_id: str
    state: State
    message: str


def validate_request(request: DeployRequest, default_bucket: str) -> DeployRequest:
    """Return the request with defaults filled in (job id, artifact uri); raise :class:`RequestError`."""
    job_id = request.job_id or uuid.uuid4().hex
    if not JOB_ID_RE.match(job_id):
        raise RequestError("job_id", f"must match {JOB_ID_RE.pattern}")
    if not NAME_RE.match(request.package_name):
        raise RequestError("package_name", f"must match {NAME_RE.pattern}")
    if not VERSION_RE.match(request.version) or ".." in request.version:
        raise RequestError("version", f"must match {VERSION_RE.pattern} without '..'")
    if request.kind not in KINDS:
        raise RequestError("kind", f"must be one of {list(KINDS)}")
    sha = request.sha256.lower()
    if not SHA256_RE.match(sha):
        raise RequestError("sha256", "must be 64 hex digits")
    if not request.signature:
        raise RequestError("signature", "is required (base64 Ed25519 signature over the sha256)")
    decode_signature(request.signature)  # SignatureError: malformed
    uri = request.artifact_uri
    if not uri:
        if not default_bucket:
            raise RequestError("artifact_uri", "is empty and no default bucket (s3_bucket) is configured")
        uri = f"s3://{default_bucket}/{artifact_key(request.package_name, request.version)}"
    try:
        parse_s3_uri(uri)
    except FetchError as exc:
        raise RequestError("artifact_uri", exc.problem) from exc
    return DeployRequest(
        job_id=job_id,
        package_name=request.package_name,
        version=request.version,
        artifact_uri=uri,
        sha256=sha,
        signature=request.signature,
        kind=request.kind,
    )


def artifact_key(package: str, version: str) -> str:
    """Object key layout used by ``robot-platform package push``."""
    return f"{package}/{package}-{version}.tar.gz"


class JobLog:
    """Final statuses of recent jobs on disk, so a repeated job id stays idempotent across restarts."""

    def __init__(self, directory: Path, keep: int = 500) -> None:
        self.directory = Path(directory)
        self.keep = keep
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.json"

    def save(self, request: DeployRequest | None, status: Status) -> None:
        body = {"request": asdict(request) if request else None, "status": status.to_dict()}
        write_json_atomic(self._path(status.job_id), body)
        files = sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in files[: max(0, len(files) - self.keep)]:
            old.unlink(missing_ok=True)

    def load(self, job_id: str) -> tuple[DeployRequest | None, Status] | None:
        if not JOB_ID_RE.match(job_id):
            return None
        try:
            body = json.loads(self._path(job_id).read_text())
            raw = body["status"]
            raw.pop("state_name", None)
            status = Status(**{**raw, "state": State(raw["state"])})
            request = DeployRequest(**body["request"]) if body.get("request") else None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return request, status
