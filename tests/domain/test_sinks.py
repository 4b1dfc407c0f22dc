"""Sink rules: matching, the token bucket, backoff, Retry-After, adaptive throttle."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.sinks import Throttle, TokenBucket, backoff_s, matches, retry_after_s


@pytest.mark.parametrize(("filters", "stream", "facts", "wanted"), [
    ({}, "commissions", {}, True),
    ({}, "gossip", {}, False),
    ({"channel_id": "k"}, "commissions", {"channel_id": "k", "shop_id": "s"}, True),
    ({"channel_id": "k"}, "commissions", {"channel_id": "d"}, False),
    ({"channel_id": "k", "type": "cps"}, "attributions", {"channel_id": "k", "type": "none"},
     False),
    ({"promoter_id": "p"}, "settlements", {}, False),
])
def test_matching(filters, stream, facts, wanted):
    assert matches(frozenset({"commissions", "attributions", "settlements"}), filters, stream,
                   facts) is wanted


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


def test_backoff_has_full_jitter_under_a_cap():
    rnd = random.Random(1)
    waits = [backoff_s(attempt, base_ms=100, max_ms=1000, rnd=rnd) for attempt in range(20)]
    assert all(0 <= w <= 1.0 for w in waits)
    assert max(waits[:2]) <= 0.2 and max(waits) > 0.5


def test_retry_after():
    assert retry_after_s("3", 0) == 3
    assert retry_after_s("Thu, 01 Jan 1970 00:00:10 GMT", 4) == 6
    assert retry_after_s("soon", 0) is None and retry_after_s(None, 0) is None


def test_throttle_halves_and_recovers():
    throttle = Throttle()
    throttle.pushed_back()
    throttle.pushed_back()
    assert throttle.factor == 0.25
    for _ in range(100):
        throttle.succeeded()
    assert throttle.factor == 1.0
