"""Behaviour facts from clicks and orders: right counts, replay-proof."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.behaviour import Facts, clicked, order_event, started_trigger


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
    created_late = order_event(facts, "o1", "created", 100, 0)
    assert created_late.behaviour().unpaid_created_ms == () and created_late.paid == facts.paid
    assert created_late.last_created_ms == 100  # as if it had come first
    assert started_trigger(facts, created_late, "o1", "created") is None
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
    paid = [entry[0] for entry in facts.paid]
    unpaid = [order for order, _ in facts.unpaid]
    assert len(paid) == len(set(paid)) and len(unpaid) == len(set(unpaid))
    assert not set(paid) & set(unpaid)


def test_a_created_replayed_after_its_order_was_closed_unpaid_leaves_it_closed():
    created = order_event(Facts(), "o1", "created", 100, 0)
    closed = order_event(created, "o1", "closed", 200, 0)
    replayed = order_event(closed, "o1", "created", 100, 0)
    assert replayed.behaviour().unpaid_created_ms == ()
    assert started_trigger(closed, replayed, "o1", "created") is None


@st.composite
def buyer_lives(draw):
    """A buyer's orders, each created and then paid, closed unpaid, paid and closed, or
    left unpaid, in their true order; and the orders that stay unpaid."""
    lives, unpaid = [], set()
    for n in range(draw(st.integers(1, 5))):
        order_id, created = f"o{n}", 1_000 * n
        fate = draw(st.sampled_from(["paid", "closed", "paid+closed", "unpaid"]))
        lives.append((order_id, "created", created, 0))
        if fate.startswith("paid"):
            lives.append((order_id, "paid", created + 10, draw(st.integers(1, 90_000))))
        if fate.endswith("closed"):
            lives.append((order_id, "closed", created + 20, 0))
        if fate == "unpaid":
            unpaid.add(order_id)
    return sorted(lives, key=lambda event: event[2]), unpaid


@settings(max_examples=400)
@given(st.data())
def test_any_arrival_of_a_buyers_order_events_gives_the_ordered_facts(data):
    ordered, unpaid = data.draw(buyer_lives())
    arrival = list(data.draw(st.permutations(ordered)))
    for _again in range(data.draw(st.integers(0, len(ordered)))):
        arrival.insert(data.draw(st.integers(0, len(arrival))),
                       data.draw(st.sampled_from(ordered)))

    def fold(events):
        facts, started = Facts(), []
        for order_id, event, ts, amount in events:
            after = order_event(facts, order_id, event, ts, amount)
            started.append(started_trigger(facts, after, order_id, event))
            facts = after
        return facts, started

    expected, started_in_order = fold(ordered)
    facts, started = fold(arrival)
    assert facts == expected
    assert {order for order, _created in facts.unpaid} == unpaid
    # a payment starts `paid` once per order, however its events arrive
    paid = [event[0] for event in ordered if event[1] == "paid"]
    assert started.count("paid") == started_in_order.count("paid") == len(paid)
    # every order still waiting started `created_unpaid` once (a reminder can only go to
    # those: the trigger is checked again when its delay is over)
    assert started.count("created_unpaid") <= len({event[0] for event in ordered})
    for order_id in unpaid:
        firsts = [n for n, event in enumerate(arrival)
                  if event[:2] == (order_id, "created")]
        assert started[firsts[0]] == "created_unpaid"
        assert [started[n] for n in firsts[1:]] == [None] * (len(firsts) - 1)
