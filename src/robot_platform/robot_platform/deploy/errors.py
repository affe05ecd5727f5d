"""Typed errors of deploy_service.

Every error carries the data that explains it and a ``reason`` string that goes unchanged into
``DeploymentStatus.reason`` (so an operator sees the same words in the console, the logs and the job).
"""

from __future__ import annotations

from robot_platform.exceptions import RobotPlatformError


class DeployError(RobotPlatformError):
    """Base class of deploy_service errors. ``reason`` is the operator-facing text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ManifestError(DeployError):
    """manifest.yaml is missing, unreadable, or a field is missing or invalid.

    Attributes:
        field: the manifest key at fault (dotted, e.g. ``limits.memory_mb``), or ``""`` for the whole file.
    """

    def __init__(self, field: str, problem: str) -> None:
        where = f"manifest field {field!r}" if field else "manifest"
        super().__init__(f"{where}: {problem}")
        self.field = field
        self.problem = problem


class RequestError(DeployError):
    """A deploy/rollback request is malformed (rejected before anything changes).

    Attributes:
        field: the request field at fault.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"request field {field!r}: {problem}")
        self.field = field
        self.problem = problem


class IntegrityError(DeployError):
    """The archive's sha256 is not the one the request named (corrupted or tampered archive)."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"sha256 mismatch: expected {expected}, archive has {actual}; re-push the package")
        self.expected = expected
        self.actual = actual


class SignatureError(DeployError):
    """The signature is malformed, or no trusted key verifies it.

    Attributes:
        key_ids: ids of the trusted keys that were tried.
    """

    def __init__(self, problem: str, key_ids: tuple[str, ...] = ()) -> None:
        super().__init__(f"signature rejected: {problem}")
        self.problem = problem
        self.key_ids = key_ids


class UnsafeArchiveError(DeployError):
    """An archive member would escape the target or is of a forbidden kind (device, fifo, link out).

    Attributes:
        member: the member name as stored in the archive.
    """

    def __init__(self, member: str, problem: str) -> None:
        super().__init__(f"unsafe archive member {member!r}: {problem}")
        self.member = member
        self.problem = problem


class LimitExceededError(DeployError):
    """A size or count limit was exceeded (archive size, extracted bytes, file count).

    Attributes:
        what: which limit (``archive_bytes``, ``extracted_bytes``, ``files``).
        value: the value seen (may be a lower bound: checking stops at the first excess).
        limit: the configured limit.
    """

    def __init__(self, what: str, value: int, limit: int) -> None:
        super().__init__(f"{what} {value} exceeds the limit {limit}; raise the limit in config or shrink it")
        self.what = what
        self.value = value
        self.limit = limit


class FetchError(DeployError):
    """The archive could not be downloaded (storage unreachable, missing object, retries exhausted).

    Attributes:
        uri: the artifact uri (never contains credentials).
    """

    def __init__(self, uri: str, problem: str) -> None:
        super().__init__(f"download of {uri} failed: {problem}")
        self.uri = uri
        self.problem = problem


class StoreError(DeployError):
    """The versioned install store cannot do what was asked (unknown version, immutable version...)."""


class RunError(DeployError):
    """An install step, an app start, or a function invocation failed.

    Attributes:
        step: ``install``, ``start``, ``health_check``, ``invoke``...
        returncode: the process's exit status, if it ran.
    """

    def __init__(self, step: str, problem: str, returncode: int | None = None) -> None:
        super().__init__(f"{step} failed: {problem}")
        self.step = step
        self.problem = problem
        self.returncode = returncode


class StepTimeoutError(RunError):
    """A step (install, health check, function) did not finish within its timeout."""

    def __init__(self, step: str, timeout_s: float) -> None:
        super().__init__(step, f"did not finish within {timeout_s:g} s")
        self.timeout_s = timeout_s


class CanceledError(DeployError):
    """deploy_service is shutting down: the job in flight stops at its next step and rolls back."""

    def __init__(self) -> None:
        super().__init__("canceled: deploy_service is shutting down")
