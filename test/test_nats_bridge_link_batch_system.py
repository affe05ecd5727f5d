"""NatsLink against a real nats-server: publishes from several threads, inside and outside batch(),
all arrive once, in order per thread, with their headers (the sender's wake-up coalescing loses none)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import nats

from helpers import wait_for
from robot_platform.messaging.envelope import EnvelopeFactory
from robot_platform.messaging.nats_link import NatsLink

PER_THREAD = 2000


def test_batched_and_single_publishes_all_arrive_in_order(nats_server: Any) -> None:
    received: list[tuple[str, str, str]] = []
    ready = threading.Event()
    stop = threading.Event()

    async def consume() -> None:
        nc = await nats.connect(nats_server.url)

        async def cb(msg: Any) -> None:
            received.append((msg.subject, msg.data.decode(), msg.headers["Rp-Seq"]))

        await nc.subscribe("robots.r1.ros.>", cb=cb, pending_msgs_limit=100_000)
        await nc.flush()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.02)
        await nc.close()

    consumer = threading.Thread(target=asyncio.run, args=(consume(),), daemon=True)
    consumer.start()
    assert ready.wait(10)
    link = NatsLink(nats_server.url, lambda *_: None, name="batch_test", outbox_capacity=10 * PER_THREAD)
    link.start()
    envelopes = EnvelopeFactory("r1")
    lock = threading.Lock()

    def produce(topic: str, batch_size: int) -> None:
        subject = f"robots.r1.ros.{topic}"
        for start in range(0, PER_THREAD, batch_size):
            with link.batch() if batch_size > 1 else contextlib.nullcontext():
                for i in range(start, min(start + batch_size, PER_THREAD)):
                    with lock:
                        headers = envelopes.headers("std_msgs/msg/String", "", f"/{topic}")
                    link.publish(subject, str(i).encode(), headers)

    try:
        wait_for(lambda: link.connected, 10, "the link to connect")
        producers = [threading.Thread(target=produce, args=(t, n)) for t, n in (("a", 64), ("b", 1), ("c", 7))]
        for p in producers:
            p.start()
        for p in producers:
            p.join(30)
        wait_for(lambda: len(received) >= 3 * PER_THREAD, 20, "every message at the subscriber")
    finally:
        link.stop()
        stop.set()
        consumer.join(10)
    assert link.counters.sent == 3 * PER_THREAD and link.counters.dropped_outbox == 0
    for topic in ("a", "b", "c"):
        mine = [(data, seq) for subject, data, seq in received if subject == f"robots.r1.ros.{topic}"]
        assert [d for d, _ in mine] == [str(i) for i in range(PER_THREAD)]
        assert [s for _, s in mine] == [str(i + 1) for i in range(PER_THREAD)]
