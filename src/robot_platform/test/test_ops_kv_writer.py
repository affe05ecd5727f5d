"""fleet_registry's registry writes (ops/kv_writer.py and RegistryService's presence path): a slow KV
never holds up the folding of announcements, and the bucket ends with each robot's latest record.

Regression of bench/fleet_scale.py at 100 robots: KV puts awaited inside the presence callback made the
registry fold one announcement per hub ack, so presence queued up and the sweep declared announcing
robots offline."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import nats
import pytest

from robot_platform.messaging.connect import Credentials
from robot_platform.ops import registry_service
from robot_platform.ops.kv_writer import CoalescingWriter
from robot_platform.ops.registry import Announcement
from robot_platform.ops.registry_service import RegistryService

PUT_S = 0.1  # a busy hub's ack time


class SlowKv:
    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.values: dict[str, bytes] = {}
        self.puts = 0
        self.inflight = self.max_inflight = 0
        self.fail = fail

    async def put(self, key: str, value: bytes) -> None:
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            await asyncio.sleep(PUT_S)
            if key in self.fail:
                raise TimeoutError("no ack")
            self.values[key] = value
            self.puts += 1
        finally:
            self.inflight -= 1


def test_writer_keeps_the_latest_value_per_key_with_bounded_concurrency() -> None:
    async def main() -> tuple[SlowKv, CoalescingWriter, list[str], float]:
        kv, errors = SlowKv(fail={"k7"}), []
        writer = CoalescingWriter(kv.put, lambda key, exc: errors.append(key), max_inflight=8)
        task = asyncio.create_task(writer.run())
        started = time.monotonic()
        for version in range(3):
            for i in range(40):
                writer.submit(f"k{i}", f"v{version}".encode())
        assert await writer.flush(10.0)
        took = time.monotonic() - started
        task.cancel()
        return kv, writer, errors, took

    kv, writer, errors, took = asyncio.run(main())
    assert errors == ["k7"] and writer.failed == 1
    assert kv.values == {f"k{i}": b"v2" for i in range(40) if i != 7}
    assert writer.superseded == 80 and writer.written == 39
    assert kv.max_inflight == 8
    assert took < 40 * PUT_S / 2, f"{took:.2f} s: writes not concurrent"


def test_writer_refuses_zero_concurrency() -> None:
    with pytest.raises(ValueError):
        CoalescingWriter(SlowKv().put, lambda key, exc: None, max_inflight=0)


class FakeNc:
    async def publish(self, subject: str, data: bytes, headers: Any = None) -> None:
        pass


class Msg:
    def __init__(self, robot: str) -> None:
        self.subject = f"robots.{robot}.presence"
        self.data = Announcement(robot_id=robot, sent_at=time.time()).encode()


def test_presence_is_folded_without_waiting_for_the_bucket() -> None:
    robots = [f"r{i}" for i in range(1, 51)]

    async def main() -> tuple[RegistryService, SlowKv, float]:
        service = RegistryService("nats://127.0.0.1:1", Credentials(), robots)
        kv = SlowKv()
        service._kv, service._nc = kv, FakeNc()
        task = asyncio.create_task(service.writer.run())
        started = time.monotonic()
        for robot in robots:  # as nats-py calls the callback: one message after the other
            await service._on_presence(Msg(robot))
        folded = time.monotonic() - started
        assert await service.writer.flush(10.0)
        task.cancel()
        return service, kv, folded

    service, kv, folded = asyncio.run(main())
    assert folded < 10 * PUT_S, f"50 announcements took {folded:.2f} s: folding waits for KV acks"
    assert all(service.registry.records[r].status == "online" for r in robots)
    assert {k: json.loads(v)["robot_id"] for k, v in kv.values.items()} == {r: r for r in robots}
    assert service.counters.announcements == 50 and service.counters.kv_errors == 0


class BusyHubJs:
    """A hub whose JetStream API times out the first ``n`` bucket lookups (100 robots' sources being set up)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    async def key_value(self, bucket: str) -> str:
        self.calls += 1
        if self.calls <= self.n:
            raise nats.errors.TimeoutError
        return f"kv:{bucket}"


def test_registry_waits_for_a_busy_hubs_bucket_instead_of_giving_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the first JetStream timeout ended the registry's service thread for good (the process
    stayed up answering nothing: fleet.registry.list had no responders at 100 robots)."""
    monkeypatch.setattr(registry_service, "OPEN_RETRY_FIRST_S", 0.01)

    async def main() -> tuple[Any, Any, RegistryService]:
        service = RegistryService("nats://127.0.0.1:1", Credentials(), ["r1"])
        service._js = BusyHubJs(3)
        got = await service._open_bucket(asyncio.Event(), None)
        stopped = asyncio.Event()
        stopped.set()
        service._js = BusyHubJs(1000)
        return got, await service._open_bucket(stopped, None), service

    got, after_stop, service = asyncio.run(main())
    assert got == "kv:FLEET_REGISTRY" and service.counters.errors["bucket_open"] == 3
    assert after_stop is None  # a stop ends the wait
