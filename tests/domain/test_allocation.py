"""The matching rule of SPEC 14 against a brute force, and its caps and spread."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.allocation import Load, Operator, allocate, match

DAY = "2026-12-07"

operators_st = st.lists(st.builds(
    Operator, operator_id=st.sampled_from([f"op{n}" for n in range(8)]), shop_id=st.just("s1"),
    qualifications=st.frozensets(st.sampled_from(["vip", "cn", "en"]), max_size=3),
    daily_cap=st.integers(0, 12), total_cap=st.integers(0, 20), active=st.booleans()),
    max_size=6, unique_by=lambda op: op.operator_id)


@settings(max_examples=300, deadline=None)
@given(operators=operators_st, requires=st.frozensets(st.sampled_from(["vip", "cn"]),
                                                       max_size=1),
       buyers=st.integers(0, 60), data=st.data())
def test_caps_hold_and_each_buyer_goes_to_the_brute_force_choice(operators, requires, buyers,
                                                                   data):
    loads: dict[str, Load] = {}
    given_to: dict[str, int] = {op.operator_id: 0 for op in operators}
    for _buyer in range(buyers):
        # in whatever order the shop's operators come
        order = data.draw(st.permutations(operators))
        eligible = [op for op in order if op.active and requires <= op.qualifications
                    and given_to[op.operator_id] < min(op.daily_cap, op.total_cap)]
        expected = min(eligible, key=lambda op: (given_to[op.operator_id], op.operator_id),
                       default=None)
        chosen, loads = allocate(order, requires, loads, DAY)
        assert chosen == expected
        if chosen is not None:
            given_to[chosen.operator_id] += 1
    for op in operators:
        assert given_to[op.operator_id] <= min(op.daily_cap, op.total_cap)
        if not (op.active and requires <= op.qualifications):
            assert given_to[op.operator_id] == 0
    # even spread: an eligible operator with fewer than another is at its cap
    eligible = [op for op in operators if op.active and requires <= op.qualifications]
    for low in eligible:
        for high in eligible:
            if given_to[high.operator_id] - given_to[low.operator_id] > 1:
                assert given_to[low.operator_id] == min(low.daily_cap, low.total_cap)


def test_fewest_today_then_fewest_in_total_then_the_smallest_id():
    ops = [Operator(name, "s1", frozenset({"vip"}), 10, 100) for name in ("b", "a", "c")]
    loads = {"a": Load((("2026-12-06", 5), (DAY, 2)), 9), "b": Load(((DAY, 1),), 4),
             "c": Load(((DAY, 1),), 3)}
    assert match(ops, frozenset({"vip"}), loads, DAY).operator_id == "c"
    loads["c"] = Load(((DAY, 1),), 4)
    assert match(ops, frozenset({"vip"}), loads, DAY).operator_id == "b"
    assert match(ops, frozenset({"vip"}), loads, "2026-12-08").operator_id == "b"  # new day


def test_a_new_day_resets_the_daily_count_not_the_total():
    op = Operator("a", "s1", frozenset(), daily_cap=2, total_cap=3)
    loads: dict[str, Load] = {}
    results = []
    for day in (DAY, DAY, DAY, "2026-12-08", "2026-12-08"):
        chosen, loads = allocate([op], frozenset(), loads, day)
        results.append(chosen is not None)
    assert results == [True, True, False, True, False]  # daily cap 2, then total cap 3
