"""Conversion rates and lift against the holdout: Newcombe's hybrid score interval."""

from __future__ import annotations

from math import sqrt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.lift import difference, results, wilson
from app.domain.operations import HOLDOUT

Z = 1.959964  # the two-sided 95 % normal quantile, as printed in tables


# Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10: each row is
# (m successes of n, successes of the second sample of its size) -> difference, 95 % CI.
@pytest.mark.parametrize(("first", "second", "expected"), [
    ((56, 70), (48, 80), (0.2000, 0.0524, 0.3339)),
    ((9, 10), (3, 10), (0.6000, 0.1705, 0.8090)),
    ((6, 7), (2, 7), (0.5714, 0.0582, 0.8062)),
    ((5, 56), (0, 29), (0.0893, -0.0381, 0.1926)),
    ((0, 10), (0, 20), (0.0000, -0.1611, 0.2775)),
    ((10, 10), (0, 20), (1.0000, 0.6791, 1.0000)),
])
def test_the_interval_is_newcombes_published_one(first, second, expected):
    found = difference(*first, *second)
    assert (round(found.difference, 4), round(found.low, 4), round(found.high, 4)) == expected


# Newcombe (1998), Statistics in Medicine 17:857-872, the single-proportion examples,
# Wilson's score method without continuity correction.
@pytest.mark.parametrize(("successes", "trials", "expected"), [
    (81, 263, (0.2553, 0.3662)), (15, 148, (0.0624, 0.1605)),
    (0, 20, (0.0000, 0.1611)), (1, 29, (0.0061, 0.1718)),
])
def test_wilsons_interval_is_the_published_one(successes, trials, expected):
    assert tuple(round(bound, 4) for bound in wilson(successes, trials)) == expected


def score_bound(successes: int, trials: int, upper: bool) -> float:
    """Where the score statistic (p - pi)^2 * n / (pi (1 - pi)) reaches Z^2 on one side of
    p, by bisection (the definition of Wilson's bounds, not their closed form)."""
    share = successes / trials
    inside, outside = share, (1.0 if upper else 0.0)
    if share == outside:
        return outside
    for _ in range(200):
        middle = (inside + outside) / 2
        if (share - middle) ** 2 * trials <= Z * Z * middle * (1 - middle):
            inside = middle
        else:
            outside = middle
    return inside


proportions = st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@given(proportions, proportions)
def test_the_interval_equals_newcombes_variance_form_from_bisected_score_bounds(first, second):
    """Newcombe's paper writes the bounds as D -/+ z sqrt(l1(1-l1)/n1 + u2(1-u2)/n2) and
    D + z sqrt(u1(1-u1)/n1 + l2(1-l2)/n2): the same numbers by another road."""
    (x1, n1), (x2, n2) = first, second
    low1, high1 = score_bound(x1, n1, False), score_bound(x1, n1, True)
    low2, high2 = score_bound(x2, n2, False), score_bound(x2, n2, True)
    point = x1 / n1 - x2 / n2
    found = difference(x1, n1, x2, n2, z=Z)
    assert found.low == pytest.approx(
        point - Z * sqrt(low1 * (1 - low1) / n1 + high2 * (1 - high2) / n2), abs=1e-9)
    assert found.high == pytest.approx(
        point + Z * sqrt(high1 * (1 - high1) / n1 + low2 * (1 - low2) / n2), abs=1e-9)


@given(proportions, proportions)
def test_the_interval_holds_the_difference_and_lies_within_minus_one_and_one(first, second):
    found = difference(*first, *second)
    assert -1 <= found.low <= found.difference <= found.high <= 1
    assert found.difference == first[0] / first[1] - second[0] / second[1]


@given(proportions, proportions, st.integers(2, 50))
def test_more_buyers_at_the_same_rates_narrow_the_interval(first, second, factor):
    (x1, n1), (x2, n2) = first, second
    narrow = difference(x1 * factor, n1 * factor, x2 * factor, n2 * factor)
    wide = difference(x1, n1, x2, n2)
    assert narrow.low >= wide.low - 1e-12 and narrow.high <= wide.high + 1e-12
    assert narrow.high - narrow.low < wide.high - wide.low


def test_no_proportion_without_buyers_or_with_more_successes_than_buyers():
    for successes, trials in ((0, 0), (3, 2), (-1, 5)):
        with pytest.raises(ValueError):
            wilson(successes, trials)


def test_each_variant_against_the_holdout_by_its_own_denominator():
    found = {r.variant: r for r in results({
        "A": {"actions": 70, "converted": 56, "converted_amount": 123_456, "used": 40,
              "replenished": 2, "sent": 69},
        "B": {"actions": 10, "converted": 9},
        HOLDOUT: {"held_out": 80, "converted": 48, "converted_amount": 999},
    })}
    assert list(found) == ["A", "B", HOLDOUT]
    a = found["A"]
    assert (a.buyers, a.actions, a.conversions, a.conversion_rate, a.paid_amount, a.used,
            a.replenished) == (70, 70, 56, 0.8, 123_456, 40, 2)
    assert a.lift is not None
    # 56/70 - 48/80 (Table II's first example); relative: 0.2 / 0.6
    assert (round(a.lift.low, 4), round(a.lift.high, 4)) == (0.0524, 0.3339)
    assert a.lift.difference == pytest.approx(0.2)
    assert a.lift.relative == pytest.approx(1 / 3)
    assert found["B"].lift is not None and found["B"].lift.difference == pytest.approx(0.3)
    holdout = found[HOLDOUT]
    assert (holdout.buyers, holdout.actions, holdout.conversions, holdout.conversion_rate,
            holdout.paid_amount, holdout.lift) == (80, 0, 48, 0.6, 999, None)


def test_no_lift_without_a_measurable_holdout_or_buyers():
    without_holdout = results({"": {"actions": 10, "converted": 3}})
    assert [(r.conversion_rate, r.lift) for r in without_holdout] == [(0.3, None)]
    empty_holdout = results({"A": {"actions": 10, "converted": 3}, HOLDOUT: {"held_out": 0}})
    assert [r.lift for r in empty_holdout] == [None, None]
    assert empty_holdout[1].conversion_rate is None
    no_buyers = results({"A": {"converted": 0}, HOLDOUT: {"held_out": 5, "converted": 1}})
    assert (no_buyers[0].buyers, no_buyers[0].conversion_rate, no_buyers[0].lift) == (0, None,
                                                                                      None)


def test_a_holdout_that_never_converted_gives_a_difference_but_no_relative_lift():
    (found, _) = results({"A": {"actions": 56, "converted": 5},
                          HOLDOUT: {"held_out": 29, "converted": 0}})
    assert found.lift is not None
    assert (round(found.lift.difference, 4), round(found.lift.low, 4),
            round(found.lift.high, 4), found.lift.relative) == (0.0893, -0.0381, 0.1926, None)


def test_counts_that_are_no_proportion_show_their_rate_but_no_lift():
    (found, _) = results({"A": {"actions": 2, "converted": 3},
                          HOLDOUT: {"held_out": 5, "converted": 1}})
    assert (found.conversion_rate, found.lift) == (1.5, None)

