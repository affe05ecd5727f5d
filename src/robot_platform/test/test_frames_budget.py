"""frames.budget: camera/robot gates, latest slot, adaptive quality with hysteresis (buckets: common)."""

from __future__ import annotations

import pytest

from robot_platform.frames.budget import (
    AdaptiveQuality,
    CameraBudget,
    LatestSlot,
    Level,
    Limits,
    RateEstimator,
    RateGate,
    build_ladder,
)


def run_source(budget: CameraBudget, fps: float, seconds: float, size: int, t0: float = 0.0) -> list[float]:
    """Frames offered at ``fps`` for ``seconds``; returns the send times the budget admitted."""
    sent = []
    n = int(fps * seconds)
    for i in range(n):
        now = t0 + i / fps + (0.003 if i % 2 else -0.003)  # timing jitter
        if budget.wait_time(now) == 0:
            budget.charge(size, now)
            sent.append(now)
    return sent


def test_fps_limit_halves_a_jittery_30hz_source_to_15():
    robot = RateGate(Limits(), 0.0)
    sent = run_source(CameraBudget(Limits(max_fps=15.0), robot, 0.0), 30.0, 10.0, 1000)
    assert 148 <= len(sent) <= 152  # not 10 fps (strict intervals), not above 15


def test_bytes_limit_bounds_the_rate():
    robot = RateGate(Limits(), 0.0)
    budget = CameraBudget(Limits(max_bytes_per_s=100_000), robot, 0.0)
    sent = run_source(budget, 30.0, 10.0, 20_000)
    # 100 kB/s over 10 s, + burst (50 kB) + one frame
    assert len(sent) * 20_000 <= 100_000 * 10 + 50_000 + 20_000
    assert len(sent) >= 45


def test_robot_gate_is_shared_by_cameras():
    robot = RateGate(Limits(max_fps=10.0), 0.0)
    a = CameraBudget(Limits(max_fps=30.0), robot, 0.0)
    b = CameraBudget(Limits(max_fps=30.0), robot, 0.0)
    sent = 0
    for i in range(300):  # 10 s of 30 Hz on both cameras
        now = i / 30.0
        for cam in (a, b):
            if cam.wait_time(now) == 0:
                cam.charge(100, now)
                sent += 1
    assert 98 <= sent <= 102


def test_share_splits_robot_limits_and_respects_source_rate():
    robot = RateGate(Limits(max_fps=20.0, max_bytes_per_s=1_000_000), 0.0)
    cam = CameraBudget(Limits(max_fps=15.0, max_bytes_per_s=800_000), robot, 0.0)
    assert cam.share(1, 30.0) == (15.0, 800_000)
    assert cam.share(2, 30.0) == (10.0, 500_000)
    assert cam.share(1, 5.0) == (5.0, 800_000)
    free = CameraBudget(Limits(), RateGate(Limits(), 0.0), 0.0)
    assert free.share(1, 30.0) == (30.0, 0.0)


def test_latest_slot_replaces_and_counts():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.take() is None
    slot.put(1)
    slot.put(2)
    slot.put(3)
    assert slot.replaced == 2 and slot.full
    assert slot.take() == 3 and not slot.full
    assert slot.take() is None
    slot.put(4)
    assert slot.clear() and not slot.clear()


def test_rate_estimator():
    est = RateEstimator()
    assert est.rate == 0
    for i in range(50):
        est.tick(i / 30.0)
    assert est.rate == pytest.approx(30.0, rel=0.01)


def test_ladder_is_quality_then_scale():
    ladder = build_ladder(80, 40, 0.25, quality_step=20)
    assert ladder == [Level(80, 1.0), Level(60, 1.0), Level(40, 1.0), Level(40, 0.5), Level(40, 0.25)]
    assert build_ladder(50, 50, 1.0) == [Level(50, 1.0)]
    with pytest.raises(ValueError):
        build_ladder(40, 80, 0.5)
    with pytest.raises(ValueError):
        build_ladder(80, 40, 0.0)


# frame size (bytes) per level of the ladder below, roughly what JPEG does
SIZES = {Level(80, 1.0): 40_000, Level(60, 1.0): 30_000, Level(40, 1.0): 22_000, Level(40, 0.5): 8_000}


def simulate(ctrl: AdaptiveQuality, budget_fn, seconds: float, fps: float = 15.0, t0: float = 0.0):
    levels = []
    for i in range(int(seconds * fps)):
        now = t0 + i / fps
        level = ctrl.record(SIZES[ctrl.level], fps, budget_fn(now), now)
        levels.append(level)
    return levels


def test_adaptive_steps_down_when_over_budget_and_back_up_with_room():
    ctrl = AdaptiveQuality(build_ladder(80, 40, 0.5, quality_step=20), down_after_s=0.5, up_after_s=2.0)
    # 15 fps x 30 kB = 450 kB/s fits a 500 kB/s budget; 40 kB does not
    simulate(ctrl, lambda now: 500_000, 5.0)
    assert ctrl.level == Level(60, 1.0)
    assert ctrl.steps_down == 1
    # a tight budget: only half resolution fits (8 kB x 15 = 120 kB/s)
    simulate(ctrl, lambda now: 150_000, 5.0, t0=5.0)
    assert ctrl.level == Level(40, 0.5)
    # room again: climbs back, one level per up_after_s, to the best level that fits with headroom
    simulate(ctrl, lambda now: 2_000_000, 10.0, t0=10.0)
    assert ctrl.level == Level(80, 1.0)


def test_adaptive_does_not_flap_at_the_boundary():
    ctrl = AdaptiveQuality(build_ladder(80, 40, 0.5, quality_step=20), down_after_s=0.5, up_after_s=2.0)
    # 500 kB/s: level 60 needs 450 kB/s; level 80 needs 600: above budget, and above headroom
    levels = simulate(ctrl, lambda now: 500_000, 30.0)
    assert ctrl.steps_down == 1 and ctrl.steps_up == 0
    assert set(levels[30:]) == {Level(60, 1.0)}


def test_adaptive_needs_persistent_overload():
    ctrl = AdaptiveQuality(build_ladder(80, 40, 0.5, quality_step=20), down_after_s=0.5, up_after_s=2.0)
    # over budget only for 0.2 s at a time
    simulate(ctrl, lambda now: 100_000 if (now % 2.0) < 0.2 else 10_000_000, 10.0)
    assert ctrl.steps_down == 0 and ctrl.level == Level(80, 1.0)


def test_adaptive_unlimited_budget_goes_to_best_level():
    ctrl = AdaptiveQuality(build_ladder(80, 40, 0.5, quality_step=20))
    simulate(ctrl, lambda now: 50_000, 5.0)
    assert ctrl.index > 0
    simulate(ctrl, lambda now: 0.0, 0.2, t0=5.0)
    assert ctrl.index == 0


@pytest.mark.parametrize(("limit", "expected"), [(20.0, 20.0), (10.0, 10.0), (30.0, 30.0), (25.0, 25.0)])
def test_fps_limit_that_does_not_divide_the_source_rate(limit, expected):
    robot = RateGate(Limits(), 0.0)
    sent = run_source(CameraBudget(Limits(max_fps=limit), robot, 0.0), 30.0, 10.0, 1000)
    assert expected * 10 - 2 <= len(sent) <= expected * 10 + 2
