"""Order events: one routing step to the two partitions that need each of them.

An order event is attributed in its buyer's partition (beside the buyer's
clicks) and booked in its order's partition (beside the order's ledger).
Producers key cps.orders by order id, so the event is booked where it is
read and re-keyed by buyer for attribution; an event a producer keyed
otherwise is re-keyed for billing too. Wherever the key already belongs to
the partition being read, the event is handled in place, without a hop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.domain.model import OrderEvent
from app.engine.handler_context import HandlerContext
from app.records.inputs import decode_order

if TYPE_CHECKING:
    from app.engine.processor import Engine
    from app.kafka.topics import Topics


class OrderRouter:
    def __init__(self, *, by_buyer_topic: str, by_order_topic: str,
                 attribute: Callable[[HandlerContext, OrderEvent], None],
                 book: Callable[[HandlerContext, OrderEvent, bytes], None]) -> None:
        self.by_buyer_topic = by_buyer_topic
        self.by_order_topic = by_order_topic
        self.attribute = attribute
        self.book = book

    def on_order(self, ctx: HandlerContext, key: bytes | None, value: bytes | None) -> None:
        event = decode_order(value)
        # At once, outside the transaction: attribution treats a second copy as a no-op
        # (one attribution per order); billing's copy goes with the transaction.
        if ctx.route(event.buyer_id.encode(), self.by_buyer_topic, value, at_once=True):
            self.attribute(ctx, event)
        if ctx.route(event.order_id.encode(), self.by_order_topic, value):
            self.book(ctx, event, value)


def register(*, engine: Engine, topics: Topics, attribute: Callable[[Any, OrderEvent], None],
             book: Callable[[Any, OrderEvent, bytes], None]) -> OrderRouter:
    """Read cps.orders: each event to `attribute` in its buyer's partition and to `book` in
    its order's partition."""
    router = OrderRouter(by_buyer_topic=topics.orders_by_buyer,
                         by_order_topic=topics.orders_by_order, attribute=attribute, book=book)
    engine.pipeline("orders", {topics.orders: router.on_order},
                    outputs=(topics.orders_by_buyer, topics.orders_by_order))
    return router
