"""The active/standby lease (messaging/lease.py) against a real nats-server's KV bucket (TTL, CAS).

What jobs_service and fleet_registry rely on with ``ha: true``: one holder at a time; a standby takes over
only after the holder stopped renewing for the bucket's TTL; the old holder, when it renews again, learns
it lost (CAS fails) and steps down instead of serving next to the new one; a clean release hands over at
the standby's next attempt. A short TTL keeps it under 15 s.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats

from robot_platform.messaging.lease import Lease, open_lease_bucket

TTL_S = 2.0
RENEW_S = 0.25


def test_one_holder_takeover_after_ttl_and_the_old_holder_steps_down(nats_server: Any) -> None:
    asyncio.run(asyncio.wait_for(_scenario(nats_server.url), 60))


async def _scenario(url: str) -> None:
    nc = await nats.connect(url)
    try:
        kv = await open_lease_bucket(nc.jetstream(), ttl_s=TTL_S)
        a = Lease(kv, "svc", "a-1", ttl_s=TTL_S, renew_period_s=RENEW_S)
        b = Lease(kv, "svc", "b-2", ttl_s=TTL_S, renew_period_s=RENEW_S)
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        assert await a.try_acquire()
        assert not await b.try_acquire(), "two holders"
        keeper = asyncio.create_task(a.keep(stop_a))
        await asyncio.sleep(TTL_S * 2)  # a renews: its key never expires
        assert a.held and not await b.try_acquire()

        # a hangs (no renewals): b takes over about one TTL later, not before
        stop_a.set()
        await keeper
        t_hang = time.monotonic()
        assert await asyncio.wait_for(b.acquire(stop_b), TTL_S * 5)
        took_s = time.monotonic() - t_hang
        assert took_s >= TTL_S - 2 * RENEW_S, f"taken over after {took_s:.2f}s, before the TTL"
        assert (await kv.get("svc")).value == b"b-2"

        # a wakes up and renews: the CAS fails, it steps down (lost), b keeps the lease
        stop_a = asyncio.Event()
        keeper = asyncio.create_task(a.keep(stop_a))
        await asyncio.wait_for(a.lost.wait(), 5)
        assert not a.held
        await keeper
        assert (await kv.get("svc")).value == b"b-2"

        # clean hand-over: b releases, a takes it at its next attempt (no TTL wait)
        await b.release()
        t_release = time.monotonic()
        assert await asyncio.wait_for(a.acquire(asyncio.Event()), 5)
        assert time.monotonic() - t_release < TTL_S
        assert a.takeovers == 2 and b.takeovers == 1
    finally:
        await nc.close()
