"""The jobs outbox on its own: nothing leaves before a flush, a discard drops a rolled-back transaction's
output, notify-next only when a thing's next execution changed, and a broken transport is counted."""

from __future__ import annotations

import collections
import json

from robot_platform.jobs.model import Execution, Job, parse_job_spec
from robot_platform.jobs.mqtt_outbox import JobsOutbox
from robot_platform.jobs.store import JobStore
from robot_platform.mqtt.jobs_protocol import ExecStatus

NOW = 1_700_000_000.0


def make(tmp_path, publish=None):
    sent, events = [], []
    store = JobStore(tmp_path / "jobs.sqlite")
    counters = collections.Counter()
    outbox = JobsOutbox(
        store, publish or (lambda t, b: sent.append((t, json.loads(b)))), events.append, lambda: NOW, counters
    )
    return store, outbox, sent, events, counters


def add_job(store, job_id, thing="r1"):
    spec = parse_job_spec({"job_id": job_id, "document": {"operation": "deploy"}, "targets": [thing]})
    job = Job(spec, created_at=NOW, updated_at=NOW)
    ex = Execution(job_id, thing, ExecStatus.QUEUED, canary=True, queued_at=NOW, last_updated_at=NOW)
    with store.transaction():
        store.insert_job(job, [ex])
    return job, ex


def test_nothing_leaves_before_a_flush_and_a_discard_drops_everything(tmp_path):
    store, outbox, sent, events, _ = make(tmp_path)
    job, ex = add_job(store, "j1")
    outbox.notify("r1")
    outbox.event_execution(ex)
    outbox.event_job(job, "created")
    assert sent == [] and events == []
    outbox.discard()
    outbox.flush()
    assert sent == [] and events == []
    outbox.event_job(job, "created")
    outbox.flush()
    assert [(e["type"], e["event"]) for e in events] == [("job", "created")]
    assert "document" not in events[0]


def test_notify_next_only_when_the_next_execution_changed(tmp_path):
    store, outbox, sent, _, _ = make(tmp_path)
    add_job(store, "j1")
    outbox.notify("r1")
    outbox.notify("r1")
    outbox.flush()
    topics = [t for t, _ in sent]
    assert topics == ["$aws/things/r1/jobs/notify", "$aws/things/r1/jobs/notify-next", "$aws/things/r1/jobs/notify"]
    assert sent[1][1]["execution"]["jobId"] == "j1"
    assert sent[0][1]["jobs"]["QUEUED"][0]["jobId"] == "j1"
    sent.clear()
    outbox.forget_announced()  # after a restart or reconnect: announce again
    outbox.notify("r1")
    outbox.flush()
    assert [t for t, _ in sent][-1] == "$aws/things/r1/jobs/notify-next"


def test_a_reply_goes_out_before_the_notifies_it_caused(tmp_path):
    store, outbox, sent, _, _ = make(tmp_path)
    add_job(store, "j1")
    outbox.notify("r1")
    outbox.add("$aws/things/r1/jobs/get/accepted", b"{}", first=True)
    outbox.flush()
    assert sent[0][0] == "$aws/things/r1/jobs/get/accepted"


def test_a_broken_transport_is_counted_and_the_rest_still_goes_out(tmp_path):
    got = []

    def publish(topic, payload):
        if topic.endswith("/notify"):
            raise ConnectionError("down")
        got.append(topic)

    store, outbox, _, _, counters = make(tmp_path, publish)
    add_job(store, "j1")
    outbox.notify("r1")
    outbox.flush()
    assert counters["publish_errors"] == 1
    assert got == ["$aws/things/r1/jobs/notify-next"]
