"""Active/standby for the control services: a lease (one key per service) in a replicated NATS KV bucket.

Why a lease in JetStream rather than an election of our own: a clustered hub already runs Raft for its
R3 streams, so a key in an R3 bucket *is* a consistent register that survives losing one hub node. Two or
more instances of a service (jobs_service, fleet_registry) start with ``ha`` on; the one that creates the
key ``<service>`` in bucket ``CONTROL_LEASES`` is active, the others wait. The active renews the key every
``renew_period_s`` with a compare-and-set on its revision; the bucket's TTL (``ttl_s``) removes a key that
is no longer renewed, so a standby's create succeeds at most ``ttl_s + renew_period_s`` after the active
died. A clean stop deletes the key (the standby takes over at its next try).

Fencing: an active that cannot renew (its hub node died, the bucket has no quorum) keeps serving only
until ``ttl_s - STEP_DOWN_MARGIN_S`` after its last successful renewal and then steps down (``lost`` is
set), before any standby can have taken the key. A CAS that fails because another instance holds the key
steps down at once. Clocks: the TTL is measured by the hub; the margin covers a renewal in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType

from robot_platform.messaging import streams

LEASE_BUCKET = "CONTROL_LEASES"
LEASE_TTL_S = 10.0  # longer than a JetStream leader election after a hub node dies (a few seconds)
RENEW_PERIOD_S = 1.0
STEP_DOWN_MARGIN_S = 3.0
OP_TIMEOUT_S = 2.0

log = logging.getLogger(__name__)


def default_instance() -> str:
    """This process's holder id: host name and pid (shown in the lease key's value)."""
    return f"{socket.gethostname()}-{os.getpid()}"


async def open_lease_bucket(js: Any, ttl_s: float = LEASE_TTL_S) -> Any:
    """The lease bucket (created with the hub's replicas if missing; the first creator's TTL holds)."""
    return await streams.ensure_key_value(js, KeyValueConfig(
        bucket=LEASE_BUCKET, description="robot_platform active/standby leases (one key per service)",
        history=1, ttl=ttl_s, storage=StorageType.FILE, replicas=streams.HUB_REPLICAS,
    ))  # fmt: skip


class Lease:
    """One service's lease, held by ``holder`` (an instance id: host and pid) while :attr:`held`."""

    def __init__(self, kv: Any, service: str, holder: str, ttl_s: float = LEASE_TTL_S,
                 renew_period_s: float = RENEW_PERIOD_S) -> None:  # fmt: skip
        self.kv = kv
        self.service = service
        self.holder = holder
        self.ttl_s = ttl_s
        self.renew_period_s = renew_period_s
        self.lost = asyncio.Event()
        self.held = False
        self.takeovers = 0
        self._revision = 0
        self._renewed_at = 0.0

    async def try_acquire(self) -> bool:
        """One attempt to become active (True: the key is ours now)."""
        try:
            self._revision = await asyncio.wait_for(self.kv.create(self.service, self.holder.encode()), OP_TIMEOUT_S)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False  # another instance holds it
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            log.debug(f"lease {self.service}: acquire failed ({type(exc).__name__})")
            return False
        self._renewed_at = time.monotonic()
        self.held = True
        self.takeovers += 1
        self.lost.clear()
        log.info(f"lease {self.service}: {self.holder} is active")
        return True

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until the lease is ours (True) or ``stop`` is set (False)."""
        while not stop.is_set():
            if await self.try_acquire():
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.renew_period_s)
        return False

    async def keep(self, stop: asyncio.Event) -> None:
        """Renew until ``stop`` or the lease is lost (then :attr:`lost` is set and :attr:`held` False)."""
        while self.held and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.renew_period_s)
            if stop.is_set():
                break
            try:
                self._revision = await asyncio.wait_for(
                    self.kv.update(self.service, self.holder.encode(), last=self._revision), OP_TIMEOUT_S
                )
                self._renewed_at = time.monotonic()
            except nats.js.errors.KeyWrongLastSequenceError:
                if not await self._still_ours():
                    self._step_down("another instance holds the lease")
            except (TimeoutError, nats.errors.Error, OSError) as exc:
                silent = time.monotonic() - self._renewed_at
                if silent > self.ttl_s - STEP_DOWN_MARGIN_S:
                    self._step_down(f"not renewed for {silent:.1f}s ({type(exc).__name__})")

    async def release(self) -> None:
        """Give the lease up (clean stop): a standby takes over at its next attempt."""
        if not self.held:
            return
        self.held = False
        with contextlib.suppress(TimeoutError, nats.errors.Error, OSError):
            await asyncio.wait_for(self.kv.delete(self.service, last=self._revision), OP_TIMEOUT_S)

    async def _still_ours(self) -> bool:
        """After a failed CAS: True (and the revision adopted) if the key still holds our id, i.e. our last
        renewal was stored but its acknowledgement was lost (a leader change), not taken by another."""
        try:
            entry = await asyncio.wait_for(self.kv.get(self.service), OP_TIMEOUT_S)
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error, OSError):
            return False
        if entry.value != self.holder.encode():
            return False
        self._revision = entry.revision
        return True

    def _step_down(self, why: str) -> None:
        log.warning(f"lease {self.service}: {self.holder} steps down: {why}")
        self.held = False
        self.lost.set()
