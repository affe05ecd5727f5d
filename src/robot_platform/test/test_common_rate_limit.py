"""common.rate_limit.TokenBucket: the one bucket behind frame budgets, app log lines and client messages."""

from __future__ import annotations

import pytest

from robot_platform.common.rate_limit import TokenBucket


def test_take_spends_whole_tokens_and_never_saves_more_than_capacity() -> None:
    bucket = TokenBucket(rate=2.0, capacity=3, now=0.0)  # app logs: 2 lines/s, burst 3
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)  # half a second refills one token
    assert sum(bucket.take(100.0) for _ in range(10)) == 3  # never more than the burst saved up


def test_take_of_several_tokens_spends_nothing_when_short() -> None:
    bucket = TokenBucket(rate=1.0, capacity=5.0, now=0.0)
    assert not bucket.take(0.0, amount=6.0)
    assert bucket.level(0.0) == 5.0
    assert bucket.take(0.0, amount=5.0) and bucket.level(0.0) == 0.0


def test_charge_goes_into_debt_repaid_by_refill() -> None:
    bucket = TokenBucket(rate=100.0, capacity=50.0, now=0.0)  # frames: bytes/s, burst 0.5 s
    assert bucket.wait_time(0.0, 0.0) == 0
    bucket.charge(150.0, 0.0)  # a frame bigger than the burst: admitted, then charged
    assert bucket.level(0.0) == -100.0
    assert bucket.wait_time(0.0, 0.0) == pytest.approx(1.0)
    assert not bucket.take(0.5)  # still in debt
    assert bucket.level(2.0) == 50.0  # capped


def test_zero_rate_is_unlimited() -> None:
    unlimited = TokenBucket(0.0, 0.0, 0.0)
    unlimited.charge(1e9, 0.0)
    assert unlimited.wait_time(0.0, 1.0) == 0
    assert all(unlimited.take(0.0) for _ in range(1000))


def test_a_clock_going_backwards_refills_nothing() -> None:
    bucket = TokenBucket(rate=10.0, capacity=1.0, now=5.0)
    assert bucket.take(5.0)
    assert not bucket.take(4.0)  # an earlier time: no refill, no crash
    assert bucket.take(5.25)
