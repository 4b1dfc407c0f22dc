"""Orders waiting for their clicks to be read, for `created` or for a late click."""

from __future__ import annotations

from app.domain.attribution import (
    Decision,
    Reason,
    Type,
    WaitingIndex,
    hold,
    is_delayed,
    may_decide,
    next_decision,
    record_event,
    start_waiting,
)
from app.domain.model import OrderFacts

NOW = 1_700_000_000_000
GRACE = 30_000


def facts(event: str, ts_ms: int, **extra) -> OrderFacts:
    return OrderFacts(order_id="o1", event=event, ts_ms=ts_ms, buyer_id="u1", shop_id="s1",
                      **extra)


CPS = Decision(Type.CPS)
NO_CLICK = Decision(Type.NONE, reason=Reason.NO_CLICK, cps_failure=Reason.NO_CLICK)
NOT_CPS = Decision(Type.NONE, reason=Reason.SHOP_NOT_CPS, cps_failure=Reason.SHOP_NOT_CPS)


def always(decision):
    return lambda _facts: decision


def test_created_first_is_decided_at_once_when_cps():
    waiting = start_waiting(facts("created", 100), now_ms=NOW, grace_ms=GRACE)
    assert next_decision(waiting, NOW, always(CPS)) is CPS


def test_without_a_click_the_order_waits_until_the_deadline():
    waiting = start_waiting(facts("created", 100), now_ms=NOW, grace_ms=GRACE)
    assert waiting.deadline_ms == NOW + GRACE
    assert next_decision(waiting, NOW + GRACE - 1, always(NO_CLICK)) is None
    assert next_decision(waiting, NOW + GRACE, always(NO_CLICK)) is NO_CLICK


def test_a_failure_no_click_could_change_is_decided_at_once():
    waiting = start_waiting(facts("created", 100), now_ms=NOW, grace_ms=GRACE)
    assert next_decision(waiting, NOW, always(NOT_CPS)) is NOT_CPS


def test_paid_before_created_waits_for_created_then_uses_its_time():
    waiting = start_waiting(facts("paid", 200), now_ms=NOW, grace_ms=GRACE)
    assert next_decision(waiting, NOW + 1, always(CPS)) is None
    waiting = record_event(waiting, facts("created", 150))
    seen = []
    assert next_decision(waiting, NOW + 2, lambda f: seen.append(f) or CPS) is CPS
    assert seen[0].event == "created" and seen[0].ts_ms == 150


def test_without_created_the_earliest_event_decides_after_the_grace_period():
    waiting = start_waiting(facts("paid", 200, fanstype="douyin"), now_ms=NOW, grace_ms=GRACE)
    waiting = record_event(waiting, facts("completed", 300))
    waiting = record_event(waiting, facts("refund_started", 120))
    assert waiting.facts.ts_ms == 120
    seen = []
    assert next_decision(waiting, NOW + GRACE, lambda f: seen.append(f) or CPS) is CPS
    assert seen[0].ts_ms == 120


def test_the_first_created_wins_and_duplicates_change_nothing():
    waiting = start_waiting(facts("created", 100), now_ms=NOW, grace_ms=GRACE)
    assert record_event(waiting, facts("created", 100)) is waiting
    assert record_event(waiting, facts("created", 500)).created.ts_ms == 100


def test_waiting_index():
    index = WaitingIndex()
    index.add("o1", "u1", 30)
    index.add("o2", "u1", 10)
    index.add("o3", "u2", 20)
    assert index.of_buyer("u1") == ["o1", "o2"]
    assert index.due(15) == ["o2"]
    index.discard("o2", "u1")
    assert index.of_buyer("u1") == ["o1"]
    assert index.due(100) == ["o3", "o1"]
    assert len(index) == 2
    index.discard("o1", "u1")
    index.discard("o3", "u2")
    assert len(index) == 0
    assert index.of_buyer("u1") == []


def test_a_decision_is_worth_trying_when_created_arrives_and_not_before():
    paid = start_waiting(facts("paid", 200), now_ms=NOW, grace_ms=GRACE)
    assert not may_decide(None, paid)
    created = record_event(paid, facts("created", 150))
    assert may_decide(paid, created)
    assert may_decide(None, start_waiting(facts("created", 1), now_ms=NOW, grace_ms=GRACE))
    assert not may_decide(created, record_event(created, facts("paid", 100)))


def test_delayed_means_held_for_created_or_for_a_click_whatever_the_lag():
    created = start_waiting(facts("created", 100), now_ms=NOW, grace_ms=GRACE)
    assert not created.held and not is_delayed(created, CPS)
    assert is_delayed(created, NO_CLICK)  # waited for a click, or its grace ran out meanwhile
    assert not is_delayed(created, NOT_CPS)
    held = hold(created)
    assert held.held and hold(held) is held and is_delayed(held, CPS)  # a late click came
    paid_first = record_event(start_waiting(facts("paid", 200), now_ms=NOW, grace_ms=GRACE),
                              facts("created", 150))
    assert paid_first.held and is_delayed(paid_first, CPS)


def test_orders_behind_tickets_come_back_once_each_in_order():
    index = WaitingIndex()
    index.add("o1", "u1", 30)
    index.add("o2", "u2", 30)
    index.behind("o2", 1)
    index.behind("o1", 1)
    index.behind("o2", 2)
    index.behind("o1", 3)
    index.reach(2)
    assert drain_ready(index) == ["o2", "o1"]
    index.reach(2)
    assert drain_ready(index) == []
    index.reach(5)
    assert drain_ready(index) == ["o1"]
    assert index.waiting() == ["o1", "o2"]


def test_an_order_ready_once_stays_ready_once_however_many_tickets_reach_it():
    index = WaitingIndex()
    index.behind("o1", 1)
    index.behind("o2", 1)
    index.reach(1)
    assert index.next_ready() == "o1"
    index.behind("o2", 2)
    index.behind("o1", 2)
    index.reach(2)  # o2 is still ready from ticket 1: not twice; o1 comes again
    assert drain_ready(index) == ["o2", "o1"]


def drain_ready(index: WaitingIndex) -> list[str]:
    orders = []
    while (order_id := index.next_ready()) is not None:
        orders.append(order_id)
    return orders
