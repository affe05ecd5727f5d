"""A viewer of one camera over NATS (nats-py, asyncio): holds a lease and keeps only the newest frame.

Used by scripts, the system test and the benchmark; the console does the same through ws_agent.
Lifecycle: ``await start()`` subscribes to the frames subject, then asks for a lease and renews it every
``ttl_s / 3``; ``await latest()`` returns the newest frame not returned yet (older unread frames were
replaced, counted in ``replaced``): a slow viewer always shows a recent frame, never a backlog;
``await stop()`` releases the lease and unsubscribes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import nats.errors

from robot_platform.frames.leases import decode_reply
from robot_platform.frames.meta import FrameMeta
from robot_platform.messaging import inbox, subjects

REQUEST_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Frame:
    data: bytes
    meta: FrameMeta
    received_ns: int  # wall clock when the viewer got it

    @property
    def age_s(self) -> float:
        """Seconds from the source stamp to now (the stamp is the camera's, so clocks must agree)."""
        return (time.time_ns() - self.meta.stamp_ns) / 1e9 if self.meta.stamp_ns else 0.0


class FrameViewer:
    """Watches ``robots.<robot_id>.frames.<camera>`` on connection ``nc`` (see module doc)."""

    def __init__(self, nc: Any, robot_id: str, camera: str, ttl_s: float = 5.0) -> None:
        self._nc = nc
        self.subject = subjects.frames(robot_id, camera)
        self.lease_subject = f"{self.subject}.lease"
        self.ttl_s = ttl_s
        self.lease_id = ""
        self._latest: Frame | None = None
        self._new = asyncio.Event()
        self._sub: Any = None
        self._renew_task: asyncio.Task[None] | None = None
        self.received = 0
        self.replaced = 0
        self.bytes = 0
        self.renew_failures = 0

    async def start(self) -> dict[str, Any]:
        """Subscribe, then take a lease; returns the lease reply (raises if the robot refuses)."""
        self._sub = await self._nc.subscribe(self.subject, cb=self._on_frame)
        reply = await self._request({"ttl_s": self.ttl_s})
        if not reply.get("ok"):
            raise RuntimeError(f"lease on {self.lease_subject} refused: {reply.get('message')}")
        self.lease_id = reply["lease_id"]
        self._renew_task = asyncio.create_task(self._renew_loop())
        return reply

    async def latest(self, timeout: float) -> Frame | None:
        """The newest frame not returned before, waiting up to ``timeout`` s for one (None if none)."""
        if self._latest is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._new.wait(), timeout)
        frame, self._latest = self._latest, None
        self._new.clear()
        return frame

    async def stop(self) -> None:
        if self._renew_task is not None:
            self._renew_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renew_task
        if self.lease_id:
            with contextlib.suppress(TimeoutError, nats.errors.Error):
                await self._request({"lease_id": self.lease_id, "release": True})
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()

    async def _on_frame(self, msg: Any) -> None:
        try:
            meta = FrameMeta.from_headers(msg.headers)
        except ValueError:
            return  # not a frame (foreign publisher): ignore
        self.received += 1
        self.bytes += len(msg.data)
        if self._latest is not None:
            self.replaced += 1
        self._latest = Frame(msg.data, meta, time.time_ns())
        self._new.set()

    async def _request(self, body: dict[str, Any]) -> dict[str, Any]:
        msg = await inbox.request(self._nc, self.lease_subject, json.dumps(body).encode(), timeout=REQUEST_TIMEOUT_S)
        return decode_reply(msg.data)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                reply = await self._request({"lease_id": self.lease_id, "ttl_s": self.ttl_s})
                if not reply.get("ok"):
                    self.renew_failures += 1
            except (TimeoutError, nats.errors.Error):
                self.renew_failures += 1  # robot unreachable: keep trying, the lease id stays valid
