"""Histogram, time-series and alert maths."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.alerts import AlertState, observe
from app.domain.metrics import BOUNDS_MS, Histogram, Series, WindowedHistogram


def test_bounds_are_increasing_and_cover_an_hour():
    assert list(BOUNDS_MS) == sorted(set(BOUNDS_MS))
    assert BOUNDS_MS[0] == 1 and BOUNDS_MS[-1] == 3_000_000


def test_percentiles_are_bucket_bounds_at_or_above_the_true_value():
    histogram = Histogram()
    for value in range(1, 1001):
        histogram.record(value)
    assert histogram.percentile(0.5) == 500
    assert histogram.percentile(0.9) == 1000
    assert histogram.percentile(0.99) == 1000
    assert Histogram().percentile(0.5) is None


@given(st.lists(st.integers(0, 10_000_000), min_size=1, max_size=300),
       st.sampled_from([0.5, 0.9, 0.99]))
def test_percentile_bounds_the_exact_value_within_one_bucket(values, q):
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    exact = sorted(values)[max(0, int(q * len(values) + 0.999999) - 1)]
    estimate = histogram.percentile(q)
    assert estimate >= min(exact, BOUNDS_MS[-1])
    if exact <= BOUNDS_MS[-1]:
        index = BOUNDS_MS.index(estimate)
        assert index == 0 or BOUNDS_MS[index - 1] < exact


@given(st.lists(st.integers(0, 100_000), max_size=100),
       st.lists(st.integers(0, 100_000), max_size=100))
def test_merging_equals_recording_everything_in_one(a, b):
    left, right, both = Histogram(), Histogram(), Histogram()
    for value in a:
        left.record(value)
        both.record(value)
    for value in b:
        right.record(value)
        both.record(value)
    assert left.merge(right).counts == both.counts
    assert left.merge(right).summary() == both.summary()


def test_series_keeps_the_last_hour():
    series = Series(horizon_ms=1000)
    for ts in range(0, 3000, 100):
        series.add(ts, ts / 10)
    assert series.points[0][0] == 1900 and series.last() == 290
    assert [ts for ts, _ in series.since(2800)] == [2800, 2900]


def test_windowed_histogram_over_recent_windows():
    windows = WindowedHistogram(interval_ms=1000, horizon_ms=10_000)
    for second in range(20):
        windows.record(second * 1000 + 5, 100 if second < 15 else 5000)
    assert windows.over(15_000).percentile(0.5) == 5000
    assert windows.over(0).total == 11  # only the last hour (here: 10 s) is kept
    rnd = random.Random(3)
    # a window counts when any of it is inside the range asked for
    assert windows.over(14_000 + rnd.randint(1, 999)).total == 6


def test_alert_fires_after_holding_for_its_period_and_resolves():
    alert = AlertState("lag", "consumer lag")
    alert, t = observe(alert, holds=True, value=50, threshold=10, for_ms=60_000, now_ms=0)
    assert (alert.state, t) == ("pending", None)
    alert, t = observe(alert, holds=True, value=60, threshold=10, for_ms=60_000, now_ms=59_999)
    assert t is None
    alert, t = observe(alert, holds=True, value=70, threshold=10, for_ms=60_000, now_ms=60_000)
    assert (alert.state, t.kind, alert.fired_ms) == ("firing", "firing", 60_000)
    alert, t = observe(alert, holds=True, value=70, threshold=10, for_ms=60_000, now_ms=70_000)
    assert t is None and alert.state == "firing"
    alert, t = observe(alert, holds=False, value=0, threshold=10, for_ms=60_000, now_ms=80_000)
    assert (alert.state, t.kind, alert.resolved_ms) == ("ok", "resolved", 80_000)
    assert t.event_id == "alert:lag:60000:resolved"


def test_a_dip_restarts_the_pending_period():
    alert = AlertState("lag", "consumer lag")
    alert, _ = observe(alert, holds=True, value=1, threshold=0, for_ms=10, now_ms=0)
    alert, _ = observe(alert, holds=False, value=0, threshold=0, for_ms=10, now_ms=5)
    alert, t = observe(alert, holds=True, value=1, threshold=0, for_ms=10, now_ms=12)
    assert (alert.state, t) == ("pending", None)


@pytest.mark.parametrize("value", [0, 1, 3_600_000, 10**12])
def test_any_value_lands_in_a_bucket(value):
    histogram = Histogram()
    histogram.record(value)
    assert histogram.total == 1 and histogram.percentile(1.0) is not None
