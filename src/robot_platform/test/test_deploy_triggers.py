import threading
import time

from robot_platform.deploy.manifest import Trigger
from robot_platform.deploy.triggers import TriggerRunner, wanted


def test_wanted_splits_and_resolves_conflicts_by_name():
    subjects, topics, periods = wanted(
        {
            "b_fn": (Trigger(nats="robots.r1.events.x"), Trigger(schedule_s=5.0), Trigger(schedule_s=2.0)),
            "a_fn": (Trigger(nats="robots.r1.events.x"), Trigger(ros_topic="/door")),
        }
    )
    assert subjects == {"robots.r1.events.x": "a_fn"}
    assert topics == {"/door": "a_fn"}
    assert periods == {"b_fn": 2.0}


def test_busy_package_skips_and_schedule_fires():
    gate = threading.Event()
    results = []
    done = threading.Condition()

    def invoke(package, event):
        if event == "slow":
            gate.wait(5)
        return {"ok": True, "result": event}

    def on_result(package, source, result):
        with done:
            results.append((package, source, result["result"]))
            done.notify_all()

    runner = TriggerRunner(invoke, on_result)
    try:
        assert runner.fire("fn", "slow", "test")
        assert not runner.fire("fn", "second", "test")  # one in flight per package: skipped, counted
        assert runner.skipped == 1
        gate.set()
        runner.set_schedule({"tick": 0.1})
        with done:
            assert done.wait_for(lambda: sum(1 for r in results if r[1] == "schedule") >= 2, timeout=5)
        assert ("fn", "test", "slow") in results
        runner.set_schedule({})
        time.sleep(0.3)
        with done:
            count = len(results)
        time.sleep(0.3)
        assert len(results) == count  # unscheduled: no more ticks
    finally:
        runner.close()
    assert not runner.fire("fn", "late", "test")
