"""Balances: each account's frozen, settled and clawed-back money, from cps.settlements."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.domain.balances import Balance, apply_settlement, is_new
from app.engine.handler_context import HandlerContext
from app.records.fields import InvalidEvent
from app.records.outputs import decode_settlement
from tables import every_table
from tables.balances import BalanceTables

if TYPE_CHECKING:
    from app.engine.processor import Engine
    from app.kafka.topics import Topics


class Balances:
    def __init__(self, tables: BalanceTables) -> None:
        self.tables = tables

    def on_settlement(self, ctx: HandlerContext, key: bytes | None, value: bytes | None) -> None:
        settlement = decode_settlement(value)
        account_key = settlement.account_id.encode()
        if not ctx.owns(account_key):
            raise InvalidEvent("settlement not keyed by its account_id")
        payee_key = b"\x1f".join((account_key, settlement.order_id.encode(),
                                  settlement.participant.encode()))
        if not is_new(settlement.seq, ctx.get(self.tables.balance_seen, payee_key)):
            return  # already applied: a replay changes nothing
        ctx.put(self.tables.balance_seen, payee_key, settlement.seq)
        balance = ctx.get(self.tables.balances, account_key) or Balance()
        ctx.put(self.tables.balances, account_key,
                apply_settlement(balance, settlement.state, settlement.amount))


def register(*, engine: Engine, topics: Topics, balance_tables: BalanceTables) -> Balances:
    """Read cps.settlements into each account's balance."""
    balances = Balances(balance_tables)
    engine.pipeline("balances", {topics.settlements: balances.on_settlement},
                    tables=every_table(balance_tables))
    return balances
