"""State of billing, partitioned by order (like the orders and attributions topics).

- ledgers: order_id -> Ledger (app.domain.ledger), the money of each order
- due_payees: "<due_ms:016d>\\x1f<order_id>\\x1f<participant>" -> b"", payees waiting to be
  settled, in due-time order (RocksDB keeps keys sorted, so the check reads from the start)
"""

from __future__ import annotations

from dataclasses import dataclass

from app.engine.processor import Engine
from app.engine.state import StateTable
from app.records.codecs import decode_ledger, encode_ledger


@dataclass(frozen=True, slots=True)
class BillingTables:
    ledgers: StateTable
    due_payees: StateTable


def define(engine: Engine) -> BillingTables:
    return BillingTables(
        ledgers=engine.state_table("ledgers", encode=encode_ledger, decode=decode_ledger),
        due_payees=engine.state_table("due_payees", encode=bytes, decode=bytes),
    )
