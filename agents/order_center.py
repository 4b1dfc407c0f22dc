"""The order center: what operators and promoters look up about orders.

Each order's view (timeline of its events and its attribution) is kept as
billing reads the order's events and attribution, beside the order's ledger
(billing calls `note_order_event` and `note_attribution`). Attributed
orders are also re-keyed by promoter, and this pipeline keeps each
promoter's list, newest first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from app.domain.model import OrderEvent
from app.domain.order_views import empty_view, promoter_order, with_attribution, with_event
from app.engine.handler_context import HandlerContext
from app.records.internal import decode_promoter_order
from tables import every_table
from tables.order_center import OrderCenterTables

if TYPE_CHECKING:
    from app.engine.processor import Engine
    from app.kafka.topics import Topics

# Keys sort newest first: the order time is stored as (MAX_TS - ts_ms), in 16 digits; the
# largest 16-digit number keeps every accepted ts_ms (0 to 2**53 - 1) within them.
MAX_TS = 10**16 - 1


class OrderCenter:
    def __init__(self, *, tables: OrderCenterTables, by_promoter_topic: str) -> None:
        self.tables = tables
        self.by_promoter_topic = by_promoter_topic

    def note_order_event(self, ctx: HandlerContext, event: OrderEvent) -> bool:
        """Add an order event to its order's timeline; False when it was there already."""
        key = event.order_id.encode()
        refund_id = event.refund.refund_id if event.refund else None
        view = with_event(ctx.get(self.tables.order_views, key) or empty_view(), event.event,
                          event.ts_ms, refund_id, ctx.now_ms)
        if view is None:
            return False
        ctx.put(self.tables.order_views, key, view)
        return True

    def note_attribution(self, ctx: HandlerContext, order_id: str, attribution: dict) -> None:
        key = order_id.encode()
        view = with_attribution(ctx.get(self.tables.order_views, key) or empty_view(),
                                attribution)
        if view is None:
            return
        ctx.put(self.tables.order_views, key, view)
        promoter = attribution.get("promoter_id")
        if promoter:
            ctx.send(self.by_promoter_topic, promoter.encode(),
                     orjson.dumps(promoter_order(attribution)))

    def on_promoter_order(self, ctx: HandlerContext, key: bytes | None, value: bytes | None
                          ) -> None:
        summary = decode_promoter_order(key, value)
        ctx.put(self.tables.promoter_orders,
                promoter_order_key(summary["promoter_id"], summary["ts_ms"],
                                   summary["order_id"]), summary)


def promoter_order_key(promoter_id: str, ts_ms: int, order_id: str) -> bytes:
    return b"%s\x1f%016d\x1f%s" % (promoter_id.encode(), MAX_TS - ts_ms, order_id.encode())


def register(*, engine: Engine, topics: Topics,
             order_center_tables: OrderCenterTables) -> OrderCenter:
    """Keep the promoters' order lists from the re-keyed attributed orders."""
    center = OrderCenter(tables=order_center_tables, by_promoter_topic=topics.orders_by_promoter)
    engine.pipeline("promoter_orders", {topics.orders_by_promoter: center.on_promoter_order},
                    outputs=[topics.orders_by_promoter], tables=every_table(order_center_tables))
    return center
