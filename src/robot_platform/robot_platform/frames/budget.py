"""Frame budgets: token buckets for frames/s and bytes/s, latest-frame-wins slot, adaptive quality.

Everything here takes the time as an argument (monotonic seconds), so it is tested without clocks.

- :class:`~robot_platform.common.rate_limit.TokenBucket` admits work while it holds tokens and lets a
  charge take it into debt: a JPEG's size is only known after encoding, so a frame is admitted when the
  bytes bucket is not in debt and its real size is charged afterwards. Over any window ``T`` at most
  ``rate*T + burst + one frame`` passes, and a budget smaller than one frame still gets a frame now and
  then instead of none.
- The frame-rate bucket holds 1.5 frames and admits from ``1 - FPS_TOLERANCE`` tokens, so a 30 Hz source
  limited to 15 fps gets 15 fps despite timing jitter (a strict 66.7 ms gap would skip to 10 fps), and
  limited to 20 fps gets 20 (two frames of three; a one-frame bucket loses the fractions and gives 15),
  while the long-run rate stays bounded by ``max_fps`` (plus 1.5 frames).
- :class:`LatestSlot`: one slot per camera; a new frame replaces an unsent one (counted). Never a queue.
- :class:`AdaptiveQuality` walks a ladder of (quality, scale) levels, ordered so each step down makes
  frames smaller: quality first, then resolution. It steps down when the bytes a camera needs at its
  target rate exceed its budget for ``down_after_s``, and back up when the next level up is estimated
  to fit in ``headroom`` of the budget for ``up_after_s`` (hysteresis: no flapping at the boundary).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

from robot_platform.common.rate_limit import TokenBucket

T = TypeVar("T")

FPS_TOLERANCE = 0.25  # fraction of a frame's token a frame may borrow (jitter)
FPS_BUCKET_FRAMES = 1.5  # frames bucket capacity (keeps the fractions of non-divisor rates)
BYTES_BURST_S = 0.5  # bytes bucket capacity, in seconds of budget
SIZE_EWMA_ALPHA = 0.3
RATE_EWMA_ALPHA = 0.2
UP_GROWTH_GUESS = 1.3  # assumed size ratio of the next level up when it was never measured


@dataclass(frozen=True)
class Limits:
    """Maximum frames/s and bytes/s of a camera or a robot; 0 = no limit."""

    max_fps: float = 0.0
    max_bytes_per_s: float = 0.0

    def __post_init__(self) -> None:
        if self.max_fps < 0 or self.max_bytes_per_s < 0:
            raise ValueError("limits must be >= 0 (0 = no limit)")


class RateGate:
    """A frames/s bucket and a bytes/s bucket for one scope (a camera, or the whole robot)."""

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits
        self.frames = TokenBucket(limits.max_fps, FPS_BUCKET_FRAMES, now)
        self.bytes = TokenBucket(limits.max_bytes_per_s, limits.max_bytes_per_s * BYTES_BURST_S, now)

    def wait_time(self, now: float) -> float:
        return max(self.frames.wait_time(now, 1.0 - FPS_TOLERANCE), self.bytes.wait_time(now, 0.0))

    def charge(self, nbytes: int, now: float) -> None:
        self.frames.charge(1.0, now)
        self.bytes.charge(float(nbytes), now)


class CameraBudget:
    """A camera's own gate plus the robot's shared gate: a frame goes when both admit it."""

    def __init__(self, camera: Limits, robot: RateGate, now: float) -> None:
        self.own = RateGate(camera, now)
        self.robot = robot

    def wait_time(self, now: float) -> float:
        return max(self.own.wait_time(now), self.robot.wait_time(now))

    def charge(self, nbytes: int, now: float) -> None:
        self.own.charge(nbytes, now)
        self.robot.charge(nbytes, now)

    def share(self, active_cameras: int, input_fps: float) -> tuple[float, float]:
        """(target fps, bytes/s budget) of this camera with the robot's limits split among the active ones.

        0 as a budget means unlimited; the target fps is never above what the source delivers.
        """
        n = max(1, active_cameras)
        fps_caps = [c for c in (self.own.limits.max_fps, self.robot.limits.max_fps / n) if c > 0]
        byte_caps = [
            c for c in (self.own.limits.max_bytes_per_s, self.robot.limits.max_bytes_per_s / n) if c > 0
        ]
        target = min([*fps_caps, input_fps]) if input_fps > 0 else min(fps_caps, default=0.0)
        return target, min(byte_caps, default=0.0)


class RateEstimator:
    """EWMA of the interval between events -> events/s (0 until two events were seen)."""

    def __init__(self) -> None:
        self._last: float | None = None
        self._interval = 0.0

    def tick(self, now: float) -> None:
        if self._last is not None and now > self._last:
            gap = now - self._last
            self._interval = (
                gap if self._interval == 0.0 else self._interval + RATE_EWMA_ALPHA * (gap - self._interval)
            )
        self._last = now

    @property
    def rate(self) -> float:
        return 1.0 / self._interval if self._interval > 0 else 0.0


class LatestSlot(Generic[T]):
    """One slot, thread-safe: ``put`` replaces what was not taken yet (counted in ``replaced``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._item: T | None = None
        self._full = False
        self.replaced = 0
        self.put_count = 0

    def put(self, item: T) -> None:
        with self._lock:
            if self._full:
                self.replaced += 1
            self._item = item
            self._full = True
            self.put_count += 1

    def take(self) -> T | None:
        with self._lock:
            item, self._item, self._full = self._item, None, False
            return item

    def clear(self) -> bool:
        """Drop what is held; True if something was (the caller counts why)."""
        with self._lock:
            had = self._full
            self._item, self._full = None, False
            return had

    @property
    def full(self) -> bool:
        return self._full


@dataclass(frozen=True)
class Level:
    quality: int
    scale: float


def build_ladder(quality_max: int, quality_min: int, scale_min: float, quality_step: int = 10) -> list[Level]:
    """Levels from best to smallest: quality steps down to ``quality_min`` at full size, then smaller sizes.

    Sizes are 1/2, 1/4, 1/8 of the source, not below ``scale_min``: the cheap box ``reduce`` (a 3/4
    resize measured dearer than encoding the full size).
    """
    if not 1 <= quality_min <= quality_max:
        raise ValueError("need 1 <= quality_min <= quality_max")
    if not 0 < scale_min <= 1:
        raise ValueError("scale_min must be in (0, 1]")
    if quality_step < 1:
        raise ValueError("quality_step must be >= 1")
    qualities = [*range(quality_max, quality_min, -quality_step), quality_min]
    levels = [Level(q, 1.0) for q in qualities]
    for scale in (0.5, 0.25, 0.125):
        if scale >= scale_min - 1e-9:
            levels.append(Level(quality_min, scale))
    return levels


class AdaptiveQuality:
    """Chooses the ladder level of one camera from measured frame sizes (see module doc)."""

    def __init__(
        self,
        ladder: list[Level],
        *,
        down_after_s: float = 0.5,
        up_after_s: float = 2.0,
        headroom: float = 0.75,
    ) -> None:
        if not ladder:
            raise ValueError("ladder must not be empty")
        if not 0 < headroom <= 1:
            raise ValueError("headroom must be in (0, 1]")
        self.ladder = ladder
        self.index = 0
        self.down_after_s = down_after_s
        self.up_after_s = up_after_s
        self.headroom = headroom
        self._sizes: dict[int, float] = {}  # EWMA of frame bytes per level index
        self._over_since: float | None = None
        self._room_since: float | None = None
        self.steps_down = 0
        self.steps_up = 0

    @property
    def level(self) -> Level:
        return self.ladder[self.index]

    def estimated_size(self, index: int) -> float | None:
        return self._sizes.get(index)

    def record(self, nbytes: int, target_fps: float, byte_budget: float, now: float) -> Level:
        """Account one sent frame at the current level; maybe change level; return the level to use next."""
        old = self._sizes.get(self.index)
        size = float(nbytes) if old is None else old + SIZE_EWMA_ALPHA * (nbytes - old)
        self._sizes[self.index] = size
        if byte_budget <= 0 or target_fps <= 0:
            self._over_since = self._room_since = None
            if self.index > 0:  # no byte limit: best level
                self._change(-self.index)
            return self.level
        need = size * target_fps
        if need > byte_budget:
            self._room_since = None
            self._over_since = now if self._over_since is None else self._over_since
            if now - self._over_since >= self.down_after_s and self.index < len(self.ladder) - 1:
                self._change(+1)
            return self.level
        self._over_since = None
        if self.index == 0:
            self._room_since = None
            return self.level
        up = self._sizes.get(self.index - 1, size * UP_GROWTH_GUESS)
        if up * target_fps <= byte_budget * self.headroom:
            self._room_since = now if self._room_since is None else self._room_since
            if now - self._room_since >= self.up_after_s:
                self._change(-1)
        else:
            self._room_since = None
        return self.level

    def _change(self, delta: int) -> None:
        self.index += delta
        if delta > 0:
            self.steps_down += 1
        else:
            self.steps_up += 1
        self._over_since = self._room_since = None
