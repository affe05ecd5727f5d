"""Keep-latest rate limiter, driven by explicit times."""

from __future__ import annotations

from robot_platform.bridge.rate_limit import KeepLatestLimiter


def test_unlimited_passes_everything() -> None:
    lim: KeepLatestLimiter[int] = KeepLatestLimiter(0)
    assert [lim.offer(i, 0.0) for i in range(5)] == [0, 1, 2, 3, 4]
    assert lim.next_due() is None and lim.dropped == 0


def test_keeps_latest_and_counts_drops() -> None:
    lim: KeepLatestLimiter[int] = KeepLatestLimiter(10.0)  # 100 ms interval
    assert lim.offer(1, 0.000) == 1
    assert lim.offer(2, 0.010) is None
    assert lim.offer(3, 0.020) is None  # replaces 2
    assert lim.offer(4, 0.030) is None  # replaces 3
    assert lim.dropped == 2
    assert lim.next_due() == 0.1
    assert lim.poll(0.099) is None
    assert lim.poll(0.100) == 4
    assert lim.next_due() is None
    assert lim.poll(0.5) is None


def test_after_a_quiet_interval_a_message_goes_at_once() -> None:
    lim: KeepLatestLimiter[str] = KeepLatestLimiter(2.0)
    assert lim.offer("a", 0.0) == "a"
    assert lim.offer("b", 0.6) == "b"
    assert lim.offer("c", 0.7) is None
    assert lim.offer("d", 1.2) is None  # something is held: no overtaking, d replaces c
    assert lim.poll(1.2) == "d"
    assert lim.passed == 3 and lim.dropped == 1


def test_rate_bound_over_a_burst() -> None:
    lim: KeepLatestLimiter[int] = KeepLatestLimiter(5.0)
    sent = []
    for i in range(1000):  # 1 kHz for 1 s
        now = i / 1000
        if (item := lim.offer(i, now)) is not None:
            sent.append(item)
        if (item := lim.poll(now)) is not None:
            sent.append(item)
    assert 5 <= len(sent) <= 6
    assert lim.dropped + len(sent) + (1 if lim.next_due() else 0) == 1000
