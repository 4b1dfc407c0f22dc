"""State of the order center (the views of orders, promoters' orders).

- order_views: order_id -> {"timeline": [[event, ts_ms, refund_id|null, seen_ms], ...],
  "attribution": the published attribution or null}; partitioned by order, beside the ledger
- promoter_orders: "<promoter_id>\\x1f<inverted ts_ms>\\x1f<order_id>" -> summary of the
  order; partitioned by promoter, newest first in key order
"""

from __future__ import annotations

import orjson

from app.main import settings
from app.services import ROCKSDB_OPTIONS, engine

order_views = engine.state_table(
    "order_views", partitions=settings.partitions, encode=orjson.dumps, decode=orjson.loads,
    rocksdb_options=ROCKSDB_OPTIONS,
)

promoter_orders = engine.state_table(
    "promoter_orders", partitions=settings.partitions, encode=orjson.dumps,
    decode=orjson.loads, rocksdb_options=ROCKSDB_OPTIONS,
)
