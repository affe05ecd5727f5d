"""The engine's parts without packages: package lanes (serialization, shutdown) and the job book
(idempotent job ids, cancellation, rejections). The whole engine is covered by test_deploy_engine.py."""

import threading
import time

import pytest

from robot_platform.deploy.errors import CanceledError
from robot_platform.deploy.job_book import JobBook
from robot_platform.deploy.jobs import DeployRequest, State, Status, Step
from robot_platform.deploy.lanes import PackageLanes


def request(job_id, package="app", version="1.0.0", sha="a" * 64):
    return DeployRequest(job_id, package, version, f"s3://b/{package}.tar.gz", sha, "sig", "app")


class Runs:
    """Records which jobs ran, and how many ran at once per package; each waits for ``release``."""

    def __init__(self):
        self.order = []
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self.running = {}
        self.overlap = False
        self.lock = threading.Lock()

    def __call__(self, req):
        with self.lock:
            self.running[req.package_name] = self.running.get(req.package_name, 0) + 1
            self.overlap |= self.running[req.package_name] > 1
            self.order.append(req.job_id)
        self.started.release()
        assert self.release.wait(10.0)
        with self.lock:
            self.running[req.package_name] -= 1


def test_a_package_runs_its_deployments_one_at_a_time_in_order_and_packages_in_parallel():
    runs = Runs()
    lanes = PackageLanes(runs, lambda: False)
    assert lanes.enqueue(request("a1")) is False  # starts the lane's worker
    assert runs.started.acquire(timeout=5.0)
    assert lanes.enqueue(request("a2")) is True  # waits behind a1
    assert lanes.enqueue(request("b1", package="other")) is False  # another package: its own worker
    assert runs.started.acquire(timeout=5.0)
    assert lanes.queued("app") == 1
    runs.release.set()
    lanes.join(10.0)
    assert not runs.overlap
    assert runs.order.index("a1") < runs.order.index("a2")
    assert sorted(runs.order) == ["a1", "a2", "b1"]
    assert lanes.queued("app") == 0


def test_clear_drops_the_queued_deployments_but_not_the_running_one():
    runs = Runs()
    lanes = PackageLanes(runs, lambda: False)
    lanes.enqueue(request("a1"))
    assert runs.started.acquire(timeout=5.0)
    lanes.enqueue(request("a2"))
    lanes.enqueue(request("a3"))
    assert [r.job_id for r in lanes.clear()] == ["a2", "a3"]
    runs.release.set()
    lanes.join(10.0)
    assert runs.order == ["a1"]


def test_acquire_waits_for_the_lane_and_a_shutdown_ends_the_wait():
    stopping = threading.Event()
    lanes = PackageLanes(lambda r: None, stopping.is_set)
    lane = lanes.lane("app")
    assert lane is lanes.lane("app")
    assert lanes.acquire(lane, 0.0)
    t0 = time.monotonic()
    assert not lanes.acquire(lane, 0.05)  # held: refused after the wait
    assert time.monotonic() - t0 < 1.0
    stopping.set()
    t0 = time.monotonic()
    assert not lanes.acquire(lane, 60.0)  # a shutdown ends a long wait within a poll step
    assert time.monotonic() - t0 < 2.0
    lane.lock.release()


@pytest.fixture
def book(tmp_path):
    seen = []
    stopping = threading.Event()
    book = JobBook("r1", tmp_path / "jobs", seen.append, stopping.is_set)
    return book, seen, stopping


def test_a_repeated_job_id_answers_with_its_state_in_flight_and_after_the_end(book):
    book, seen, _ = book
    req = request("j1")
    assert book.duplicate(req) is None
    status = Status("r1", "j1", "app", "1.0.0", "", State.QUEUED)
    book.add(req, status)
    answer = book.duplicate(req)
    assert (answer.accepted, answer.state) == (True, State.QUEUED)
    other = book.duplicate(request("j1", version="2.0.0"))
    assert (other.accepted, other.state) == (False, State.REJECTED)
    assert "different request" in other.message
    generation = book.generation
    book.finish(req, status, State.FAILED, "boom")
    assert book.generation == generation + 1
    with pytest.raises(KeyError):
        book.status_of("j1")
    answer = book.duplicate(req)  # from the job log on disk now
    assert (answer.accepted, answer.state) == (True, State.FAILED)
    assert answer.message == "duplicate job id; job is FAILED: boom"
    assert [s.state for s in seen] == [State.FAILED]


def test_progress_raises_on_shutdown_except_for_a_rollback_step(book):
    book, seen, stopping = book
    status = Status("r1", "j1", "app", "1.0.0")
    book.progress(status, Step.DOWNLOAD, 0.1)
    assert (seen[-1].state, seen[-1].step, seen[-1].progress) == (State.IN_PROGRESS, Step.DOWNLOAD, 0.1)
    assert seen[-1] is not status  # a copy: the sink may keep it while the job goes on
    stopping.set()
    with pytest.raises(CanceledError):
        book.progress(status, Step.INSTALL)
    book.progress(status, Step.ROLLBACK)
    assert seen[-1].step == Step.ROLLBACK


def test_a_rejection_is_counted_announced_and_stored_under_its_job_id(book):
    book, seen, _ = book
    decision = book.reject(request("j2"), "bad signature")
    assert (decision.accepted, decision.job_id, decision.state) == (False, "j2", State.REJECTED)
    assert book.rejected_count == 1
    assert seen[-1].reason == "bad signature"
    assert book.duplicate(request("j2")).state == State.REJECTED
    anonymous = book.reject(request(""), "no job id", store=True)
    assert anonymous.job_id  # one is made up for the answer, nothing stored
    assert book.rejected_count == 2


def test_a_broken_status_sink_does_not_stop_the_job(tmp_path):
    def broken(status):
        raise RuntimeError("sink down")

    book = JobBook("r1", tmp_path / "jobs", broken, lambda: False)
    book.progress(Status("r1", "j1", "app", "1.0.0"), Step.VERIFY)  # logged, not raised
