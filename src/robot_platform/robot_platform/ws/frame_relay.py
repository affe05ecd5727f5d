"""Camera frames to browsers: the binary ``frame`` message, and the agent's one lease per watched camera.

Frames travel on ``robots.<id>.frames.<camera>`` as a JPEG body with the headers of
:mod:`robot_platform.frames.meta` (not the bridge's msgpack envelope). A client subscribes to
``/robots/<id>/frames/<camera>`` (robot mode: also ``/frames/<camera>``) like to any topic and gets, per
frame, ONE binary WebSocket message, whatever ``compression`` it asked for::

    msgpack map {
      "op": "frame",
      "topic": "/robots/r1/frames/front",         # the name the client subscribed to
      "meta": {"robot": "r1", "camera": "front", "source_topic": "/camera/image_raw",
               "format": "jpeg", "width": 320, "height": 240, "encoding": "rgb8", "quality": 80,
               "scale": 1.0, "seq": 42, "stamp": "1700000000.000000123",
               "stamp_ms": 1700000000000.0,     # camera stamp, ms since the epoch: age = Date.now() - stamp_ms
               "sent_ms": 1700000000012.5},     # when frame_publisher sent it
      "data": <bin: the JPEG bytes>              # e.g. new Blob([data], {type: "image/jpeg"})
    }

Each client has one latest-frame slot per camera (a new frame replaces an unsent one, counted as
``dropped_queue``): a slow client always gets a recent frame, never a backlog. ``throttle_rate`` of the
subscribe still spaces frames (e.g. 500 ms for a 2 fps thumbnail).

Leases (frames/leases.py): frame_publisher sends a camera's frames only while a lease on it is alive.
While at least one client of this agent watches a camera, the agent holds exactly ONE lease on it, with
its own lease id, renewed every ttl/3, released when the last client unsubscribes or disconnects (and
on shutdown); a failed request is retried every ``retry_s``. :class:`LeaseKeeper` is that bookkeeping,
without threads or I/O: time is passed in, requests are returned to the caller to send.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

import msgpack

from robot_platform.frames.meta import FrameMeta

from .outgoing import Frame, Outgoing

FRAME_KIND = "frames"
LEASE_SUFFIX = "lease"


def is_frame_subject(subject: str) -> bool:
    """True for a concrete camera subject ``robots.<id>.frames.<camera>`` (not its ``.lease`` subject)."""
    parts = subject.split(".")
    return len(parts) == 4 and parts[0] == "robots" and parts[2] == FRAME_KIND and "*" not in parts


def meta_dict(meta: FrameMeta) -> dict[str, Any]:
    """What a browser needs of a frame's headers (times in ms since the epoch: JS numbers, no BigInt)."""
    return {
        "robot": meta.robot_id,
        "camera": meta.camera,
        "source_topic": meta.topic,
        "format": "jpeg",
        "width": meta.width,
        "height": meta.height,
        "encoding": meta.encoding,
        "quality": meta.quality,
        "scale": meta.scale,
        "seq": meta.seq,
        "stamp": meta.stamp,
        "stamp_ms": meta.stamp_ns / 1e6,
        "sent_ms": meta.sent_ns / 1e6,
    }


class FrameOutgoing(Outgoing):
    """One camera frame shared by every client watching it; the binary message is built once per topic."""

    __slots__ = ("meta",)

    def __init__(self, subject: str, jpeg: bytes, meta: FrameMeta) -> None:
        super().__init__(subject, "", jpeg, meta.robot_id)
        self.meta = meta

    def _encode(self, topic: str, compression: str) -> Frame:
        return encode_frame(topic, self.meta, self.body)


def encode_frame(topic: str, meta: FrameMeta, jpeg: bytes) -> bytes:
    return msgpack.packb({"op": "frame", "topic": topic, "meta": meta_dict(meta), "data": jpeg}, use_bin_type=True)


# ---------------------------------------------------------------------------------------- leases
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
