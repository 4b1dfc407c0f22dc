"""The token bucket and the plans' throttle (app/domain/throttle.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.throttle import PlanThrottle, TokenBucket

TICK_S = 0.25


def test_bucket_allows_the_burst_then_the_rate():
    bucket = TokenBucket(rate=10, burst=3, now_s=0)
    assert [bucket.take(0) for _ in range(3)] == [0, 0, 0]
    assert bucket.take(0) == pytest.approx(0.1)
    assert bucket.take(0.1) == pytest.approx(0.1)


def test_bucket_rate_change_applies_at_once():
    bucket = TokenBucket(rate=1, burst=1, now_s=0)
    bucket.take(0)
    bucket.reconfigure(rate=100, burst=1, now_s=0)
    assert bucket.take(0) == pytest.approx(0.01)


@given(st.floats(1, 1000), st.integers(1, 50), st.integers(1, 2000))
def test_bucket_never_exceeds_rate_times_time_plus_burst(rate, burst, events):
    bucket = TokenBucket(rate=rate, burst=burst, now_s=0)
    now = 0.0
    for _ in range(events):
        now += bucket.take(now)
    assert events <= burst + rate * now + 1e-6


def _actions_over(throttle: PlanThrottle, *, rate: int, burst: int, seconds: int) -> int:
    """Actions a plan gets in `seconds` when it has more buyers than tokens at every tick."""
    taken = 0
    for tick in range(int(seconds / TICK_S) + 1):
        now_ms = int(tick * TICK_S * 1000)
        while throttle.try_take("p", rate, burst, now_ms):
            taken += 1
    return taken


@settings(deadline=None)
@given(rate=st.integers(1, 200), burst=st.integers(1, 50), seconds=st.integers(1, 30))
def test_a_plan_gets_its_rate_and_burst_and_no_more(rate, burst, seconds):
    throttle = PlanThrottle(TICK_S)
    taken = _actions_over(throttle, rate=rate, burst=burst, seconds=seconds)
    # The burst at the start, then the rate: nothing accrued between ticks is lost.
    assert burst + rate * seconds - 1 <= taken <= burst + rate * seconds


@settings(deadline=None)  # up to eight workers' twenty seconds each
@given(share_of=st.integers(1, 8), rate=st.integers(8, 400))
def test_workers_together_send_at_the_plan_rate(share_of, rate):
    """Each of n workers owning 1/n of the partitions sends 1/n of the rate."""
    seconds = 20
    total = 0
    for _worker in range(share_of):
        throttle = PlanThrottle(TICK_S)
        throttle.set_share(1 / share_of)
        total += _actions_over(throttle, rate=rate, burst=1, seconds=seconds)
    # Each starts with one token (its share of a burst of 1, at least one).
    assert rate * seconds <= total <= rate * seconds + share_of


def test_plans_have_their_own_buckets_and_a_rate_change_applies_from_then_on():
    throttle = PlanThrottle(TICK_S)
    assert throttle.try_take("a", 1, 1, 0)
    assert not throttle.try_take("a", 1, 1, 0)
    assert throttle.try_take("b", 1, 1, 0)  # another plan's bucket is full
    assert not throttle.try_take("a", 1, 1, 500)  # half a token at 1/s
    assert not throttle.try_take("a", 4, 1, 625)  # seen now: until now it filled at 1/s
    assert throttle.try_take("a", 4, 1, 750)  # 0.625 + 0.125 s x 4/s
