"""The orders pipeline: each event handled where its keys belong, re-keyed otherwise."""

from __future__ import annotations

import orjson
import pytest

from agents.orders import OrderRouter
from app.domain.model import OrderEvent
from app.engine.memory import Sent
from app.engine.partitioning import partition_for
from tests.handlers.contexts import new_context

PARTITIONS = 4
HERE = 2
BY_BUYER, BY_ORDER = "orders-by-buyer", "orders-by-order"
T = 1_700_000_000_000


def id_on(prefix: str, *, here: bool) -> str:
    """The first id `<prefix><n>` whose partition is (or is not) the one under test."""
    return next(ident for n in range(1000) if (partition_for(
        (ident := f"{prefix}{n}").encode(), PARTITIONS) == HERE) == here)


class Router:
    """An `OrderRouter` on partition HERE, recording what it handles in place."""

    def __init__(self) -> None:
        self.ctx = new_context(partition=HERE, partitions=PARTITIONS, now_ms=T)
        self.attributed: list[OrderEvent] = []
        self.booked: list[tuple[OrderEvent, bytes]] = []
        self.router = OrderRouter(
            by_buyer_topic=BY_BUYER, by_order_topic=BY_ORDER,
            attribute=lambda ctx, event: self.attributed.append(event),
            book=lambda ctx, event, value: self.booked.append((event, value)))

    def deliver(self, value: bytes | None) -> None:
        self.ctx.deliver(self.router.on_order, "orders", None, value)


@pytest.mark.parametrize("buyer_here", [True, False])
@pytest.mark.parametrize("order_here", [True, False])
def test_each_half_is_handled_here_or_rekeyed_to_its_partition(order_event, buyer_here,
                                                               order_here):
    buyer_id, order_id = id_on("u", here=buyer_here), id_on("o", here=order_here)
    value = order_event("paid", T, buyer_id=buyer_id, order_id=order_id)
    router = Router()

    router.deliver(value)

    ctx = router.ctx
    assert [(e.order_id, e.buyer_id, e.event) for e in router.attributed] == (
        [(order_id, buyer_id, "paid")] if buyer_here else [])
    assert [(e.order_id, raw) for e, raw in router.booked] == (
        [(order_id, value)] if order_here else [])
    # Attribution's copy leaves at once; billing's goes with the transaction.
    assert ctx.forwarded == ([] if buyer_here else [Sent(BY_BUYER, buyer_id.encode(), value)])
    assert ctx.sent == ([] if order_here else [Sent(BY_ORDER, order_id.encode(), value)])
    assert ctx.dead_letters == []


@pytest.mark.parametrize(("value", "reason"), [
    (b"not json", "not JSON"),
    (None, "empty message"),
    (orjson.dumps(["a", "list"]), "expected a JSON object"),
    (orjson.dumps({"order_id": "o1", "event": "paid", "ts_ms": T, "shop_id": "s1",
                   "items": [{"item_id": "i1", "amount": 1}]}), "buyer_id: required"),
    (orjson.dumps({"order_id": "o1", "event": "shipped", "ts_ms": T, "buyer_id": "u1",
                   "shop_id": "s1"}), "event: must be one of"),
    (orjson.dumps({"order_id": "o1", "event": "paid", "ts_ms": T, "buyer_id": "u1",
                   "shop_id": "s1"}), "items: required"),
])
def test_garbage_is_dead_lettered_and_goes_nowhere(value, reason):
    router = Router()

    router.deliver(value)

    (dead_letter,) = router.ctx.dead_letters
    assert dead_letter.startswith(reason)
    assert router.ctx.sent == router.ctx.forwarded == []
    assert router.attributed == router.booked == []
