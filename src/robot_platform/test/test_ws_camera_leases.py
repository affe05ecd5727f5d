"""The agent's lease thread (LeaseLoop) over a fake NATS requester: grants, refusals retried and warned
about, releases sent on stop. The bookkeeping itself (LeaseKeeper) is covered in test_ws_frames.py."""

from __future__ import annotations

import threading
import time

import msgpack

from robot_platform.frames.leases import encode_reply
from robot_platform.ws.camera_leases import LeaseKeeper, LeaseLoop

SUBJECT = "robots.r1.frames.front"


class FakeNats:
    """Answers every lease request at once from a script of replies (None: no responder)."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.sent: list[dict] = []
        self.lock = threading.Lock()

    def request(self, subject, body, headers, timeout, reply, /) -> None:
        request = msgpack.unpackb(body)
        with self.lock:
            self.sent.append({"subject": subject, **request})
        result = self.answer(request)
        if result is None:
            reply(None, "no responders")
        else:
            reply(({}, encode_reply(result, json_format=False)), "")

    def count(self) -> int:
        with self.lock:
            return len(self.sent)


def wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_wanted_camera_gets_its_lease_and_stop_releases_it() -> None:
    nats = FakeNats(lambda request: {"ok": True, "ttl_s": 3.0})
    keeper = LeaseKeeper(ttl_s=3.0, retry_s=0.1, id_prefix="t")
    loop = LeaseLoop(keeper, nats, lambda text: None)
    loop.start()
    try:
        keeper.want(SUBJECT, time.monotonic())
        loop.poke()
        wait_for(lambda: keeper.counters.granted == 1)
        assert nats.sent[0]["subject"] == SUBJECT + ".lease" and nats.sent[0]["ttl_s"] == 3.0
    finally:
        loop.stop()
    assert nats.sent[-1].get("release") is True
    assert keeper.counters.released == 1 and keeper.held() == {}


def test_a_refused_lease_is_warned_about_and_retried() -> None:
    answers = iter([{"ok": False, "message": "busy"}, None])
    nats = FakeNats(lambda request: next(answers, {"ok": True}))
    warnings: list[str] = []
    keeper = LeaseKeeper(ttl_s=3.0, retry_s=0.05, id_prefix="t")
    loop = LeaseLoop(keeper, nats, warnings.append)
    loop.start()
    try:
        keeper.want(SUBJECT, time.monotonic())
        loop.poke()
        wait_for(lambda: keeper.counters.granted == 1)
    finally:
        loop.stop()
    assert keeper.counters.failures == 2
    assert "busy" in warnings[0] and "no responders" in warnings[1]
