"""Per-account balances, partitioned by account (like the settlements topic).

- balances: account_id -> Balance, stored as [frozen, settled, clawed_back]
- balance_seen: "<account_id>\\x1f<order_id>\\x1f<participant>" -> last applied settlement seq,
  so a settlement event applied twice changes nothing
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from app.domain.balances import Balance
from app.engine.processor import Engine
from app.engine.state import StateTable


@dataclass(frozen=True, slots=True)
class BalanceTables:
    balances: StateTable
    balance_seen: StateTable


def define(engine: Engine) -> BalanceTables:
    return BalanceTables(
        balances=engine.state_table("balances", encode=lambda row: orjson.dumps(list(row)),
                                    decode=lambda raw: Balance(*orjson.loads(raw))),
        balance_seen=engine.state_table("balance_seen", encode=lambda seq: b"%d" % seq,
                                        decode=int),
    )
