"""What the handler tests share: the two contexts each test runs on, and order events as
producers write them on cps.orders."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from tests.handlers.contexts import CONTEXTS, running

OrderEventBytes = Callable[..., bytes]


@pytest.fixture(autouse=True, params=sorted(CONTEXTS))
def handler_context(request: pytest.FixtureRequest):
    """Each handler test runs on the tests' MemoryContext and on the engine's own Context
    (contexts.py): what a test's `new_context()` makes."""
    with running(CONTEXTS[request.param]):
        yield


@pytest.fixture
def order_event() -> OrderEventBytes:
    """Makes an order event's wire value: `items` are (item_id, amount) pairs, `fields` the
    optional fields (refund, channel_id, ...)."""

    def make(kind: str, ts_ms: int, *, order_id: str = "o1", buyer_id: str = "u1",
             shop_id: str = "s1", items: tuple[tuple[str, int], ...] = (("i1", 12900),),
             **fields: object) -> bytes:
        return orjson.dumps({
            "order_id": order_id, "event": kind, "ts_ms": ts_ms, "buyer_id": buyer_id,
            "shop_id": shop_id,
            "items": [{"item_id": item_id, "amount": amount} for item_id, amount in items],
            **fields})

    return make
