"""Behaviour facts from clicks and orders: right counts, replay-proof."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.domain.behaviour import Facts, clicked, order_event


def test_an_order_created_then_paid_then_another_left_unpaid():
    facts = order_event(Facts(), "o1", "created", 100, 0)
    facts = order_event(facts, "o1", "paid", 200, 12_900)
    facts = order_event(facts, "o2", "created", 300, 0)
    behaviour = facts.behaviour()
    assert (behaviour.paid_orders, behaviour.paid_amount, behaviour.last_paid_ms) == (
        1, 12_900, 200)
    assert behaviour.unpaid_created_ms == (300,)
    assert order_event(facts, "o2", "closed", 400, 0).behaviour().unpaid_created_ms == ()


def test_paid_without_created_and_a_refund_after_payment():
    facts = order_event(Facts(), "o1", "paid", 200, 500)
    assert facts.behaviour().paid_orders == 1
    assert order_event(facts, "o1", "created", 100, 0) is facts
    assert order_event(facts, "o1", "refunded", 300, 0) is facts


def test_the_latest_click_wins():
    facts = clicked(clicked(Facts(), 500), 300)
    assert facts.last_click_ms == 500


events = st.lists(st.tuples(st.sampled_from(["o1", "o2", "o3"]),
                            st.sampled_from(["created", "paid", "closed", "completed"]),
                            st.integers(0, 10_000), st.integers(0, 100_000)), max_size=12)


@given(events)
def test_every_event_twice_changes_nothing(stream):
    once = twice = Facts()
    for order_id, event, ts, amount in stream:
        once = order_event(once, order_id, event, ts, amount)
        twice = order_event(twice, order_id, event, ts, amount)
        twice = order_event(twice, order_id, event, ts, amount)
    assert once == twice


@given(events)
def test_an_order_is_paid_at_most_once_and_never_both_paid_and_unpaid(stream):
    facts = Facts()
    for order_id, event, ts, amount in stream:
        facts = order_event(facts, order_id, event, ts, amount)
    paid = [order for order, _ in facts.paid]
    unpaid = [order for order, _ in facts.unpaid]
    assert len(paid) == len(set(paid)) and len(unpaid) == len(set(unpaid))
    assert not set(paid) & set(unpaid)
