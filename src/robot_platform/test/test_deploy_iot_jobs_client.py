"""Unit tests of the IoT Jobs device side (no MQTT, no ROS): job documents, status mapping, re-sync.

Requests are checked against the AWS IoT Device SDK's models (awsiot.iotjobs) for field names.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from awsiot import iotjobs

from robot_platform.deploy.errors import RequestError
from robot_platform.deploy.iot_jobs_client import IotJobsAgent, document_to_request
from robot_platform.deploy.jobs import Decision, DeployRequest, State, Status

DOC = {
    "operation": "deploy",
    "package_name": "hello_fn",
    "version": "1.0.0",
    "kind": "function",
    "sha256": "ab" * 32,
    "signature": "sig",
}
PREFIX = "$aws/things/r1/jobs/"


class Engine:
    def __init__(self, decision: Decision | None = None) -> None:
        self.requests: list[DeployRequest] = []
        self.decision = decision
        self.agent: IotJobsAgent | None = None

    def submit(self, request: DeployRequest) -> Decision:
        self.requests.append(request)
        if self.decision is not None:
            return self.decision
        assert self.agent is not None
        self.agent.on_status(Status("r1", request.job_id, request.package_name, request.version, state=State.QUEUED))
        return Decision(True, request.job_id, State.QUEUED, "accepted")


@pytest.fixture
def wired() -> tuple[IotJobsAgent, Engine, list[tuple[str, dict[str, Any]]]]:
    sent: list[tuple[str, dict[str, Any]]] = []
    engine = Engine()
    agent = IotJobsAgent("r1", engine.submit, lambda t, b: sent.append((t.removeprefix(PREFIX), json.loads(b))))
    engine.agent = agent
    return agent, engine, sent


def offer(agent: IotJobsAgent, job_id: str, document: Any) -> None:
    body = {"execution": {"jobId": job_id, "executionNumber": 7, "status": "IN_PROGRESS", "jobDocument": document}}
    agent.on_message(PREFIX + "start-next/accepted", json.dumps(body).encode())


def test_document_validation() -> None:
    request = document_to_request("j1", DOC)
    assert request.job_id == "j1" and request.package_name == "hello_fn" and request.artifact_uri == ""
    for doc, field in (
        ([], "jobDocument"),
        ({**DOC, "operation": "reboot"}, "operation"),
        ({k: v for k, v in DOC.items() if k != "operation"}, "operation"),
        ({k: v for k, v in DOC.items() if k != "version"}, "version"),
        ({**DOC, "version": 1}, "version"),
        ({**DOC, "packge_name": "x"}, "packge_name"),
    ):
        with pytest.raises(RequestError) as err:
            document_to_request("j1", doc)
        assert err.value.field == field


def test_connect_get_start_next_run_and_report(wired: Any) -> None:
    agent, engine, sent = wired
    agent.on_connected()
    assert sent[-1][0] == "get"
    agent.on_message(PREFIX + "get/accepted", json.dumps({"queuedJobs": [{"jobId": "j1"}]}).encode())
    topic, body = sent[-1]
    assert topic == "start-next"
    iotjobs.StartNextPendingJobExecutionRequest(thing_name="r1", **{"status_details": body["statusDetails"]})
    agent.on_message(PREFIX + "notify-next", json.dumps({"execution": {"jobId": "j1"}}).encode())
    assert sent[-1][0] == "start-next" and len([s for s in sent if s[0] == "start-next"]) == 1  # one in flight
    offer(agent, "j1", DOC)
    assert engine.requests[0].job_id == "j1:7"  # one engine job per execution (retries run again)
    topic, body = sent[-1]
    assert topic == "j1/update" and body["status"] == "IN_PROGRESS" and body["executionNumber"] == 7
    assert body["statusDetails"]["step"] == "queued"
    for step, progress in (("download", 0.0), ("download", 0.2), ("verify", 0.4)):
        status = Status("r1", "j1:7", "hello_fn", "1.0.0", state=State.IN_PROGRESS, step=step, progress=progress)
        agent.on_status(status)
    updates = [b for t, b in sent if t == "j1/update"]
    assert [u["statusDetails"]["step"] for u in updates] == ["queued", "download", "verify"]  # per step, not byte
    agent.on_status(Status("r1", "other", "x", "1", state=State.SUCCEEDED))  # not an IoT job: ignored
    agent.on_status(Status("r1", "j1:7", "hello_fn", "1.0.0", "0.9.0", State.SUCCEEDED, progress=1.0))
    final = [b for t, b in sent if t == "j1/update"][-1]
    assert final["status"] == "SUCCEEDED" and final["statusDetails"]["previous_version"] == "0.9.0"
    model = iotjobs.UpdateJobExecutionRequest(
        thing_name="r1",
        job_id="j1",
        status=final["status"],
        status_details=final["statusDetails"],
        execution_number=7,
        client_token=final["clientToken"],
    )
    assert model.to_payload() == final
    assert sent[-1][0] == "start-next"  # ready for the next one


def test_failures_map_to_jobs_statuses(wired: Any) -> None:
    agent, engine, sent = wired
    offer(agent, "bad", {**DOC, "sha256": 5})
    assert engine.requests == []
    update = [b for t, b in sent if t == "bad/update"][-1]
    assert update["status"] == "REJECTED" and "malformed job document" in update["statusDetails"]["reason"]
    offer(agent, "slow", DOC)
    agent.on_status(Status("r1", "slow:7", "hello_fn", "1.0.0", state=State.TIMED_OUT, reason="health_check slow"))
    update = [b for t, b in sent if t == "slow/update"][-1]
    assert update["status"] == "FAILED" and update["statusDetails"]["reason"] == "TIMED_OUT: health_check slow"
    engine.decision = Decision(False, "refused", State.REJECTED, "signature rejected: unknown key")
    offer(agent, "refused", DOC)
    update = [b for t, b in sent if t == "refused/update"][-1]
    assert update["status"] == "REJECTED" and update["statusDetails"]["reason"].startswith("signature rejected")
    assert engine.requests[-1].job_id == "refused:7"
    engine.decision = Decision(True, "again", State.SUCCEEDED, "duplicate job id; job is SUCCEEDED")
    offer(agent, "again", DOC)  # picked up again after a restart: the engine knows it finished
    assert [b for t, b in sent if t == "again/update"][-1]["status"] == "SUCCEEDED"


def test_server_side_cancel_stops_reporting(wired: Any) -> None:
    agent, _engine, sent = wired
    offer(agent, "j2", DOC)
    rejected = {"code": "InvalidStateTransition", "message": "execution is CANCELED"}
    agent.on_message(PREFIX + "j2/update/rejected", json.dumps(rejected).encode())
    sent.clear()
    agent.on_status(Status("r1", "j2:7", "hello_fn", "1.0.0", state=State.SUCCEEDED))
    assert not [t for t, _ in sent if t == "j2/update"]
    agent.on_message(PREFIX + "notify-next", b"{not json")  # ignored, no crash


def test_a_lost_start_next_does_not_leave_the_robot_deaf() -> None:
    """A start-next that is never answered (the jobs service died before reading it) is asked again on
    the next notify-next once START_NEXT_ANSWER_S passed; before that, notify-next does not repeat it."""
    from robot_platform.deploy.iot_jobs_client import START_NEXT_ANSWER_S

    now = [100.0]
    sent: list[tuple[str, dict[str, Any]]] = []
    agent = IotJobsAgent("r1", Engine().submit, lambda t, b: sent.append((t.removeprefix(PREFIX), json.loads(b))),
                         clock=lambda: now[0])  # fmt: skip
    notify = json.dumps({"execution": {"jobId": "j1", "executionNumber": 1}}).encode()
    agent.on_message(PREFIX + "notify-next", notify)
    assert [t for t, _ in sent] == ["start-next"]
    now[0] += 1.0
    agent.on_message(PREFIX + "notify-next", notify)  # still waiting for the answer: no second request
    assert [t for t, _ in sent] == ["start-next"]
    now[0] += START_NEXT_ANSWER_S
    agent.on_message(PREFIX + "notify-next", notify)
    assert [t for t, _ in sent] == ["start-next", "start-next"]
