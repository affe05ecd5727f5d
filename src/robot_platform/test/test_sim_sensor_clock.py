"""The simulator's sensor schedule (sim/sensor_clock.py): rates kept, no burst after a stall, and a
publish error ends nothing but that call."""

from __future__ import annotations

import threading
import time

import pytest

from robot_platform.sim.sensor_clock import SensorClock, SensorSchedule


def test_each_sensor_is_due_at_its_own_rate() -> None:
    schedule = SensorSchedule({"imu": 0.02, "odom": 0.05, "battery": 1.0}, now=0.0)
    counts = {"imu": 0, "odom": 0, "battery": 0}
    while schedule.next_due() <= 10.0 + 1e-9:  # a wake-up each time the earliest sensor is due, for 10 s
        for sensor in schedule.take_due(schedule.next_due()):
            counts[sensor] += 1
    assert counts == {"imu": 500, "odom": 200, "battery": 10}


def test_a_stalled_thread_resumes_at_the_rate_without_a_burst() -> None:
    schedule = SensorSchedule({"imu": 0.02}, now=0.0)
    assert schedule.take_due(5.0) == ["imu"]  # 5 s late: one message, not 250
    assert schedule.take_due(5.0) == []
    assert schedule.next_due() == pytest.approx(5.02)


def test_periods_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        SensorSchedule({"imu": 0.0}, now=0.0)


def test_the_clock_publishes_reports_errors_and_stops() -> None:
    published: list[str] = []
    errors: list[tuple[str, str]] = []
    two = threading.Event()

    def publish(sensor: str) -> None:
        if sensor == "scan":
            raise RuntimeError("bad scan")
        published.append(sensor)
        if published.count("odom") >= 2:
            two.set()

    clock = SensorClock({"odom": 0.01, "scan": 0.01}, publish, lambda s, e: errors.append((s, str(e))))
    clock.start()
    assert two.wait(5.0)
    clock.stop()
    n = len(published)
    time.sleep(0.05)
    assert len(published) == n  # stopped
    assert ("scan", "bad scan") in errors and "odom" in published
