"""The ``invoke`` ROS service's request and response in plain Python (srv/InvokeFunction).

ROS messages carry no free-form values, so the event and the result travel as JSON text. The rules are
the NATS invocation's: any JSON value is an event; the handler's return value is rendered as JSON
(values JSON cannot represent become their ``str``, as msgpack's ``default=str`` does on NATS). A bad
request never reaches the function: the answer says what was wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robot_platform.deploy.code_runner import InvocationResult
from robot_platform.deploy.errors import DeployError

MAX_EVENT_CHARS = 1024 * 1024  # the NATS path's practical limit (max_payload) for the same event


@dataclass(frozen=True)
class InvokeAnswer:
    ok: bool
    result_json: str
    error: str
    logs: str
    invocation_id: str
    duration_s: float


def invoke_from_request(
    invoke: Callable[[str, Any, str], InvocationResult], package: str, event_json: str, invocation_id: str
) -> InvokeAnswer:
    """Parse the event, run ``invoke(package, event, invocation_id)``, render the answer; never raises."""
    if not package:
        return InvokeAnswer(False, "", "package_name: required", "", invocation_id, 0.0)
    if len(event_json) > MAX_EVENT_CHARS:
        return InvokeAnswer(False, "", f"event_json: larger than {MAX_EVENT_CHARS} characters", "", invocation_id, 0.0)
    try:
        event = json.loads(event_json) if event_json.strip() else None
    except ValueError as exc:
        return InvokeAnswer(False, "", f"event_json: not valid JSON ({exc})", "", invocation_id, 0.0)
    try:
        result = invoke(package, event, invocation_id)
    except DeployError as exc:
        return InvokeAnswer(False, "", exc.reason, "", invocation_id, 0.0)
    rendered = json.dumps(result.result, default=str) if result.ok else ""
    return InvokeAnswer(result.ok, rendered, result.error, result.logs, result.invocation_id, result.duration_s)
