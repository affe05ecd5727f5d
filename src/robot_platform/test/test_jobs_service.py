"""Unit tests of the jobs service (IoT Jobs server role) and rollout rules: real SQLite, fake clock, no MQTT.

Replies are parsed with the AWS IoT Device SDK's own models (awsiot.iotjobs) where it has one, so the
payloads are checked against what an AWS device client expects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from awsiot import iotjobs

from robot_platform.jobs.errors import DuplicateJobError, JobSpecError
from robot_platform.jobs.service import RESYNC_GRACE_S, JobsService
from robot_platform.jobs.store import JobStore

DOC = {"operation": "deploy", "package_name": "p", "version": "1.0.0"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self, path: Path) -> None:
        self.clock = Clock()
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.events: list[dict[str, Any]] = []
        self.path = path
        self.service = self._make()

    def _make(self) -> JobsService:
        return JobsService(
            JobStore(self.path), lambda t, b: self.sent.append((t, json.loads(b))), self.events.append, self.clock
        )

    def restart(self) -> None:
        self.service.store.close()
        self.service = self._make()

    def request(self, thing: str, op: str, body: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Send a device request; return (accepted|rejected, reply body)."""
        self.sent.clear()
        self.service.handle(f"$aws/things/{thing}/jobs/{op}", json.dumps({**(body or {}), "clientToken": "t"}).encode())
        replies = [(t, b) for t, b in self.sent if t.endswith(("/accepted", "/rejected"))]
        assert len(replies) == 1, self.sent
        topic, reply = replies[0]
        assert reply["clientToken"] == "t"
        return topic.rsplit("/", 1)[1], reply

    def start_next(self, thing: str) -> dict[str, Any] | None:
        verdict, reply = self.request(thing, "start-next")
        assert verdict == "accepted"
        parsed = iotjobs.StartNextJobExecutionResponse.from_payload(reply)
        return reply.get("execution") if parsed.execution is not None else None

    def update(self, thing: str, job_id: str, status: str, **details: str) -> tuple[str, dict[str, Any]]:
        return self.request(thing, f"{job_id}/update", {"status": status, "statusDetails": details})

    def statuses(self, job_id: str) -> dict[str, str]:
        return {ex["thing"]: ex["status"] for ex in self.service.get(job_id)["executions"]}


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path / "jobs.sqlite3")


def create(h: Harness, job_id: str, targets: list[str], **rollout: Any) -> dict[str, Any]:
    return h.service.create({"job_id": job_id, "document": DOC, "targets": targets, "rollout": rollout or None})


def test_canary_then_rate_limited_rest_then_completed(h: Harness) -> None:
    create(h, "j1", ["r1", "r2", "r3"], canary=1, max_per_minute=2)
    assert h.statuses("j1") == {"r1": "QUEUED", "r2": "SCHEDULED", "r3": "SCHEDULED"}
    notify = [b for t, b in h.sent if t == "$aws/things/r1/jobs/notify-next"]
    assert notify and notify[0]["execution"]["jobDocument"] == DOC
    assert iotjobs.NextJobExecutionChangedEvent.from_payload(notify[0]).execution.job_id == "j1"
    assert h.start_next("r2") is None  # not released: invisible to the device
    execution = h.start_next("r1")
    assert execution is not None and execution["status"] == "IN_PROGRESS" and execution["jobDocument"] == DOC
    assert h.update("r1", "j1", "IN_PROGRESS", step="download", progress="0.10")[0] == "accepted"
    assert h.statuses("j1")["r2"] == "SCHEDULED"  # canary not finished yet
    assert h.update("r1", "j1", "SUCCEEDED")[0] == "accepted"
    assert h.statuses("j1") == {"r1": "SUCCEEDED", "r2": "QUEUED", "r3": "SCHEDULED"}  # 1 at once
    h.clock.now += 29
    h.service.tick()
    assert h.statuses("j1")["r3"] == "SCHEDULED"  # 2 per minute: the next after 30 s
    h.clock.now += 1
    assert h.service.tick() is None
    assert h.statuses("j1")["r3"] == "QUEUED"
    for thing in ("r2", "r3"):
        assert h.start_next(thing)["jobId"] == "j1"
        h.update(thing, "j1", "SUCCEEDED")
    job = h.service.get("j1")
    assert job["status"] == "COMPLETED" and job["counts"] == {"SUCCEEDED": 3}
    # terminal: later updates are refused with the execution state
    verdict, reply = h.update("r1", "j1", "FAILED")
    assert verdict == "rejected" and reply["code"] == "InvalidStateTransition"
    assert iotjobs.RejectedError.from_payload(reply).execution_state.status == "SUCCEEDED"


def test_canary_failure_aborts_and_cancels_the_rest(h: Harness) -> None:
    create(h, "bad", ["r1", "r2", "r3"], canary=1)
    h.start_next("r1")
    h.update("r1", "bad", "FAILED", reason="install failed: exit 3")
    job = h.service.get("bad")
    assert job["status"] == "CANCELED" and job["reason_code"] == "ABORTED"
    assert "canary r1 FAILED: install failed: exit 3" in job["reason"]
    assert h.statuses("bad") == {"r1": "FAILED", "r2": "CANCELED", "r3": "CANCELED"}
    assert all(ex["started_at"] is None for ex in job["executions"] if ex["thing"] != "r1")
    assert h.start_next("r2") is None
    h.clock.now += 3600
    h.service.tick()
    assert h.statuses("bad")["r2"] == "CANCELED"


def test_failure_percentage_threshold_and_rejected_counts_as_failure(h: Harness) -> None:
    targets = [f"r{i}" for i in range(1, 6)]
    create(
        h, "pct", targets, canary=0, max_per_minute=1000, abort_failures=0, abort_failure_pct=50, abort_min_executed=2
    )
    assert list(h.statuses("pct").values()).count("QUEUED") == 1  # no canary: the first at once
    h.clock.now += 1
    h.service.tick()
    assert set(h.statuses("pct").values()) == {"QUEUED"}  # 1000/min: the rest within the second
    h.start_next("r1")
    h.update("r1", "pct", "SUCCEEDED")
    h.start_next("r2")
    h.update("r2", "pct", "REJECTED", reason="malformed")
    assert h.service.get("pct")["status"] == "CANCELED"
    assert h.statuses("pct") == {
        "r1": "SUCCEEDED",
        "r2": "REJECTED",
        "r3": "CANCELED",
        "r4": "CANCELED",
        "r5": "CANCELED",
    }


def test_timeout_get_pending_and_restart_keeps_state(h: Harness) -> None:
    h.service.create(
        {
            "job_id": "slow",
            "document": DOC,
            "targets": ["r1"],
            "timeout_s": 60,
            "rollout": {"canary": 0, "abort_failures": 0},
        }
    )
    h.service.create({"job_id": "next", "document": DOC, "targets": ["r1"], "rollout": {"canary": 0}})
    verdict, reply = h.request("r1", "get")
    assert verdict == "accepted" and [j["jobId"] for j in reply["queuedJobs"]] == ["slow", "next"]
    assert iotjobs.GetPendingJobExecutionsResponse.from_payload(reply).queued_jobs[0].job_id == "slow"
    assert h.start_next("r1")["jobId"] == "slow"
    h.restart()  # durable: the restarted service knows the execution is in progress
    assert h.request("r1", "get")[1]["inProgressJobs"][0]["jobId"] == "slow"
    h.clock.now += 61
    h.sent.clear()
    h.service.tick()
    assert h.statuses("slow") == {"r1": "TIMED_OUT"}
    nxt = [b for t, b in h.sent if t.endswith("notify-next")]
    assert nxt and nxt[-1]["execution"]["jobId"] == "next"
    assert h.update("r1", "slow", "SUCCEEDED")[1]["code"] == "InvalidStateTransition"
    assert h.start_next("r1")["jobId"] == "next"


def test_restart_after_the_timeout_waits_for_devices_before_timing_out(h: Harness) -> None:
    """The service was down past an execution's timeout (kill -9): the device's final update is still
    to come (broker session, re-sync), so no TIMED_OUT (and no retry running it twice) before it can."""
    for robot in ("r1", "r2"):
        spec = {"document": DOC, "targets": [robot], "timeout_s": 60, "retry": {"timed_out": 1}}
        h.service.create({"job_id": f"j-{robot}", **spec})
        assert h.start_next(robot)["jobId"] == f"j-{robot}"
    h.clock.now += 300  # down for 5 minutes
    h.restart()

    def states() -> dict[str, tuple[str, int]]:
        return {
            ex["thing"]: (ex["status"], ex["attempt"])
            for j in ("j-r1", "j-r2")
            for ex in h.service.get(j)["executions"]
        }

    h.service.tick(devices_online=False)  # broker not reached yet: nothing can be heard, nothing times out
    assert states() == {"r1": ("IN_PROGRESS", 1), "r2": ("IN_PROGRESS", 1)}
    h.service.announce_all()  # connected: devices re-sync now
    h.clock.now += 5
    h.service.tick()
    assert states() == {"r1": ("IN_PROGRESS", 1), "r2": ("IN_PROGRESS", 1)}
    assert h.update("r1", "j-r1", "SUCCEEDED")[0] == "accepted"  # r1 reports what it did meanwhile
    h.clock.now += RESYNC_GRACE_S
    h.service.tick()  # r2 stays silent past the grace: now it times out (and its retry is queued)
    assert states() == {"r1": ("SUCCEEDED", 1), "r2": ("QUEUED", 2)}


def test_bad_device_requests_are_rejected_with_codes(h: Harness) -> None:
    create(h, "j", ["r1"], canary=1)
    h.sent.clear()
    h.service.handle("$aws/things/r1/jobs/start-next", b"{not json")
    assert h.sent[-1][0].endswith("start-next/rejected") and h.sent[-1][1]["code"] == "InvalidJson"
    assert h.update("r1", "j", "TIMED_OUT")[1]["code"] == "InvalidRequest"  # devices cannot set it
    assert h.update("r1", "nope", "SUCCEEDED")[1]["code"] == "ResourceNotFound"
    assert h.update("r2", "j", "SUCCEEDED")[1]["code"] == "ResourceNotFound"  # not r2's execution
    verdict, reply = h.request("r1", "j/update", {"status": "IN_PROGRESS", "expectedVersion": 99})
    assert verdict == "rejected" and reply["code"] == "VersionMismatch"
    verdict, reply = h.request("r1", "j/update", {"status": "IN_PROGRESS", "statusDetails": {"a": 1}})
    assert reply["code"] == "InvalidRequest"
    h.sent.clear()
    h.service.handle("$aws/things/r1/shadow/update", b"{}")  # not a jobs topic: ignored, counted
    assert h.sent == [] and h.service.counters["requests_invalid_topic"] == 1
    verdict, reply = h.request("r1", "$next/get")
    assert verdict == "accepted" and reply["execution"]["jobId"] == "j"
    assert iotjobs.DescribeJobExecutionResponse.from_payload(reply).execution.job_document == DOC


def test_job_spec_validation_and_cancel(h: Harness) -> None:
    for body, field in (
        ({"document": [], "targets": ["r1"]}, "document"),
        ({"document": DOC, "targets": []}, "targets"),
        ({"document": DOC, "targets": ["r1", "r1"]}, "targets"),
        ({"document": DOC, "targets": ["a/b"]}, "targets"),
        ({"document": DOC, "targets": ["r1"], "job_id": "x y"}, "job_id"),
        ({"document": DOC, "targets": ["r1"], "rollout": {"max_per_minute": 0}}, "rollout.max_per_minute"),
        ({"document": DOC, "targets": ["r1"], "rollout": {"canry": 1}}, "rollout"),
    ):
        with pytest.raises(JobSpecError) as err:
            h.service.create(body)
        assert err.value.field == field
    create(h, "c", ["r1", "r2"], canary=1)
    with pytest.raises(DuplicateJobError):
        create(h, "c", ["r1"])
    h.start_next("r1")
    job = h.service.cancel("c")
    assert job["status"] == "CANCELED" and job["reason_code"] == "USER_CANCELED"
    assert h.statuses("c") == {"r1": "IN_PROGRESS", "r2": "CANCELED"}  # running one finishes
    assert h.update("r1", "c", "SUCCEEDED")[0] == "accepted"
    listed = h.service.list()
    assert listed[0]["job_id"] == "c" and listed[0]["counts"] == {"SUCCEEDED": 1, "CANCELED": 1}
    assert any(e["type"] == "job" and e["event"] == "user_canceled" for e in h.events)


def test_failed_and_timed_out_executions_are_retried_as_configured(h: Harness) -> None:
    h.service.create({"job_id": "flaky", "document": DOC, "targets": ["r1", "r2"], "timeout_s": 60,
                      "rollout": {"canary": 1}, "retry": {"failed": 1, "timed_out": 1}})  # fmt: skip
    first = h.start_next("r1")["executionNumber"]
    h.sent.clear()
    h.update("r1", "flaky", "FAILED", reason="download: storage unreachable")
    # queued again for r1 with a new execution number; the canary failure did not abort the job
    assert h.statuses("flaky") == {"r1": "QUEUED", "r2": "SCHEDULED"}
    (renotified,) = [b["execution"]["executionNumber"] for t, b in h.sent if t.endswith("r1/jobs/notify-next")]
    assert renotified > first
    ex = next(e for e in h.service.get("flaky")["executions"] if e["thing"] == "r1")
    assert ex["attempt"] == 2 and "attempt 2 after FAILED: download: storage unreachable" in ex["reason"]
    second = h.start_next("r1")
    assert second["executionNumber"] == renotified and second["status"] == "IN_PROGRESS"
    verdict, reply = h.request("r1", "flaky/update", {"status": "SUCCEEDED", "executionNumber": first})
    assert verdict == "rejected" and reply["code"] == "ResourceNotFound"  # the first attempt is over
    h.request("r1", "flaky/update", {"status": "SUCCEEDED", "executionNumber": renotified})
    assert h.statuses("flaky") == {"r1": "SUCCEEDED", "r2": "QUEUED"}
    # r2 times out (retried: 0 retries so far < 1), then fails: 1 retry so far is not < 1, so it stays FAILED
    numbers = [h.start_next("r2")["executionNumber"]]
    h.clock.now += 61
    h.service.tick()
    assert h.statuses("flaky")["r2"] == "QUEUED"
    numbers.append(h.start_next("r2")["executionNumber"])
    assert numbers[1] > numbers[0]  # each attempt its own execution number
    h.update("r2", "flaky", "FAILED", reason="health check")
    job = h.service.get("flaky")
    assert h.statuses("flaky")["r2"] == "FAILED" and job["status"] == "COMPLETED"
    assert job["retry"] == {"failed": 1, "timed_out": 1} and h.service.counters["executions_retried"] == 2


def test_rejected_is_never_retried_and_retry_config_is_validated(h: Harness) -> None:
    h.service.create({"job_id": "nope", "document": DOC, "targets": ["r1"], "retry": {"failed": 3}})
    h.start_next("r1")
    h.update("r1", "nope", "REJECTED", reason="malformed document")
    assert h.statuses("nope") == {"r1": "REJECTED"}
    for retry, field in (({"failed": 11}, "retry.failed"), ({"timed_out": -1}, "retry.timed_out"),
                         ({"failed": True}, "retry.failed"), ({"ALL": 1}, "retry"), ([1], "retry")):  # fmt: skip
        with pytest.raises(JobSpecError) as info:
            h.service.create({"document": DOC, "targets": ["r1"], "retry": retry})
        assert info.value.field == field, (retry, info.value.field)


def test_a_store_from_before_retries_is_migrated(h: Harness) -> None:
    h.service.create({"job_id": "old", "document": DOC, "targets": ["r1"]})
    db = h.service.store._db
    db.execute("ALTER TABLE executions DROP COLUMN attempt")  # the schema of earlier releases
    h.restart()
    ex = h.service.store.execution("old", "r1")
    assert ex is not None and ex.attempt == 1 and h.start_next("r1")["jobId"] == "old"
