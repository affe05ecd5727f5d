"""Typed errors of the jobs service (control side of fleet deployments).

Each error carries the data that explains it; ``code`` is the AWS IoT Jobs error code used when the
error is answered on a ``.../rejected`` topic or in an API reply, so the device and the console see the
same words.
"""

from __future__ import annotations

from robot_platform.exceptions import RobotPlatformError


class JobsError(RobotPlatformError):
    """Base class of jobs-service errors. ``reason`` is operator-facing; ``code`` is the IoT Jobs code."""

    code = "InternalError"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobSpecError(JobsError):
    """A job creation request is invalid (document, targets, rollout settings).

    Attributes:
        field: the request field at fault (dotted, e.g. ``rollout.max_per_minute``).
    """

    code = "InvalidRequest"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"job field {field!r}: {problem}")
        self.field = field
        self.problem = problem


class UnknownJobError(JobsError):
    """No such job, or no execution of it for that thing."""

    code = "ResourceNotFound"

    def __init__(self, job_id: str, thing: str = "") -> None:
        where = f" for thing {thing}" if thing else ""
        super().__init__(f"no job {job_id!r}{where}")
        self.job_id = job_id
        self.thing = thing


class DuplicateJobError(JobsError):
    """A job with this id exists already (job ids are never reused, as in AWS IoT Jobs)."""

    code = "ResourceAlreadyExists"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} exists already; choose another job id")
        self.job_id = job_id


class JobStoreError(JobsError):
    """The durable job store cannot be opened or written (disk full, corrupt file, wrong path)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"job store {path}: {problem}; check the store_path parameter and the disk")
        self.path = path
        self.problem = problem


class CatalogueError(JobsError):
    """The packages bucket cannot be listed (not configured, unreachable, access denied)."""

    code = "ServiceUnavailableException"
