"""State of attribution, partitioned by buyer (like the clicks and re-keyed orders).

- clicks: buyer_id -> click history rows (app.domain.clicks)
- order_waits: order_id -> Waiting, for orders held for `created` or a late click
- attributed: order_id -> attributed_ms, so each order is attributed once
"""

from __future__ import annotations

import orjson

from app.codecs import decode_waiting, encode_waiting
from app.main import settings
from app.services import ROCKSDB_OPTIONS, engine

clicks = engine.state_table(
    "clicks", partitions=settings.partitions, encode=orjson.dumps, decode=orjson.loads,
    rocksdb_options=ROCKSDB_OPTIONS,
)

order_waits = engine.state_table(
    "order_waits", partitions=settings.partitions, encode=encode_waiting, decode=decode_waiting,
    rocksdb_options=ROCKSDB_OPTIONS,
)

attributed = engine.state_table(
    "attributed", partitions=settings.partitions, encode=lambda ms: b"%d" % ms, decode=int,
    rocksdb_options=ROCKSDB_OPTIONS,
)
