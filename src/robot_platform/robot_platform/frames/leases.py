"""Viewer leases: frames of a camera flow only while at least one lease on it is alive.

A viewer asks for a stream with a request on ``robots.<id>.frames.<camera>.lease`` and renews it before
its ttl runs out (about every ttl/3); a release ends it at once, a crashed viewer's lease simply
expires. Requests and replies are small maps, msgpack or JSON (a browser can send JSON through
ws_agent); the reply uses the request's format::

    request  {"lease_id": "<id, optional>", "ttl_s": 10.0, "release": false}
    reply    {"ok": true, "lease_id": "...", "ttl_s": 10.0, "camera": "front",
              "subject": "robots.r1.frames.front", "viewers": 1}
             {"ok": false, "error": "bad_lease_request", "message": "..."}

The table is plain Python, thread-safe (requests arrive on the NATS thread, the frame worker asks
``active``), with time passed in.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import msgpack

from robot_platform.frames.errors import LeaseRequestError

LEASE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_REQUEST_BYTES = 1024


@dataclass
class Lease:
    lease_id: str
    camera: str
    expires_at: float


@dataclass(frozen=True)
class LeaseRequest:
    lease_id: str  # '' = the server makes one
    ttl_s: float  # 0 = the default ttl
    release: bool
    json_format: bool  # reply in JSON (else msgpack)


class LeaseTable:
    """Live leases per camera. ``ttl_s`` is granted when a request names none; ``max_ttl_s`` caps it."""

    def __init__(self, cameras: list[str], ttl_s: float, max_ttl_s: float, max_leases_per_camera: int = 32):
        if not 0 < ttl_s <= max_ttl_s:
            raise ValueError("need 0 < ttl_s <= max_ttl_s")
        if max_leases_per_camera < 1:
            raise ValueError("max_leases_per_camera must be >= 1")
        self.ttl_s = ttl_s
        self.max_ttl_s = max_ttl_s
        self.max_leases = max_leases_per_camera
        self._leases: dict[str, dict[str, Lease]] = {c: {} for c in cameras}
        self._lock = threading.Lock()
        self.granted = 0
        self.renewed = 0
        self.released = 0
        self.expired = 0
        self.refused = 0

    @property
    def cameras(self) -> list[str]:
        return list(self._leases)

    def grant(self, camera: str, lease_id: str, ttl_s: float, now: float) -> Lease:
        """Create or renew a lease (``lease_id`` '' = new id); LeaseRequestError when refused."""
        with self._lock:
            leases = self._leases.get(camera)
            if leases is None:
                self.refused += 1
                raise LeaseRequestError(camera, f"no such camera; known: {', '.join(self._leases)}")
            if lease_id and not LEASE_ID_RE.fullmatch(lease_id):
                self.refused += 1
                raise LeaseRequestError(camera, "lease_id must be 1-64 of [A-Za-z0-9_-]")
            if ttl_s < 0 or ttl_s != ttl_s:  # negative or NaN
                self.refused += 1
                raise LeaseRequestError(camera, "ttl_s must be a positive number of seconds")
            self._expire_locked(now)
            granted_ttl = min(ttl_s or self.ttl_s, self.max_ttl_s)
            lease = leases.get(lease_id) if lease_id else None
            if lease is not None:
                lease.expires_at = now + granted_ttl
                self.renewed += 1
                return Lease(lease.lease_id, camera, lease.expires_at)
            if len(leases) >= self.max_leases:
                self.refused += 1
                raise LeaseRequestError(camera, f"{self.max_leases} viewers already; try again later")
            lease = Lease(lease_id or uuid.uuid4().hex, camera, now + granted_ttl)
            leases[lease.lease_id] = lease
            self.granted += 1
            return Lease(lease.lease_id, camera, lease.expires_at)

    def release(self, camera: str, lease_id: str) -> bool:
        """End a lease now; False if it did not exist (already expired or never granted)."""
        with self._lock:
            leases = self._leases.get(camera, {})
            if leases.pop(lease_id, None) is None:
                return False
            self.released += 1
            return True

    def viewers(self, camera: str, now: float) -> int:
        with self._lock:
            self._expire_locked(now)
            return len(self._leases.get(camera, {}))

    def active(self, camera: str, now: float) -> bool:
        return self.viewers(camera, now) > 0

    def active_cameras(self, now: float) -> list[str]:
        with self._lock:
            self._expire_locked(now)
            return [c for c, leases in self._leases.items() if leases]

    def next_expiry(self) -> float | None:
        """Earliest expiry time of any lease (the owner wakes then to stop a stream), None if none."""
        with self._lock:
            times = [lease.expires_at for leases in self._leases.values() for lease in leases.values()]
        return min(times, default=None)

    def _expire_locked(self, now: float) -> None:
        for leases in self._leases.values():
            dead = [lid for lid, lease in leases.items() if lease.expires_at <= now]
            for lid in dead:
                del leases[lid]
            self.expired += len(dead)


def parse_request(camera: str, body: bytes) -> LeaseRequest:
    """Decode a lease request (empty, JSON or msgpack map); LeaseRequestError if malformed."""
    if len(body) > MAX_REQUEST_BYTES:
        raise LeaseRequestError(camera, f"request larger than {MAX_REQUEST_BYTES} bytes")
    stripped = body.strip()
    if not stripped:
        return LeaseRequest("", 0.0, False, True)
    is_json = stripped[:1] == b"{"
    try:
        data: Any = json.loads(stripped) if is_json else msgpack.unpackb(body, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise LeaseRequestError(
            camera, f"body must be a JSON or msgpack map ({type(exc).__name__})"
        ) from None
    if not isinstance(data, dict):
        raise LeaseRequestError(camera, "body must be a map")
    unknown = set(data) - {"lease_id", "ttl_s", "release"}
    if unknown:
        raise LeaseRequestError(camera, f"unknown keys {sorted(map(str, unknown))}")
    lease_id = data.get("lease_id", "")
    ttl = data.get("ttl_s", 0.0)
    release = data.get("release", False)
    if not isinstance(lease_id, str):
        raise LeaseRequestError(camera, "lease_id must be a string")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise LeaseRequestError(camera, "ttl_s must be a number")
    if not isinstance(release, bool):
        raise LeaseRequestError(camera, "release must be true or false")
    if release and not lease_id:
        raise LeaseRequestError(camera, "release needs the lease_id")
    return LeaseRequest(lease_id, float(ttl), release, is_json)


def encode_reply(reply: dict[str, Any], json_format: bool) -> bytes:
    if json_format:
        return json.dumps(reply, separators=(",", ":")).encode()
    return msgpack.packb(reply, use_bin_type=True)


def decode_reply(body: bytes) -> dict[str, Any]:
    """Reply map of either format (for viewers)."""
    data = json.loads(body) if body[:1] == b"{" else msgpack.unpackb(body, raw=False)
    if not isinstance(data, dict):
        raise ValueError("lease reply is not a map")
    return data
