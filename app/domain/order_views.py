"""What the order center shows of one order: its timeline and its attribution.

A view is `{"timeline": [[event, ts_ms, refund_id|None, seen_ms], ...],
"attribution": dict|None}`, kept as plain JSON. The same order event read
twice (a replay, or a producer sending it again) appears once: an event is
the same when its name, time and refund id are.
"""

from __future__ import annotations

from typing import Any

View = dict[str, Any]


def empty_view() -> View:
    return {"timeline": [], "attribution": None}


def with_event(view: View, event: str, ts_ms: int, refund_id: str | None,
               seen_ms: int) -> View | None:
    """The view with one more order event, in time order; None when it is there already."""
    if any(step[0] == event and step[1] == ts_ms and step[2] == refund_id
           for step in view["timeline"]):
        return None
    timeline = sorted([*view["timeline"], [event, ts_ms, refund_id, seen_ms]],
                      key=lambda step: (step[1], step[3]))
    return {**view, "timeline": timeline}


def with_attribution(view: View, attribution: dict[str, Any]) -> View | None:
    """The view with its attribution; None when it has one (an order is attributed once)."""
    if view["attribution"] is not None:
        return None
    return {**view, "attribution": attribution}


PROMOTER_ORDER_FIELDS = ("order_id", "ts_ms", "buyer_id", "shop_id", "channel_id",
                         "promoter_id", "type", "mode", "click_id")


def promoter_order(attribution: dict[str, Any]) -> dict[str, Any]:
    """The summary of an attributed order in its promoter's list."""
    return {name: attribution.get(name) for name in PROMOTER_ORDER_FIELDS}
