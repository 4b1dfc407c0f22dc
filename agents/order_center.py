"""The order center: what operators and promoters look up about orders.

Each order's view (timeline of its events and its attribution) is kept by
the billing agent as it reads the order's events and attribution, beside
the order's ledger. Attributed orders are also re-keyed by promoter, and
the `promoter_orders` agent keeps each promoter's list, newest first.
"""

from __future__ import annotations

import orjson

from app.domain.model import OrderEvent
from app.engine.processor import Context
from app.main import app, topics
from app.services import engine
from tables.order_center import order_views, promoter_orders

source = engine.source(topics.orders_by_promoter)
# Keys sort newest first: the order time is stored as (MAX_TS - ts_ms).
MAX_TS = 10**16


@app.agent(source, name="promoter_orders")
async def promoter_orders_agent(stream) -> None:
    await engine.consume(stream)


def note_order_event(ctx: Context, event: OrderEvent) -> bool:
    """Add an order event to its order's timeline; False when it was there already."""
    key = event.order_id.encode()
    view = ctx.get(order_views, key) or {"timeline": [], "attribution": None}
    refund_id = event.refund.refund_id if event.refund else None
    if any(step[0] == event.event and step[1] == event.ts_ms and step[2] == refund_id
           for step in view["timeline"]):
        return False
    timeline = sorted([*view["timeline"], [event.event, event.ts_ms, refund_id, ctx.now_ms]],
                      key=lambda step: (step[1], step[3]))
    ctx.put(order_views, key, {**view, "timeline": timeline})
    return True


def note_attribution(ctx: Context, order_id: str, attribution: dict) -> None:
    key = order_id.encode()
    view = ctx.get(order_views, key) or {"timeline": [], "attribution": None}
    if view["attribution"] is not None:
        return
    ctx.put(order_views, key, {**view, "attribution": attribution})
    promoter = attribution.get("promoter_id")
    if promoter:
        ctx.send(topics.orders_by_promoter, promoter.encode(), orjson.dumps({
            field: attribution.get(field) for field in (
                "order_id", "ts_ms", "buyer_id", "shop_id", "channel_id", "promoter_id",
                "type", "mode", "click_id")}))


def on_promoter_order(ctx: Context, key: bytes | None, value: bytes | None) -> None:
    summary = orjson.loads(value)
    ctx.put(promoter_orders, promoter_order_key(summary["promoter_id"], summary["ts_ms"],
                                                summary["order_id"]), summary)


def promoter_order_key(promoter_id: str, ts_ms: int, order_id: str) -> bytes:
    return b"%s\x1f%016d\x1f%s" % (promoter_id.encode(), MAX_TS - ts_ms, order_id.encode())


engine.handle(topics.orders_by_promoter, on_promoter_order)
