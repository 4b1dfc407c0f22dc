"""State of billing, partitioned by order (like the orders and attributions topics).

- ledgers: order_id -> Ledger (app.domain.ledger), the money of each order
- due_payees: "<due_ms:016d>\\x1f<order_id>\\x1f<participant>" -> b"", payees waiting to be
  settled, in due-time order (RocksDB keeps keys sorted, so the check reads from the start)
"""

from __future__ import annotations

from app.codecs import decode_ledger, encode_ledger
from app.main import settings
from app.services import ROCKSDB_OPTIONS, engine

ledgers = engine.state_table(
    "ledgers", partitions=settings.partitions, encode=encode_ledger, decode=decode_ledger,
    rocksdb_options=ROCKSDB_OPTIONS,
)

due_payees = engine.state_table(
    "due_payees", partitions=settings.partitions, encode=bytes, decode=bytes,
    rocksdb_options=ROCKSDB_OPTIONS,
)
