"""An order's view: its timeline in time order, each event once, its attribution once."""

from __future__ import annotations

from app.domain.order_views import (
    PROMOTER_ORDER_FIELDS,
    empty_view,
    promoter_order,
    with_attribution,
    with_event,
)


def timeline_of(*events: tuple[str, int, str | None, int]) -> list[list]:
    view = empty_view()
    for event, ts_ms, refund_id, seen_ms in events:
        view = with_event(view, event, ts_ms, refund_id, seen_ms) or view
    return view["timeline"]


def test_events_are_ordered_by_time_then_by_when_they_were_seen():
    assert timeline_of(("paid", 20, None, 1), ("created", 10, None, 2),
                       ("refund_started", 20, "r1", 0)) == [
        ["created", 10, None, 2], ["refund_started", 20, "r1", 0], ["paid", 20, None, 1]]


def test_the_same_event_twice_is_not_added():
    view = with_event(empty_view(), "paid", 20, None, 1)

    assert with_event(view, "paid", 20, None, 5) is None
    assert with_event(view, "paid", 21, None, 5) is not None  # another time: another event


def test_refunds_are_told_apart_by_their_id():
    assert [step[2] for step in timeline_of(("refunded", 30, "r1", 1), ("refunded", 30, "r2", 2),
                                            ("refunded", 30, "r1", 3))] == ["r1", "r2"]


def test_adding_leaves_the_view_given_unchanged():
    view = with_event(empty_view(), "created", 10, None, 1)

    with_event(view, "paid", 20, None, 2)
    with_attribution(view, {"order_id": "o1"})

    assert view == {"timeline": [["created", 10, None, 1]], "attribution": None}


def test_an_order_is_attributed_once():
    first = with_attribution(empty_view(), {"order_id": "o1", "promoter_id": "p1"})

    assert first["attribution"] == {"order_id": "o1", "promoter_id": "p1"}
    assert with_attribution(first, {"order_id": "o1", "promoter_id": "p2"}) is None


def test_a_promoter_order_keeps_the_summary_fields_only():
    attribution = {"order_id": "o1", "ts_ms": 10, "promoter_id": "p1", "delayed": False,
                   "reason": None}

    summary = promoter_order(attribution)

    assert set(summary) == set(PROMOTER_ORDER_FIELDS)
    assert (summary["order_id"], summary["promoter_id"], summary["click_id"]) == ("o1", "p1", None)
