"""The AWS IoT Jobs MQTT API: topics, execution statuses and payload shapes, for both sides.

Both the device side (:mod:`robot_platform.deploy.iot_jobs_client`) and the server side
(:mod:`robot_platform.jobs.service`) use this module, so the two cannot disagree on a topic or a field
name; it lives in the shared :mod:`robot_platform.mqtt` package so the robot imports no control code.
The payloads follow the AWS documentation ("Jobs device MQTT API") field for field, and the unit tests
parse them with the AWS IoT Device SDK's own models (``awsiot.iotjobs``) to prove it. Timestamps are
epoch seconds (numbers), as AWS sends them.

Device -> server (requests)            server -> device (replies / events)
  $aws/things/T/jobs/get                 .../get/accepted|rejected
  $aws/things/T/jobs/start-next          .../start-next/accepted|rejected
  $aws/things/T/jobs/J/get               .../J/get/accepted|rejected
  $aws/things/T/jobs/J/update            .../J/update/accepted|rejected
                                         $aws/things/T/jobs/notify-next, $aws/things/T/jobs/notify
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from robot_platform.mqtt.errors import DeviceRequestError

THING_RE = re.compile(r"^[A-Za-z0-9:_-]{1,128}$")  # AWS IoT thing names
JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # AWS IoT job ids
MAX_PAYLOAD_BYTES = 128 * 1024
MAX_STATUS_DETAILS = 10  # AWS: at most 10 statusDetails entries
MAX_STATUS_DETAIL_CHARS = 1024
PREFIX = "$aws/things/"
NEXT = "$next"  # DescribeJobExecution's alias of the thing's next pending execution


class ExecStatus(StrEnum):
    """Job execution statuses of AWS IoT Jobs, plus SCHEDULED: created by a staged rollout but not yet
    released to the device (AWS creates such executions only when the rollout reaches them, so a
    device never sees this status)."""

    SCHEDULED = "SCHEDULED"
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    REJECTED = "REJECTED"
    REMOVED = "REMOVED"
    CANCELED = "CANCELED"

    @property
    def terminal(self) -> bool:
        return self not in (ExecStatus.SCHEDULED, ExecStatus.QUEUED, ExecStatus.IN_PROGRESS)

    @property
    def failure(self) -> bool:
        """Counts against a rollout's abort threshold (as AWS's FAILED/REJECTED/TIMED_OUT criteria)."""
        return self in (ExecStatus.FAILED, ExecStatus.REJECTED, ExecStatus.TIMED_OUT)


# What a device may set in UpdateJobExecution (AWS: IN_PROGRESS, SUCCEEDED, FAILED, REJECTED).
DEVICE_SETTABLE = (ExecStatus.IN_PROGRESS, ExecStatus.SUCCEEDED, ExecStatus.FAILED, ExecStatus.REJECTED)


def things_prefix(thing: str) -> str:
    return f"{PREFIX}{thing}/jobs"


def topic(thing: str, *parts: str) -> str:
    """``$aws/things/<thing>/jobs/<parts...>``."""
    return "/".join((things_prefix(thing), *parts))


# Server subscriptions: every thing's requests (never its own replies).
SERVER_SUBSCRIPTIONS = (
    f"{PREFIX}+/jobs/get",
    f"{PREFIX}+/jobs/start-next",
    f"{PREFIX}+/jobs/+/get",
    f"{PREFIX}+/jobs/+/update",
)


@dataclass(frozen=True)
class Request:
    """A device request parsed from its topic: ``op`` is ``get``, ``start-next``, ``describe``, ``update``."""

    thing: str
    op: str
    job_id: str = ""


def parse_request_topic(name: str) -> Request:
    """Parse a request topic; raise :class:`DeviceRequestError` (``InvalidTopic``) for anything else."""
    if not name.startswith(PREFIX):
        raise DeviceRequestError("InvalidTopic", f"not a jobs topic: {name[:200]}")
    parts = name[len(PREFIX) :].split("/")
    if len(parts) < 3 or parts[1] != "jobs" or not THING_RE.match(parts[0]):
        raise DeviceRequestError("InvalidTopic", f"not a jobs topic: {name[:200]}")
    thing, rest = parts[0], parts[2:]
    if rest == ["get"]:
        return Request(thing, "get")
    if rest == ["start-next"]:
        return Request(thing, "start-next")
    if len(rest) == 2 and rest[1] in ("get", "update"):
        if not JOB_ID_RE.match(rest[0]) and not (rest[0] == NEXT and rest[1] == "get"):
            raise DeviceRequestError("InvalidTopic", f"invalid job id in topic: {rest[0][:80]!r}")
        return Request(thing, "describe" if rest[1] == "get" else "update", rest[0])
    raise DeviceRequestError("InvalidTopic", f"unsupported jobs topic: {name[:200]}")


def reply_topic(request: Request, accepted: bool) -> str:
    suffix = "accepted" if accepted else "rejected"
    if request.op in ("get", "start-next"):
        return topic(request.thing, request.op, suffix)
    return topic(request.thing, request.job_id, "get" if request.op == "describe" else "update", suffix)


def decode(payload: bytes) -> dict[str, Any]:
    """A request body: a JSON object (an empty payload counts as ``{}``, as AWS accepts)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise DeviceRequestError("InvalidRequest", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if not payload.strip():
        return {}
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DeviceRequestError("InvalidJson", f"payload is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise DeviceRequestError("InvalidJson", "payload must be a JSON object")
    return body


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def check_status_details(details: Any) -> dict[str, str]:
    """statusDetails: at most 10 string -> string entries (AWS rules), else ``InvalidRequest``."""
    if details is None:
        return {}
    if not isinstance(details, dict):
        raise DeviceRequestError("InvalidRequest", "statusDetails must be an object of strings")
    if len(details) > MAX_STATUS_DETAILS:
        raise DeviceRequestError("InvalidRequest", f"statusDetails has more than {MAX_STATUS_DETAILS} entries")
    out = {}
    for key, value in details.items():
        if not isinstance(value, str) or len(key) > 128 or len(value) > MAX_STATUS_DETAIL_CHARS:
            raise DeviceRequestError(
                "InvalidRequest", f"statusDetails[{key[:40]!r}] must be a string of at most 1024 characters"
            )
        out[key] = value
    return out


def rejected_body(code: str, message: str, client_token: str | None, now: float, state: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "timestamp": int(now)}
    if client_token is not None:
        body["clientToken"] = client_token
    if state:
        body["executionState"] = state
    return body


def truncate_detail(text: str, limit: int = MAX_STATUS_DETAIL_CHARS) -> str:
    """Status detail values are limited to 1024 characters; keep the start (where the cause is)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
