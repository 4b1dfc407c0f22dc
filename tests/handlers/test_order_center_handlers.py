"""The order center: each order's timeline and attribution, each promoter's orders."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

import tables.order_center
from agents.order_center import OrderCenter, promoter_order_key
from app.domain.order_views import promoter_order
from app.engine.memory import MemoryTables
from app.records.fields import MAX_SAFE_INT
from app.records.inputs import decode_order
from tests.handlers.contexts import new_context

BY_PROMOTER = "orders-by-promoter"
T = 1_700_000_000_000
ATTRIBUTION = {"order_id": "o1", "ts_ms": T, "attributed_ms": T + 50, "buyer_id": "u1",
               "shop_id": "s1", "type": "cps", "mode": "last_click", "reason": None,
               "click_id": "c1", "channel_id": "kuaishou", "promoter_id": "p1",
               "group_leader_id": None, "base_id": None, "delayed": False}


class Center:
    def __init__(self) -> None:
        self.ctx = new_context(now_ms=T + 1000)
        self.tables = tables.order_center.define(MemoryTables())
        self.center = OrderCenter(tables=self.tables, by_promoter_topic=BY_PROMOTER)

    def view(self, order_id: str = "o1") -> dict | None:
        return self.ctx.get(self.tables.order_views, order_id.encode())


def test_the_timeline_is_in_time_order_and_holds_each_event_once(order_event):
    center = Center()
    refund = {"refund_id": "r1", "item_id": "i1", "amount": 100}
    events = [order_event("paid", T + 20), order_event("created", T + 10),
              order_event("paid", T + 20), order_event("refunded", T + 30, refund=refund),
              order_event("refunded", T + 30, refund={**refund, "refund_id": "r2"})]

    noted = [center.center.note_order_event(center.ctx, decode_order(raw)) for raw in events]

    assert noted == [True, True, False, True, True]
    assert [step[:3] for step in center.view()["timeline"]] == [
        ["created", T + 10, None], ["paid", T + 20, None], ["refunded", T + 30, "r1"],
        ["refunded", T + 30, "r2"]]


def test_an_attribution_is_noted_once_and_its_summary_sent_to_the_promoter_once():
    center = Center()

    center.center.note_attribution(center.ctx, "o1", ATTRIBUTION)
    center.center.note_attribution(center.ctx, "o1", {**ATTRIBUTION, "promoter_id": "p2"})

    assert center.view()["attribution"] == ATTRIBUTION
    (sent,) = center.ctx.sent
    assert (sent.topic, sent.key) == (BY_PROMOTER, b"p1")
    assert orjson.loads(sent.value) == {
        "order_id": "o1", "ts_ms": T, "buyer_id": "u1", "shop_id": "s1",
        "channel_id": "kuaishou", "promoter_id": "p1", "type": "cps", "mode": "last_click",
        "click_id": "c1"}


def test_an_order_attributed_to_nobody_goes_to_no_promoter():
    center = Center()
    nobody = {**ATTRIBUTION, "type": "none", "mode": None, "reason": "no_click",
              "click_id": None, "channel_id": None, "promoter_id": None}

    center.center.note_attribution(center.ctx, "o1", nobody)

    assert center.view()["attribution"] == nobody
    assert center.ctx.sent == []


def test_a_promoters_orders_are_stored_newest_first():
    center = Center()
    summaries = [promoter_order({**ATTRIBUTION, "order_id": order_id, "ts_ms": ts_ms,
                                 "promoter_id": promoter})
                 for order_id, ts_ms, promoter in [("o1", T + 10, "p1"), ("o2", T + 30, "p1"),
                                                   ("o3", T + 20, "p1"), ("o4", T + 40, "p2"),
                                                   ("o2", T + 30, "p1")]]

    for summary in summaries:
        center.ctx.deliver(center.center.on_promoter_order, BY_PROMOTER,
                           summary["promoter_id"].encode(), orjson.dumps(summary))

    rows = center.tables.promoter_orders.scan_prefix(center.ctx.partition, b"p1\x1f", limit=10)
    assert [summary["order_id"] for _key, summary in rows] == ["o2", "o3", "o1"]
    assert rows[0] == (promoter_order_key("p1", T + 30, "o2"), summaries[1])


@given(st.lists(st.integers(0, MAX_SAFE_INT), min_size=2, max_size=5, unique=True))
def test_newest_first_holds_for_every_order_time_an_event_may_carry(times):
    keys = {promoter_order_key("p1", ts_ms, "o"): ts_ms for ts_ms in times}

    assert [keys[key] for key in sorted(keys)] == sorted(times, reverse=True)
