"""jobs_service active/standby: a lease in NATS KV decides who serves; the state is replicated to KV.

Why active/standby and not "state only in JetStream": the service's rules (staged rollouts, aborts that
cancel many executions at once, device requests answered from indexed queries) are written against the
SQLite store (jobs/store.py), whose atomic multi-row commits they rely on. So SQLite stays the working
store of the *active* instance, and every committed row is also written to the KV bucket ``JOBS_STATE``
(R3 on a clustered hub): one key per job and per execution (``store.row_key``), last value wins. An
instance that takes the lease (messaging/lease.py) first rebuilds its SQLite file from the bucket
(an empty bucket is seeded from the local file: the upgrade from a single instance), then starts the
console API, the MQTT link and the tick; when the lease goes elsewhere it stops them again.

What can be lost: rows committed by the active but not yet acknowledged by the bucket when its machine
dies (the writer is asynchronous, normally milliseconds behind; ``pending`` counts them). Devices repeat
their status updates (IoT Jobs clients retry until accepted), so a lost execution update comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType

from robot_platform.common.event_loop import run_to_end
from robot_platform.messaging import connect, streams
from robot_platform.messaging.connect import Credentials
from robot_platform.messaging.lease import Lease, default_instance, open_lease_bucket

log = logging.getLogger(__name__)

STATE_BUCKET = "JOBS_STATE"
LEASE_KEY = "jobs_service"
RETRY_S = 0.5
STOP_FLUSH_S = 5.0  # a clean stop writes what is still queued for at most this long, then releases


async def open_state_bucket(js: Any) -> Any:
    return await streams.ensure_key_value(js, KeyValueConfig(
        bucket=STATE_BUCKET, description="robot_platform jobs_service state (one key per job and execution)",
        history=1, storage=StorageType.FILE, replicas=streams.HUB_REPLICAS,
    ))  # fmt: skip


async def read_state(js: Any) -> list[tuple[str, bytes]]:
    """The bucket's rows, from the leader (raises during an election: never a partial view)."""
    return sorted((await streams.kv_snapshot(js, STATE_BUCKET)).items())


class JobsHa:
    """Runs the lease and the state writer in a thread of its own (its own NATS connection).

    ``on_active(rows, seed)`` runs when the lease is taken (``rows``: the bucket's content; the callee
    rebuilds its store from it and starts serving, and returns the rows to seed an empty bucket with);
    ``on_standby()`` when it is lost. Both are called from a worker thread, never concurrently."""

    def __init__(
        self,
        url: str,
        credentials: Credentials,
        on_active: Callable[[list[tuple[str, bytes]]], list[tuple[str, bytes]]],
        on_standby: Callable[[], None],
        instance: str = "",
    ) -> None:
        self.url = url
        self.credentials = credentials
        self.on_active = on_active
        self.on_standby = on_standby
        self.instance = instance or default_instance()
        self.active = threading.Event()
        self.lease: Lease | None = None
        self.replicated = 0
        self.write_errors = 0
        self._queue: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._thread = threading.Thread(target=lambda: run_to_end(self._loop, self._run()), name="jobs-ha", daemon=True)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = STOP_FLUSH_S + 5.0) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def replicate(self, items: list[tuple[str, bytes]]) -> None:
        """Thread-safe, non-blocking (the store calls it after each commit, under the service lock)."""
        for item in items:
            self._queue.put(item)
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        stop = self._stop
        nc = await connect.connect_until_stopped(stop, self.url, name="jobs_service-ha", credentials=self.credentials,
                                                 log=log)  # fmt: skip
        if nc is None:
            return
        loop = asyncio.get_running_loop()
        try:
            js = nc.jetstream()
            kv = await open_state_bucket(js)
            self.lease = lease = Lease(await open_lease_bucket(js), LEASE_KEY, self.instance)
            log.info(f"jobs_service {self.instance}: standby until the lease {LEASE_KEY} is free")
            while not stop.is_set():
                if not await lease.acquire(stop):
                    break
                keeper = asyncio.create_task(lease.keep(stop))
                try:
                    rows = await self._read_until(js, stop, lease.lost)
                    if rows is None:
                        continue
                    seed = await loop.run_in_executor(None, self.on_active, rows)
                    for item in seed:
                        self._queue.put(item)
                    log.info(f"jobs_service {self.instance}: active with {len(rows)} rows from {STATE_BUCKET}")
                    self.active.set()
                    await self._write_until(kv, stop, lease.lost)
                finally:
                    keeper.cancel()
                    await asyncio.gather(keeper, return_exceptions=True)
                    was_active = self.active.is_set()
                    self.active.clear()
                    if was_active:
                        await loop.run_in_executor(None, self.on_standby)
                    if stop.is_set():  # clean stop: what the store committed reaches the bucket first
                        await asyncio.wait_for(self._drain(kv, None), STOP_FLUSH_S)
                    await lease.release()
                    self._discard()
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            log.warning(f"jobs_service HA stopped: {type(exc).__name__}: {exc}")
        finally:
            await connect.close(nc)

    async def _read_until(self, js: Any, stop: asyncio.Event, lost: asyncio.Event) -> list[tuple[str, bytes]] | None:
        """The replicated rows, retried until the bucket's leader answers (None: stopped or lease lost)."""
        while not stop.is_set() and not lost.is_set():
            try:
                return await asyncio.wait_for(read_state(js), 30.0)
            except (TimeoutError, nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                log.warning(f"{STATE_BUCKET} not readable yet ({type(exc).__name__}); retrying before serving")
                await asyncio.sleep(RETRY_S)
        return None

    async def _write_until(self, kv: Any, stop: asyncio.Event, lost: asyncio.Event) -> None:
        while not stop.is_set() and not lost.is_set():
            await self._drain(kv, lost)
            self._wake.clear()
            if self._queue.empty():
                waits = [asyncio.create_task(e.wait()) for e in (stop, lost, self._wake)]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()

    async def _drain(self, kv: Any, lost: asyncio.Event | None) -> None:
        """Write every queued row in order; a failed write is retried (the hub may be electing a leader)."""
        while not self._queue.empty():
            key, value = self._queue.get()
            while True:
                try:
                    await asyncio.wait_for(kv.put(key, value), 2.0)
                    self.replicated += 1
                    break
                except (TimeoutError, nats.errors.Error, OSError) as exc:
                    self.write_errors += 1
                    log.debug(f"{STATE_BUCKET} write of {key} failed ({type(exc).__name__}); retrying")
                    if lost is not None and lost.is_set():
                        return
                    await asyncio.sleep(RETRY_S)

    def _discard(self) -> None:
        while not self._queue.empty():
            self._queue.get()
