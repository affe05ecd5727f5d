"""Fault state machine: debounce, hysteresis, no flapping, events with stable code and severity."""

from __future__ import annotations

import itertools
import random

import pytest

from robot_platform.health.fault_state import (
    SEVERITY_CRITICAL,
    SEVERITY_ERROR,
    SEVERITY_WARN,
    FaultSpec,
    FaultState,
    FaultStateMachine,
)


def machine(debounce: float = 1.0, clear: float = 2.0) -> FaultStateMachine:
    ids = (f"id{i}" for i in itertools.count(1))
    return FaultStateMachine(FaultSpec("TOPIC_SILENT.scan", SEVERITY_ERROR, debounce, clear), new_id=lambda: next(ids))


def run(m: FaultStateMachine, samples: list[tuple[float, bool]]) -> list:
    return [e for t, faulty in samples for e in m.update(t, faulty)]


def test_debounce_raises_only_after_the_condition_held_long_enough() -> None:
    m = machine(debounce=1.0)
    events = run(m, [(0.0, True), (0.5, True), (0.9, True)])
    assert m.state is FaultState.PENDING
    assert [e.state for e in events] == [FaultState.PENDING]
    events = m.update(1.0, True)
    assert m.state is FaultState.ACTIVE
    assert len(events) == 1 and events[0].raises
    assert events[0].code == "TOPIC_SILENT.scan" and events[0].severity == SEVERITY_ERROR
    assert events[0].alert_id == "id1" and events[0].at == 1.0


def test_short_glitch_is_cancelled_without_alert() -> None:
    m = machine(debounce=1.0)
    events = run(m, [(0.0, True), (0.5, True), (0.6, False), (5.0, False)])
    assert m.state is FaultState.OK
    assert [(e.previous, e.state) for e in events] == [
        (FaultState.OK, FaultState.PENDING),
        (FaultState.PENDING, FaultState.OK),
    ]
    assert not any(e.alert_relevant for e in events)
    assert m.raise_count == 0


def test_hysteresis_relapse_while_clearing_keeps_the_same_alert() -> None:
    m = machine(debounce=0.0, clear=2.0)
    raised = m.update(0.0, True)
    assert [e.state for e in raised] == [FaultState.PENDING, FaultState.ACTIVE]
    assert m.update(1.0, False)[0].state is FaultState.CLEARING
    relapse = m.update(2.5, True)
    assert [(e.previous, e.state) for e in relapse] == [(FaultState.CLEARING, FaultState.ACTIVE)]
    assert not any(e.raises for e in relapse) and relapse[0].alert_id == "id1"
    assert m.update(3.0, False)[0].state is FaultState.CLEARING
    assert m.update(4.9, False) == []
    cleared = m.update(5.0, False)
    assert len(cleared) == 1 and cleared[0].clears and cleared[0].alert_id == "id1"
    assert m.alert_id == "" and m.state is FaultState.OK and m.raise_count == 1


def test_zero_clear_time_clears_at_once() -> None:
    m = machine(debounce=0.0, clear=0.0)
    m.update(0.0, True)
    events = m.update(0.1, False)
    assert [e.state for e in events] == [FaultState.CLEARING, FaultState.OK]
    assert events[-1].clears


def test_square_wave_around_threshold_raises_one_alert() -> None:
    """A signal faulty 70% of each 1 s period for a minute: one raise, no clear while it oscillates."""
    m = machine(debounce=0.5, clear=1.0)
    events = []
    for i in range(600):
        t = i * 0.1
        events += m.update(t, (t % 1.0) < 0.7)
    assert sum(e.raises for e in events) == 1
    assert sum(e.clears for e in events) == 0
    assert m.state.faulted


def test_random_noise_never_flaps() -> None:
    """Bursty random noise: every alert lasts at least clear_s after its last faulty sample, and alerts
    never come closer together than the debounce allows."""
    rng = random.Random(7)
    m = machine(debounce=0.3, clear=1.0)
    raises, clears = [], []
    faulty = False
    for i in range(3000):
        t = i * 0.05
        if rng.random() < 0.1:
            faulty = not faulty
        for e in m.update(t, faulty):
            (raises if e.raises else clears if e.clears else []).append(e.at)
    assert len(raises) < 40  # 3000 samples with ~300 toggles
    for r, c in zip(raises, clears, strict=False):
        assert c - r >= 1.0
    for c, r in zip(clears, raises[1:], strict=False):
        assert r - c >= 0.3


def test_severity_change_while_active_is_an_event() -> None:
    m = machine(debounce=0.0)
    m.update(0.0, True, severity=SEVERITY_WARN)
    events = m.update(0.1, True, severity=SEVERITY_CRITICAL, message="battery critical")
    assert len(events) == 1 and events[0].escalates and events[0].severity == SEVERITY_CRITICAL
    assert events[0].message == "battery critical"
    assert m.update(0.2, True, severity=SEVERITY_CRITICAL) == []


def test_clock_stepping_back_counts_as_no_time() -> None:
    m = machine(debounce=1.0)
    m.update(10.0, True)
    assert m.update(5.0, True) == [] and m.state is FaultState.PENDING
    assert m.update(11.0, True)[0].raises


def test_reset_clears_a_raised_fault() -> None:
    m = machine(debounce=0.0)
    m.update(0.0, True)
    events = m.reset(1.0)
    assert len(events) == 1 and events[0].clears and m.state is FaultState.OK
    assert m.reset(2.0) == []


@pytest.mark.parametrize("kwargs", [{"code": ""}, {"code": "X", "severity": 4}, {"code": "X", "debounce_s": -1}])
def test_invalid_spec_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FaultSpec(**kwargs)
