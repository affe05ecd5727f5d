"""The frame publisher's logic without ROS: leased cameras -> latest frame -> budget -> JPEG -> publish.

Lifecycle: the ROS callback calls :meth:`FramePipeline.offer` (stores a reference in the camera's
single slot, never blocks); a worker calls :meth:`FramePipeline.step` whenever woken and at the time
it returns, which is where frames are converted, encoded and published. Lease requests arrive through
:meth:`handle_lease_request` (any thread). Time is passed in (monotonic seconds) everywhere.

Nothing is converted or encoded for a camera without a live lease; a frame that waited longer than
``max_age_s`` in the slot is dropped as stale instead of being sent late.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from robot_platform.frames.budget import (
    AdaptiveQuality,
    CameraBudget,
    LatestSlot,
    Level,
    Limits,
    RateEstimator,
    RateGate,
)
from robot_platform.frames.convert import FrameEncoder
from robot_platform.frames.errors import FramesError, LeaseRequestError
from robot_platform.frames.leases import LeaseTable, encode_reply, parse_request
from robot_platform.frames.meta import FrameMeta
from robot_platform.messaging import subjects
from robot_platform.messaging.envelope import stamp_of

IDLE_WAKE_S = 1.0  # longest sleep of the worker when nothing is due
LOG_EVERY_N_ERRORS = 50

Publish = Callable[[str, bytes, dict[str, str]], None]


@dataclass(frozen=True)
class CameraConfig:
    name: str  # subject token: robots.<id>.frames.<name>
    topic: str  # ROS topic of the Image / CompressedImage
    limits: Limits
    compressed: bool = False


@dataclass
class FrameCounters:
    received: int = 0
    published: int = 0
    bytes_published: int = 0
    dropped_replaced: int = 0  # a newer frame arrived before this one could go (latest wins)
    dropped_stale: int = 0
    dropped_unleased: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class CameraStream:
    """State of one camera: its slot, budget, quality controller, sequence and counters."""

    def __init__(self, config: CameraConfig, budget: CameraBudget, adapt: AdaptiveQuality, robot_id: str):
        self.config = config
        self.subject = subjects.frames(robot_id, config.name)
        self.lease_subject = f"{self.subject}.lease"
        self.slot: LatestSlot[tuple[Any, float]] = LatestSlot()
        self.budget = budget
        self.adapt = adapt
        self.input_rate = RateEstimator()
        self.seq = 0
        self.counters = FrameCounters()


class FramePipeline:
    """All cameras of one robot, sharing the robot's budget (see module doc)."""

    def __init__(
        self,
        robot_id: str,
        cameras: list[CameraConfig],
        robot_limits: Limits,
        leases: LeaseTable,
        publish: Publish,
        make_adapt: Callable[[], AdaptiveQuality],
        now: float,
        *,
        encoder: FrameEncoder | None = None,
        max_age_s: float = 0.5,
        wall_ns: Callable[[], int] = time.time_ns,
        log: logging.Logger | Any | None = None,
    ) -> None:
        subjects.check_robot_id(robot_id)
        if not cameras:
            raise ValueError("at least one camera is needed")
        self.robot_id = robot_id
        self.robot_gate = RateGate(robot_limits, now)
        self.leases = leases
        self._publish = publish
        self._encoder = encoder or FrameEncoder()
        self.max_age_s = max_age_s
        self._wall_ns = wall_ns
        self._log = log or logging.getLogger(__name__)
        self.origin = uuid.uuid4().hex
        self.streams: dict[str, CameraStream] = {}
        for cam in cameras:
            subjects.check_token(cam.name)
            if cam.name in self.streams:
                raise ValueError(f"camera name {cam.name!r} is used twice")
            budget = CameraBudget(cam.limits, self.robot_gate, now)
            self.streams[cam.name] = CameraStream(cam, budget, make_adapt(), robot_id)
        self.lease_errors = 0
        self._turn = 0

    # ------------------------------------------------------------------ ROS thread
    def offer(self, camera: str, msg: Any, now: float) -> None:
        """Keep ``msg`` as the camera's latest frame (replacing an unsent one). Cheap; never blocks."""
        stream = self.streams[camera]
        stream.counters.received += 1
        stream.input_rate.tick(now)
        if stream.slot.full:
            stream.counters.dropped_replaced += 1
        stream.slot.put((msg, now))

    # ------------------------------------------------------------------ NATS thread
    def handle_lease_request(self, camera: str, body: bytes, now: float) -> bytes:
        """Grant, renew or release a lease; returns the reply body (errors are replies too)."""
        json_format = True
        try:
            request = parse_request(camera, body)
            json_format = request.json_format
            if camera not in self.streams:
                raise LeaseRequestError(camera, f"no such camera; known: {', '.join(self.streams)}")
            stream = self.streams[camera]
            if request.release:
                self.leases.release(camera, request.lease_id)
                reply: dict[str, Any] = {"ok": True, "lease_id": request.lease_id, "released": True}
            else:
                lease = self.leases.grant(camera, request.lease_id, request.ttl_s, now)
                reply = {"ok": True, "lease_id": lease.lease_id, "ttl_s": round(lease.expires_at - now, 3)}
            reply.update(camera=camera, subject=stream.subject, viewers=self.leases.viewers(camera, now))
        except LeaseRequestError as exc:
            self.lease_errors += 1
            if self.lease_errors == 1 or self.lease_errors % LOG_EVERY_N_ERRORS == 0:
                self._log.warning(f"{exc} ({self.lease_errors} refused requests so far)")
            reply = {"ok": False, "error": exc.kind, "message": str(exc)}
        return encode_reply(reply, json_format)

    # ------------------------------------------------------------------ worker thread
    def wanted(self, now: float) -> set[str]:
        """Cameras that have a live lease (their ROS topics should be subscribed)."""
        return set(self.leases.active_cameras(now))

    def step(self, now: float, clock: Callable[[], float] | None = None) -> float:
        """Publish what is due; return seconds until the next call is useful (at most IDLE_WAKE_S).

        ``clock`` (optional) re-reads the time after each encode, so a slow encode of one camera is
        charged to the budgets at the right moment.
        """
        active = self.wanted(now)
        wake = IDLE_WAKE_S
        expiry = self.leases.next_expiry()
        if expiry is not None:
            wake = min(wake, max(0.0, expiry - now) + 0.001)
        names = list(self.streams)
        self._turn = (self._turn + 1) % len(names)  # rotate who goes first: the robot budget is shared
        for name in names[self._turn :] + names[: self._turn]:
            stream = self.streams[name]
            if name not in active:
                if stream.slot.clear():
                    stream.counters.dropped_unleased += 1
                continue
            if not stream.slot.full:
                continue
            wait = stream.budget.wait_time(now)
            if wait > 0:
                wake = min(wake, wait)
                continue
            item = stream.slot.take()
            if item is None:
                continue
            msg, received_at = item
            if now - received_at > self.max_age_s:
                stream.counters.dropped_stale += 1
                continue
            self._send(stream, msg, len(active), now)
            if clock is not None:
                now = clock()
        return wake

    def _send(self, stream: CameraStream, msg: Any, n_active: int, now: float) -> None:
        level: Level = stream.adapt.level
        try:
            frame = self._encoder.encode(
                msg, level.quality, level.scale, allow_passthrough=stream.adapt.index == 0
            )
        except FramesError as exc:
            errors = stream.counters.errors
            errors[exc.kind] = errors.get(exc.kind, 0) + 1
            total = sum(errors.values())
            if total == 1 or total % LOG_EVERY_N_ERRORS == 0:
                self._log.warning(f"camera {stream.config.name}: frame rejected: {exc} ({total} so far)")
            return
        stream.seq += 1
        meta = FrameMeta(
            robot_id=self.robot_id,
            camera=stream.config.name,
            topic=stream.config.topic,
            stamp=stamp_of(msg),
            seq=stream.seq,
            origin=self.origin,
            sent_ns=self._wall_ns(),
            msg_id=uuid.uuid4().hex,
            width=frame.width,
            height=frame.height,
            encoding=frame.source_encoding,
            quality=frame.quality,
            scale=frame.scale,
        )
        self._publish(stream.subject, frame.data, meta.headers())
        size = len(frame.data)
        stream.counters.published += 1
        stream.counters.bytes_published += size
        stream.budget.charge(size, now)
        target_fps, byte_budget = stream.budget.share(n_active, stream.input_rate.rate)
        stream.adapt.record(size, target_fps, byte_budget, now)

    def stats(self) -> dict[str, Any]:
        """Counters and current levels, for logs and the health subject."""
        out: dict[str, Any] = {
            "leases": {
                "granted": self.leases.granted,
                "renewed": self.leases.renewed,
                "released": self.leases.released,
                "expired": self.leases.expired,
                "refused": self.lease_errors,
            }
        }
        for name, s in self.streams.items():
            c = s.counters
            out[name] = {
                "received": c.received,
                "published": c.published,
                "bytes": c.bytes_published,
                "dropped_replaced": c.dropped_replaced,
                "dropped_stale": c.dropped_stale,
                "dropped_unleased": c.dropped_unleased,
                "errors": dict(c.errors),
                "quality": s.adapt.level.quality,
                "scale": s.adapt.level.scale,
                "input_fps": round(s.input_rate.rate, 2),
            }
        return out
