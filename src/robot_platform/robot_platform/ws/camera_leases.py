"""The agent's camera leases: exactly one per camera some client of this agent watches.

frame_publisher sends a camera's frames only while a lease on it is alive (frames/leases.py). While at
least one client watches a camera, the agent holds ONE lease on it, with its own lease id, renewed every
ttl/3, released when the last client unsubscribes or disconnects (and on shutdown); a failed request is
retried every ``retry_s``. :class:`LeaseKeeper` is that bookkeeping, without threads or I/O (time is
passed in, requests are returned to the caller to send); :class:`LeaseLoop` is the one thread that sends
them over NATS and hands the replies back, so no thread grows with the number of cameras or clients.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from robot_platform.frames.leases import decode_reply

LEASE_SUFFIX = "lease"
LEASE_REQUEST_TIMEOUT_S = 1.0
LEASE_IDLE_WAKE_S = 1.0
STOP_JOIN_TIMEOUT_S = 5.0

Reply = Callable[[Any, str], None]


class Requester(Protocol):
    """The NATS link's request: ``on_reply(result, reason)`` is called from its thread."""

    def request(self, subject: str, body: bytes, headers: dict[str, str], timeout: float, reply: Reply, /) -> None: ...


@dataclass(frozen=True)
class LeaseCall:
    """A request to send on ``lease_subject`` (msgpack ``body``); ``release`` tells which kind it is."""

    subject: str  # the frames subject
    lease_subject: str
    body: bytes
    release: bool


@dataclass
class _Lease:
    lease_id: str
    wanted: bool = True
    next_due: float = 0.0
    in_flight: bool = False
    granted: bool = False


@dataclass
class LeaseCounters:
    requests: int = 0
    granted: int = 0
    renewed: int = 0
    released: int = 0
    failures: int = 0


class LeaseKeeper:
    """One lease per wanted camera subject (see the module docstring). Thread-safe."""

    def __init__(self, ttl_s: float, retry_s: float = 1.0, id_prefix: str = "ws") -> None:
        if not ttl_s > 0 or not retry_s > 0:
            raise ValueError("ttl_s and retry_s must be > 0")
        self.ttl_s = ttl_s
        self.retry_s = retry_s
        self._prefix = "".join(c if c.isalnum() or c in "_-" else "_" for c in id_prefix)[:24] or "ws"
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()
        self.counters = LeaseCounters()

    def want(self, subject: str, now: float) -> None:
        """A first client watches ``subject``: take a lease now (or keep the one being released)."""
        with self._lock:
            lease = self._leases.get(subject)
            if lease is None:
                self._leases[subject] = _Lease(f"{self._prefix}-{uuid.uuid4().hex[:24]}", next_due=now)
            elif not lease.wanted:
                lease.wanted = True
                lease.next_due = now

    def unwant(self, subject: str, now: float) -> None:
        """The last client left ``subject``: release the lease now."""
        with self._lock:
            lease = self._leases.get(subject)
            if lease is not None and lease.wanted:
                lease.wanted = False
                lease.next_due = now

    def release_all(self, now: float) -> None:
        with self._lock:
            for lease in self._leases.values():
                lease.wanted = False
                lease.next_due = now

    def due(self, now: float) -> list[LeaseCall]:
        """Requests to send now (grants, renewals, releases); each is answered with :meth:`on_reply`."""
        calls = []
        with self._lock:
            for subject, lease in self._leases.items():
                if lease.in_flight or lease.next_due > now:
                    continue
                lease.in_flight = True
                if lease.wanted:
                    body = {"lease_id": lease.lease_id, "ttl_s": self.ttl_s}
                else:
                    body = {"lease_id": lease.lease_id, "release": True}
                calls.append(LeaseCall(subject, f"{subject}.{LEASE_SUFFIX}", msgpack.packb(body), not lease.wanted))
            self.counters.requests += len(calls)
        return calls

    def on_reply(self, call: LeaseCall, reply: dict[str, Any] | None, now: float) -> None:
        """The answer to ``call``: a lease reply map, or None when the request failed (timeout, no responder)."""
        with self._lock:
            lease = self._leases.get(call.subject)
            if lease is None:
                return
            lease.in_flight = False
            if call.release:
                self.counters.released += 1
                if lease.wanted:  # watched again while the release was on its way: lease again now
                    lease.next_due = now
                else:
                    del self._leases[call.subject]
                return
            ok = bool(reply and reply.get("ok"))
            if not ok:
                self.counters.failures += 1
                lease.next_due = now if not lease.wanted else now + self.retry_s
                return
            assert reply is not None
            if lease.granted:
                self.counters.renewed += 1
            else:
                self.counters.granted += 1
                lease.granted = True
            ttl = reply.get("ttl_s")
            ttl = float(ttl) if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl > 0 else self.ttl_s
            lease.next_due = now if not lease.wanted else now + min(ttl, self.ttl_s) / 3

    def next_due(self) -> float | None:
        """Earliest time a request is due (None: nothing to do until a reply or a want/unwant)."""
        with self._lock:
            return min((lease.next_due for lease in self._leases.values() if not lease.in_flight), default=None)

    def held(self) -> dict[str, str]:
        """Subjects with a lease wanted (and its id), for /healthz and tests."""
        with self._lock:
            return {s: lease.lease_id for s, lease in self._leases.items() if lease.wanted}


class LeaseLoop:
    """The thread sending a :class:`LeaseKeeper`'s requests; :meth:`poke` after a want/unwant."""

    def __init__(self, keeper: LeaseKeeper, nats: Requester, warn: Callable[[str], None]) -> None:
        self.keeper = keeper
        self._nats = nats
        self._warn = warn
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ws_agent-leases", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread, then send the releases of every lease (best effort: unreleased ones expire)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_JOIN_TIMEOUT_S)
        self.keeper.release_all(time.monotonic())
        self._send(time.monotonic())

    def _run(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            self._send(now)
            due = self.keeper.next_due()
            wait = LEASE_IDLE_WAKE_S if due is None else min(max(due - now, 0.0), LEASE_IDLE_WAKE_S)
            self._wake.wait(wait)
            self._wake.clear()

    def _send(self, now: float) -> None:
        for call in self.keeper.due(now):
            self._nats.request(call.lease_subject, call.body, {}, LEASE_REQUEST_TIMEOUT_S,
                               lambda result, reason, call=call: self._on_reply(call, result, reason))  # fmt: skip

    def _on_reply(self, call: LeaseCall, result: Any, reason: str) -> None:
        """NATS thread: the lease reply (or why there is none)."""
        reply = None
        if result is not None:
            try:
                reply = decode_reply(result[1])
            except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                reason = "lease reply is not a map"
        if reply is not None and not reply.get("ok"):
            reason = str(reply.get("message", "refused"))[:200]
        if reason and not call.release:
            self._warn(f"camera lease on {call.lease_subject} failed: {reason}; retrying")
        self.keeper.on_reply(call, reply, time.monotonic())
        self._wake.set()
