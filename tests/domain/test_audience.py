"""Audience rules: every predicate, the tree, and refusals that name the path."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.audience import Behaviour, Buyer, Member, RuleError, parse, selects

NOW = int(datetime(2026, 11, 29, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)  # Sunday
HOUR = 3_600_000

BUYER = Buyer(
    member=Member(level=3, tags=frozenset({"vip"}), follower=True, birthday="11-30",
                  tz="Asia/Shanghai"),
    lists=frozenset({"spring"}),
    behaviour=Behaviour(last_click_ms=NOW - HOUR, last_paid_ms=NOW - 10 * 24 * HOUR,
                        paid_orders=2, paid_amount=25_800,
                        unpaid_created_ms=(NOW - 40 * 60_000,)))


@pytest.mark.parametrize(("rule", "selected"), [
    ({"level_gte": 3}, True), ({"level_gte": 4}, False),
    ({"tag": "vip"}, True), ({"tag": "new"}, False),
    ({"follower": True}, True), ({"follower": False}, False),
    ({"list": "spring"}, True), ({"list": "autumn"}, False),
    ({"clicked_within_ms": 2 * HOUR}, True), ({"clicked_within_ms": HOUR - 1}, False),
    ({"no_paid_within_ms": 7 * 24 * HOUR}, True), ({"no_paid_within_ms": 11 * 24 * HOUR}, False),
    ({"created_unpaid_for_ms": 30 * 60_000}, True),
    ({"created_unpaid_for_ms": 60 * 60_000}, False),
    ({"paid_orders_gte": 2}, True), ({"paid_orders_gte": 3}, False),
    ({"paid_amount_gte": 25_800}, True), ({"paid_amount_gte": 25_801}, False),
    # 20:00 on Sunday in Shanghai: the birthday (Monday the 30th) is tomorrow, next week.
    ({"birthday": "this_month"}, True), ({"birthday": "today"}, False),
    ({"birthday": "this_week"}, False),
    ({"all": [{"tag": "vip"}, {"not": {"list": "autumn"}}]}, True),
    ({"any": [{"tag": "new"}, {"level_gte": 9}]}, False),
])
def test_each_predicate_and_the_tree(rule, selected):
    assert selects(parse(rule), BUYER, NOW, "UTC") is selected


def test_the_birthday_is_judged_in_the_buyers_zone_else_the_plans():
    tomorrow = NOW + 4 * HOUR  # Monday 00:00 in Shanghai, still Sunday 16:00 in UTC
    assert selects(parse({"birthday": "today"}), BUYER, tomorrow, "UTC")
    no_zone = Buyer(member=Member(birthday="11-30"))
    assert not selects(parse({"birthday": "today"}), no_zone, tomorrow, "UTC")
    assert selects(parse({"birthday": "today"}), no_zone, tomorrow, "Asia/Shanghai")
    assert selects(parse({"birthday": "this_week"}), no_zone, tomorrow, "Asia/Shanghai")


def test_a_leap_day_birthday_is_kept_on_the_28th():
    leap = Buyer(member=Member(birthday="02-29"))
    feb_28 = int(datetime(2027, 2, 28, 12, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)
    assert selects(parse({"birthday": "today"}), leap, feb_28, "UTC")


@pytest.mark.parametrize(("rule", "path"), [
    ({"all": [{"tag": "vip"}, {"level_gte": -1}]}, "audience.all[1].level_gte"),
    ({"any": []}, "audience.any"),
    ({"not": {"colour": "red"}}, "audience.not.colour"),
    ({"birthday": "yesterday"}, "audience.birthday"),
    ({"follower": "yes"}, "audience.follower"),
    ({"tag": "a", "level_gte": 1}, "audience"),
    ([{"tag": "a"}], "audience"),
    ({"all": [{"any": [{"list": ""}]}]}, "audience.all[0].any[0].list"),
])
def test_a_malformed_rule_is_refused_naming_its_path(rule, path):
    with pytest.raises(RuleError) as refused:
        parse(rule)
    assert refused.value.path == path
    assert str(refused.value).startswith(path + ":")


leaves = st.sampled_from([{"tag": "vip"}, {"level_gte": 2}, {"list": "spring"},
                          {"paid_orders_gte": 5}, {"follower": False}])
trees = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, min_size=1, max_size=3).map(lambda parts: {"all": parts}),
    st.lists(inner, min_size=1, max_size=3).map(lambda parts: {"any": parts}),
    inner.map(lambda part: {"not": part})), max_leaves=8)


@given(trees)
def test_not_inverts_and_de_morgan_holds(tree):
    rule = selects(parse(tree), BUYER, NOW, "UTC")
    assert selects(parse({"not": tree}), BUYER, NOW, "UTC") is (not rule)
    assert selects(parse({"not": {"not": tree}}), BUYER, NOW, "UTC") is rule
    both = {"not": {"all": [tree, {"tag": "vip"}]}}
    either = {"any": [{"not": tree}, {"not": {"tag": "vip"}}]}
    assert selects(parse(both), BUYER, NOW, "UTC") == selects(parse(either), BUYER, NOW, "UTC")
