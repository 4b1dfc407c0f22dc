"""Per-account balances, partitioned by account (like the settlements topic).

- balances: account_id -> [frozen, settled, clawed_back]
- balance_seen: "<account_id>\\x1f<order_id>\\x1f<participant>" -> last applied settlement seq,
  so a settlement event applied twice changes nothing
"""

from __future__ import annotations

import orjson

from app.main import settings
from app.services import ROCKSDB_OPTIONS, engine

balances = engine.state_table(
    "balances", partitions=settings.partitions, encode=orjson.dumps, decode=orjson.loads,
    rocksdb_options=ROCKSDB_OPTIONS,
)

balance_seen = engine.state_table(
    "balance_seen", partitions=settings.partitions, encode=lambda seq: b"%d" % seq, decode=int,
    rocksdb_options=ROCKSDB_OPTIONS,
)
