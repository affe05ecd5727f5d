"""Rollback as a job operation: document validation, the IoT Jobs agent's flow, the engine's job path.

The engine tests use a real store, real signatures and real app processes (LocalFetcher stands in for S3
only); the agent tests use a recording engine double (pure protocol logic).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from deploy_testutil import write_app_source
from test_deploy_engine import env, request  # noqa: F401 - the engine fixture, shared

from robot_platform.deploy.errors import RequestError
from robot_platform.deploy.iot_jobs_client import IotJobsAgent, document_to_rollback, parse_document
from robot_platform.deploy.jobs import Decision, DeployRequest, RollbackRequest, State, Status
from robot_platform.jobs.model import parse_job_spec

PREFIX = "$aws/things/r1/jobs/"
ROLLBACK = {"operation": "rollback", "package_name": "demo_app", "to_version": ""}


# ---- documents -------------------------------------------------------------------------------------------


def test_rollback_document_validation() -> None:
    assert parse_document("j1", ROLLBACK) == RollbackRequest("j1", "demo_app", "")
    assert parse_document("j1", {"operation": "rollback", "package_name": "demo_app"}).to_version == ""
    assert document_to_rollback("j1", {**ROLLBACK, "to_version": "1.0.0"}).to_version == "1.0.0"
    deploy = {"operation": "deploy", "package_name": "p", "version": "1", "kind": "app", "sha256": "a"}
    assert isinstance(parse_document("j2", {**deploy, "signature": "s"}), DeployRequest)
    for doc, field in (
        ("rollback", "jobDocument"),
        ({"package_name": "demo_app"}, "operation"),  # no operation: neither deploy nor rollback
        ({**ROLLBACK, "operation": "reboot"}, "operation"),
        ({**ROLLBACK, "package_name": ""}, "package_name"),
        ({"operation": "rollback"}, "package_name"),
        ({**ROLLBACK, "package_name": 3}, "package_name"),
        ({**ROLLBACK, "to_version": None}, "to_version"),
        ({**ROLLBACK, "version": "1.0.0"}, "version"),  # a deploy field in a rollback: refused, not ignored
    ):
        with pytest.raises(RequestError) as err:
            parse_document("j1", doc)
        assert err.value.field == field, doc


def test_jobs_service_accepts_a_rollback_document() -> None:
    spec = parse_job_spec({"job_id": "rb-1", "document": ROLLBACK, "targets": ["r1", "r2"]})
    assert spec.document == ROLLBACK and spec.targets == ("r1", "r2")


# ---- the agent (protocol logic) --------------------------------------------------------------------------


class Recorder:
    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        self.rollbacks: list[RollbackRequest] = []

    def submit(self, request: DeployRequest) -> Decision:
        raise AssertionError("a rollback document must not reach the deploy path")

    def rollback(self, request: RollbackRequest) -> Decision:
        self.rollbacks.append(request)
        return self.decision


def offer(agent: IotJobsAgent, job_id: str, document: Any) -> None:
    body = {"execution": {"jobId": job_id, "executionNumber": 1, "status": "IN_PROGRESS", "jobDocument": document}}
    agent.on_message(PREFIX + "start-next/accepted", json.dumps(body).encode())


def updates(sent: list[tuple[str, dict[str, Any]]], job_id: str) -> list[dict[str, Any]]:
    return [b for t, b in sent if t == f"{job_id}/update"]


def test_agent_runs_rollback_jobs_and_reports_like_deploys() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    engine = Recorder(Decision(True, "rb", State.IN_PROGRESS, "accepted"))
    agent = IotJobsAgent(
        "r1", engine.submit, lambda t, b: sent.append((t.removeprefix(PREFIX), json.loads(b))), engine.rollback
    )
    offer(agent, "rb", ROLLBACK)
    assert engine.rollbacks == [RollbackRequest("rb:1", "demo_app", "")]  # one engine job per execution
    assert updates(sent, "rb")[-1]["status"] == "IN_PROGRESS"
    for step in ("activate", "start", "health_check"):
        agent.on_status(Status("r1", "rb:1", "demo_app", "1.0.0", "2.0.0", State.IN_PROGRESS, step))
    agent.on_status(Status("r1", "rb:1", "demo_app", "1.0.0", "2.0.0", State.SUCCEEDED, progress=1.0))
    got = updates(sent, "rb")
    assert [u["statusDetails"]["step"] for u in got] == ["in_progress", "activate", "start", "health_check", "done"]
    assert got[-1]["status"] == "SUCCEEDED"
    assert got[-1]["statusDetails"]["version"] == "1.0.0" and got[-1]["statusDetails"]["previous_version"] == "2.0.0"

    engine.decision = Decision(False, "rb2", State.REJECTED, "demo_app has no earlier version to roll back to")
    offer(agent, "rb2", ROLLBACK)
    final = updates(sent, "rb2")[-1]
    assert final["status"] == "REJECTED" and "no earlier version" in final["statusDetails"]["reason"]

    offer(agent, "rb3", {**ROLLBACK, "to_version": "../x"})  # well-formed shape; the engine validates values
    assert engine.rollbacks[-1].to_version == "../x"
    offer(agent, "rb4", {**ROLLBACK, "package_name": ""})
    final = updates(sent, "rb4")[-1]
    assert final["status"] == "REJECTED" and "package_name" in final["statusDetails"]["reason"]


def test_agent_without_rollback_support_rejects_rollback_jobs() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    agent = IotJobsAgent(
        "r1", Recorder(Decision(True, "", State.QUEUED, "")).submit, lambda t, b: sent.append((t, json.loads(b)))
    )
    offer(agent, "rb", ROLLBACK)
    final = updates([(t.removeprefix(PREFIX), b) for t, b in sent], "rb")[-1]
    assert final["status"] == "REJECTED" and "not supported" in final["statusDetails"]["reason"]


# ---- the engine's job path (real store, real apps) ---------------------------------------------------------


def test_engine_rollback_job_path(env: Any) -> None:  # noqa: F811 - pytest fixture from test_deploy_engine
    engine, publish, statuses, tmp, _ = env
    # Nothing installed: rejected at once with the reason, stored for a repeated job id.
    decision = engine.submit_rollback(RollbackRequest("rb-none", "demo_app"))
    assert not decision.accepted and decision.state == State.REJECTED
    assert "not installed" in decision.message
    assert statuses.final("rb-none").state == State.REJECTED
    bad = engine.submit_rollback(RollbackRequest("rb-bad", "demo_app", "../1"))
    assert not bad.accepted and "to_version" in bad.message

    engine.submit(request(publish(write_app_source(tmp, version="1.0.0")), "j-1"))
    assert statuses.final("j-1").state == State.SUCCEEDED
    only = engine.submit_rollback(RollbackRequest("rb-only", "demo_app"))
    assert not only.accepted and "no earlier version" in only.message
    engine.submit(request(publish(write_app_source(tmp, version="2.0.0")), "j-2"))
    assert statuses.final("j-2").state == State.SUCCEEDED
    missing = engine.submit_rollback(RollbackRequest("rb-missing", "demo_app", "9.9.9"))
    assert not missing.accepted and "9.9.9 is not installed" in missing.message

    # Roll back to the previous version: accepted at once, steps then SUCCEEDED under the job id.
    decision = engine.submit_rollback(RollbackRequest("rb-1", "demo_app"))
    assert decision.accepted and decision.state == State.IN_PROGRESS, decision.message
    final = statuses.final("rb-1")
    assert final.state == State.SUCCEEDED, final.reason
    assert (final.version, final.previous_version) == ("1.0.0", "2.0.0")
    assert {s.step for s in statuses.of("rb-1")} >= {"activate", "start", "health_check"}
    assert engine.store.active_version("demo_app") == "1.0.0"
    assert engine.apps.get("demo_app").alive() and engine.apps.get("demo_app").manifest.version == "1.0.0"

    # The same job offered again (restart, lost update): its state, not a second rollback (to 2.0.0).
    again = engine.submit_rollback(RollbackRequest("rb-1", "demo_app"))
    assert again.accepted and again.state == State.SUCCEEDED and "duplicate" in again.message
    time.sleep(0.2)
    assert engine.store.active_version("demo_app") == "1.0.0"
    other = engine.submit_rollback(RollbackRequest("j-2", "demo_app"))  # a deploy's job id
    assert not other.accepted and "different request" in other.message
    # An explicit version.
    assert engine.submit_rollback(RollbackRequest("rb-2", "demo_app", "2.0.0")).accepted
    assert statuses.final("rb-2").state == State.SUCCEEDED
    assert engine.store.active_version("demo_app") == "2.0.0"
