"""Capped, jittered reconnect backoff."""

from __future__ import annotations

import pytest

from robot_platform.messaging.backoff import Backoff


def test_grows_caps_and_resets() -> None:
    top = Backoff(0.1, 2.0, rand=lambda: 1.0)
    assert [round(top.next_delay(), 3) for _ in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    top.reset()
    assert top.next_delay() == 0.1


def test_jitter_stays_within_half_to_full() -> None:
    low = Backoff(0.1, 2.0, rand=lambda: 0.0)
    assert [round(low.next_delay(), 3) for _ in range(3)] == [0.05, 0.1, 0.2]
    real = Backoff(1.0, 8.0)
    for _ in range(50):
        assert 0.5 <= real.next_delay() <= 8.0


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(2, 1)
