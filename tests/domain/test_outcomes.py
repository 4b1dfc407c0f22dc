"""Used, replenished and converted (SPEC 13), against the SPEC's words computed here."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.model import OrderEvent, OrderLine, Refund
from app.domain.outcomes import (
    CONVERTED,
    REPLENISHED,
    USED,
    Exposure,
    TracedOrder,
    replenishes,
    settle,
    trace,
    traced_kept,
    watched,
)

T = 1_700_000_000_000
WINDOW = 1_000


def exposure(grant: str | None = None, ts: int = T, **changes) -> Exposure:
    return Exposure("p", f"p@{ts}", "A", ts, WINDOW, grant, **changes)


def event(order_id: str, kind: str, ts: int, *, lines=(("i1", 100),), coupons=(),
          refund=None) -> OrderEvent:
    items = tuple(OrderLine(item, None, 1, amount) for item, amount in lines)
    return OrderEvent(order_id, kind, ts, "u", "s", items=items if kind in (
        "created", "paid") else (), coupon_ids=tuple(coupons),
        refund=Refund(*refund) if refund else None)


def fold(events) -> TracedOrder:
    order = None
    for one in events:
        order = trace(order, one)
    return order


def test_the_window_excludes_the_action_time_and_includes_its_end():
    for paid_at, converts in ((T, False), (T + 1, True), (T + WINDOW, True),
                              (T + WINDOW + 1, False), (T - 1, False)):
        _settled, outcomes = settle([exposure()], [("o", 50, paid_at)], {})
        assert [o.kind for o in outcomes] == ([CONVERTED] if converts else []), paid_at


def test_the_earliest_paid_order_converts_ties_to_the_smaller_id():
    paid = [("o3", 30, T + 500), ("o2", 20, T + 200), ("o1", 10, T + 200), ("o0", 1, None)]
    settled, outcomes = settle([exposure()], paid, {})
    assert [(o.kind, o.order_id, o.amount) for o in outcomes] == [(CONVERTED, "o1", 10)]
    assert settled[0].converted == "o1"
    assert settle(settled, [*paid, ("o9", 9, T + 1)], {})[1] == []  # recorded: stays


def test_a_right_is_used_by_the_first_paid_order_carrying_it_and_replenished_in_full():
    grant = exposure("p@1:u")
    orders = {"o2": fold([event("o2", "paid", T + 9, coupons=["p@1:u"])]),
              "o1": fold([event("o1", "created", T + 5, coupons=["p@1:u", "other"]),
                          event("o1", "paid", T + 8)]),
              "o0": fold([event("o0", "paid", T + 1, coupons=["someone-else"])])}
    settled, outcomes = settle([grant], [], orders)
    assert [(o.kind, o.order_id) for o in outcomes] == [(USED, "o1")]
    partly = trace(orders["o1"], event("o1", "refunded", T + 20, refund=("r1", "i1", 40)))
    assert settle(settled, [], {**orders, "o1": partly})[1] == []
    full = trace(partly, event("o1", "refunded", T + 30, refund=("r2", "i1", 60)))
    again, outcomes = settle(settled, [], {**orders, "o1": full})
    assert [(o.kind, o.order_id) for o in outcomes] == [(REPLENISHED, "o1")]
    assert settle(again, [], {**orders, "o1": full})[1] == []


def test_closing_replenishes_only_before_completion():
    paid = event("o", "paid", T)
    assert replenishes(fold([paid, event("o", "closed", T + 5)]))
    assert replenishes(fold([event("o", "completed", T + 9), paid, event("o", "closed", T + 5)]))
    assert not replenishes(fold([paid, event("o", "completed", T + 5),
                                 event("o", "closed", T + 9)]))
    assert not replenishes(fold([event("o", "closed", T + 5)]))  # never paid


def test_a_refund_larger_than_what_remains_is_rejected():
    paid = event("o", "paid", T, lines=(("i1", 100), ("i2", 50)))
    over = [paid, event("o", "refunded", T + 1, refund=("r1", "i1", 100)),
            event("o", "refunded", T + 2, refund=("r2", "i2", 60))]
    assert not replenishes(fold(over))
    assert replenishes(fold([*over, event("o", "refunded", T + 3, refund=("r3", "i2", 50))]))


refunds = st.lists(st.tuples(st.sampled_from(["r1", "r2", "r3", "r4"]),
                             st.sampled_from(["i1", "i2"]), st.integers(0, 120),
                             st.integers(1, 50)), max_size=5, unique_by=lambda r: r[0])


@settings(max_examples=300, deadline=None)
@given(refunds=refunds, closed=st.none() | st.integers(1, 60),
       completed=st.none() | st.integers(1, 60), paid=st.booleans(), data=st.data())
def test_a_trace_is_the_same_for_any_arrival_and_replenishes_as_the_spec_says(
        refunds, closed, completed, paid, data):
    lines = (("i1", 100), ("i2", 60))
    events = [event("o", "created", T, lines=lines, coupons=["g"])]
    if paid:
        events.append(event("o", "paid", T + 1, lines=lines))
    events += [event("o", "refunded", T + 2 + at, refund=(rid, item, amount))
               for rid, item, at, amount in refunds]
    if closed is not None:
        events.append(event("o", "closed", T + closed))
    if completed is not None:
        events.append(event("o", "completed", T + completed))
    arrival = data.draw(st.permutations(events))
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=3))
    assert fold([*arrival, *repeats]) == fold(events)

    # The SPEC's words, in time order: each refund lowers its line unless larger than what
    # remains; replenished when every line is at 0 or the order closed before completing.
    remaining = dict(lines)
    for _rid, item, amount in sorted(((at, rid), item, amount)
                                     for rid, item, at, amount in refunds):
        if amount <= remaining[item]:
            remaining[item] -= amount
    closed_first = closed is not None and (completed is None or closed < completed)
    expected = paid and (closed_first or remaining == {"i1": 0, "i2": 0})
    assert replenishes(fold(arrival)) == expected


@settings(max_examples=300, deadline=None)
@given(paid=st.lists(st.tuples(st.sampled_from(["o1", "o2", "o3", "o4"]),
                               st.integers(-5, WINDOW + 5)), max_size=6,
                     unique_by=lambda p: p[0]),
       start=st.integers(0, 3))
def test_converted_is_the_first_paid_order_inside_the_window(paid, start):
    rows = [(order, 7, T + at) for order, at in paid]
    _settled, outcomes = settle([exposure(ts=T + start)], rows, {})
    inside = sorted((T + at, order) for order, at in paid
                    if T + start < T + at <= T + start + WINDOW)
    assert [o.order_id for o in outcomes] == [order for _at, order in inside[:1]]


def test_only_exposures_an_order_can_still_change_are_kept():
    late = 1 + 86_400_000
    plain, grant = exposure(ts=T), exposure("g", ts=T + 1)
    assert watched([plain, grant], T + WINDOW + late - 1) == (plain, grant)
    assert watched([plain, grant], T + WINDOW + late + 1) == (grant,)
    assert watched([exposure("g", replenished=True)], T + WINDOW + late + 1) == ()
    order = TracedOrder("o1", ("g",), T + 5)
    assert traced_kept({"o1": order}, [grant]) == {"o1": order}
    assert traced_kept({"o1": order}, [plain]) == {}
