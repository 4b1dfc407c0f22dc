"""Rate resolution: every level, its conditions, validity and the tie-break."""

from __future__ import annotations

import pytest

from app.domain.rates import (
    Activity,
    Level,
    LineContext,
    best_by_level,
    group_leader_rate,
    product_rate,
    self_operated_rate,
)

PAID = 1_700_000_000_000
LINE = LineContext(item_id="i1", category_id="cat1", promoter_id="p1", base_id="b1",
                   group_leader_id="g1")


def act(activity_id: str, level: Level, rate_bp: int, *, start: int = PAID - 1000,
        end: int | None = None, **extra) -> Activity:
    sets = {k: frozenset(v) for k, v in extra.items() if k.endswith("_ids")}
    rest = {k: v for k, v in extra.items() if not k.endswith("_ids")}
    return Activity(activity_id=activity_id, shop_id="s1", level=level, rate_bp=rate_bp,
                    start_ms=start, end_ms=end, **sets, **rest)


ALL_LEVELS = [
    act("a1", Level.TARGETED_PRODUCT, 1100, item_ids={"i1"}, promoter_ids={"p1"}),
    act("a2", Level.TARGETED_BASE, 1200, base_ids={"b1"}),
    act("a3", Level.GROUP_LEADER, 1300, group_leader_id="g1", group_leader_rate_bp=200),
    act("a4", Level.GENERIC_PRODUCT, 1400, item_ids={"i1"}),
    act("a5", Level.SHOP_CATEGORY, 1500, category_ids={"cat1"}),
    act("a6", Level.SHOP_GENERIC, 1600),
]


@pytest.mark.parametrize("drop", range(6))
def test_first_matching_level_wins_in_priority_order(drop):
    activities = ALL_LEVELS[drop:]
    rate = product_rate(best_by_level(activities, LINE, PAID))
    assert (rate.activity_id, rate.rate_bp, rate.level) == (
        activities[0].activity_id, activities[0].rate_bp, activities[0].level.value)


def test_no_activity_means_rate_zero():
    rate = product_rate(best_by_level([], LINE, PAID))
    assert (rate.rate_bp, rate.activity_id, rate.level) == (0, None, None)


@pytest.mark.parametrize(("activity", "matches"), [
    (act("x", Level.TARGETED_PRODUCT, 1, item_ids={"i1"}, promoter_ids={"p2"}), False),
    (act("x", Level.TARGETED_PRODUCT, 1, item_ids={"i2"}, promoter_ids={"p1"}), False),
    (act("x", Level.TARGETED_PRODUCT, 1, promoter_ids={"p1"}), False),   # always names items
    (act("x", Level.TARGETED_BASE, 1, base_ids={"b2"}), False),
    (act("x", Level.TARGETED_BASE, 1, base_ids={"b1"}, item_ids={"i2"}), False),
    (act("x", Level.TARGETED_BASE, 1, base_ids={"b1"}, item_ids={"i1"}), True),
    (act("x", Level.GROUP_LEADER, 1, group_leader_id="g2"), False),
    (act("x", Level.GROUP_LEADER, 1, group_leader_id="g1", item_ids={"i2"}), False),
    (act("x", Level.GROUP_LEADER, 1, group_leader_id="g1", item_ids={"i1"}), True),
    (act("x", Level.GENERIC_PRODUCT, 1), False),                          # always names items
    (act("x", Level.GENERIC_PRODUCT, 1, item_ids={"i2"}), False),
    (act("x", Level.SHOP_CATEGORY, 1), False),                            # always names categories
    (act("x", Level.SHOP_CATEGORY, 1, category_ids={"cat2"}), False),
    (act("x", Level.SHOP_GENERIC, 1, item_ids={"i2"}), False),            # a named item restricts
    (act("x", Level.SHOP_GENERIC, 1, category_ids={"cat1"}), True),
])
def test_level_conditions(activity, matches):
    assert bool(best_by_level([activity], LINE, PAID)) is matches


def test_group_leader_level_needs_a_click_with_a_group_leader():
    line = LineContext("i1", "cat1", "p1", None, None)
    assert not best_by_level([act("x", Level.GROUP_LEADER, 1, group_leader_id="g1")], line, PAID)


@pytest.mark.parametrize(("start", "end", "valid"), [
    (PAID, None, True), (PAID + 1, None, False), (PAID - 10, PAID, False),
    (PAID - 10, PAID + 1, True),
])
def test_validity_window_is_start_inclusive_end_exclusive(start, end, valid):
    activity = act("x", Level.SHOP_GENERIC, 1, start=start, end=end)
    assert bool(best_by_level([activity], LINE, PAID)) is valid


def test_tie_break_latest_start_then_greatest_id():
    activities = [act("b", Level.SHOP_GENERIC, 100, start=PAID - 50),
                  act("c", Level.SHOP_GENERIC, 200, start=PAID - 90),
                  act("a", Level.SHOP_GENERIC, 300, start=PAID - 50)]
    assert product_rate(best_by_level(activities, LINE, PAID)).activity_id == "b"
    activities.append(act("z", Level.SHOP_GENERIC, 400, start=PAID - 50))
    assert product_rate(best_by_level(activities, LINE, PAID)).rate_bp == 400


def test_group_leader_pool_rate_comes_from_a_matching_group_leader_activity():
    best = best_by_level(ALL_LEVELS, LINE, PAID)
    assert product_rate(best).activity_id == "a1"     # the product rate is the first level
    leader = group_leader_rate(best)
    assert (leader.rate_bp, leader.activity_id, leader.level) == (200, "a3", "group_leader")
    assert group_leader_rate(best_by_level(ALL_LEVELS[3:], LINE, PAID)).rate_bp == 0


@pytest.mark.parametrize(("rates", "category", "expected"), [
    ({"beauty": 500, "*": 200}, "beauty", 500), ({"beauty": 500, "*": 200}, "food", 200),
    ({"beauty": 500}, "food", 0), ({}, None, 0), ({"*": 300}, None, 300),
])
def test_self_operated_rate(rates, category, expected):
    assert self_operated_rate(rates, category).rate_bp == expected
