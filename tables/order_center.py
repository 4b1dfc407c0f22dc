"""State of the order center (the views of orders, promoters' orders).

- order_views: order_id -> {"timeline": [[event, ts_ms, refund_id|null, seen_ms], ...],
  "attribution": the published attribution or null}; partitioned by order, beside the ledger
- promoter_orders: "<promoter_id>\\x1f<inverted ts_ms>\\x1f<order_id>" -> summary of the
  order; partitioned by promoter, newest first in key order
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from app.engine.processor import Engine
from app.engine.state import StateTable


@dataclass(frozen=True, slots=True)
class OrderCenterTables:
    order_views: StateTable
    promoter_orders: StateTable


def define(engine: Engine) -> OrderCenterTables:
    return OrderCenterTables(
        order_views=engine.state_table("order_views", encode=orjson.dumps,
                                       decode=orjson.loads),
        promoter_orders=engine.state_table("promoter_orders", encode=orjson.dumps,
                                           decode=orjson.loads),
    )
