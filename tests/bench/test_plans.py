"""The plan phase's conversion figures, from the timestamps it read."""

from __future__ import annotations

from app.bench.plans import conversion_summary


def test_conversions_are_timed_from_the_attribution_and_checked_exactly_once():
    # b converted twice, d not at all, c's attribution is known, e's is not.
    summary = conversion_summary(
        {"a", "b", "c", "d", "e"}, {"a": 1000, "b": 1000, "c": 2000},
        {"a": [(1100, 1300)], "b": [(1500, 1600), (1500, 1700)], "c": [(2050, 2100)],
         "e": [(3000, 3100)]}, unexpected=0)
    # delays 100, 500, 50 (e has no attribution to time from); readable 300, 600, 100
    assert summary == {"orders": 5, "attributed": 3, "converted": 4, "missing": 1,
                       "duplicates": 1, "unexpected": 0, "exactly_once": False,
                       "p50": 100, "p99": 500, "max": 500,
                       "readable_p50": 300, "readable_p99": 600, "readable_max": 600}


def test_every_order_converted_once_is_exactly_once_unless_another_order_converted():
    attributed = {"a": 10, "b": 20}
    converted = {"a": [(15, 30)], "b": [(40, 45)]}
    assert conversion_summary({"a", "b"}, attributed, converted, unexpected=0)[
        "exactly_once"]
    assert not conversion_summary({"a", "b"}, attributed, converted, unexpected=1)[
        "exactly_once"]
