"""The `invoke` ROS service's plain-Python side: JSON event in, JSON result out, bad requests answered."""

from __future__ import annotations

import json
from typing import Any

from robot_platform.deploy.code_runner import InvocationResult
from robot_platform.deploy.errors import StoreError
from robot_platform.deploy.invoke_request import MAX_EVENT_CHARS, invoke_from_request

CALLS: list[tuple[str, Any, str]] = []


def fake_invoke(package: str, event: Any, invocation_id: str) -> InvocationResult:
    CALLS.append((package, event, invocation_id))
    if package == "missing":
        raise StoreError("missing has no active version")
    if package == "broken":
        return InvocationResult(invocation_id or "gen", False, None, "ZeroDivisionError: x", "trace", 0.2)
    return InvocationResult(invocation_id or "gen", True, {"echo": event, "when": object()}, "", "log", 0.1)


def test_event_and_result_travel_as_json() -> None:
    answer = invoke_from_request(fake_invoke, "fn", '{"n": [1, 2]}', "id-1")
    assert answer.ok and answer.invocation_id == "id-1" and answer.logs == "log" and answer.duration_s == 0.1
    result = json.loads(answer.result_json)
    assert result["echo"] == {"n": [1, 2]} and result["when"].startswith("<object")  # str() like NATS
    assert invoke_from_request(fake_invoke, "fn", "", "").ok and CALLS[-1] == ("fn", None, "")


def test_bad_requests_never_reach_the_function() -> None:
    CALLS.clear()
    for package, event, why in (("", "{}", "package_name: required"), ("fn", "{oops", "not valid JSON"),
                                ("fn", " " * (MAX_EVENT_CHARS + 1), "larger than")):  # fmt: skip
        answer = invoke_from_request(fake_invoke, package, event, "")
        assert not answer.ok and why in answer.error and answer.result_json == ""
    assert CALLS == []


def test_failures_are_answers_not_exceptions() -> None:
    missing = invoke_from_request(fake_invoke, "missing", "1", "")
    assert not missing.ok and "no active version" in missing.error
    broken = invoke_from_request(fake_invoke, "broken", "1", "")
    assert not broken.ok and broken.error.startswith("ZeroDivisionError") and broken.logs == "trace"
