"""Balances: each account's frozen, settled and clawed-back money, from cps.settlements."""

from __future__ import annotations

from app.engine.partitioning import partition_for
from app.engine.processor import Context
from app.main import app, settings, topics
from app.records import InvalidEvent, decode_settlement
from app.services import engine
from tables.balances import balance_seen, balances

source = engine.source(topics.settlements)

FROZEN, SETTLED, CLAWED_BACK = 0, 1, 2


@app.agent(source, name="balances")
async def balances_agent(stream) -> None:
    await engine.consume(stream)


def on_settlement(ctx: Context, key: bytes | None, value: bytes | None) -> None:
    settlement = decode_settlement(value)
    account_key = settlement.account_id.encode()
    if partition_for(account_key, settings.partitions) != ctx.partition:
        raise InvalidEvent("settlement not keyed by its account_id")
    seen_key = b"\x1f".join((account_key, settlement.order_id.encode(),
                             settlement.participant.encode()))
    if settlement.seq <= (ctx.get(balance_seen, seen_key) or 0):
        return  # already applied: a replay changes nothing
    ctx.put(balance_seen, seen_key, settlement.seq)
    balance = list(ctx.get(balances, account_key) or (0, 0, 0))
    if settlement.state == "settled":
        balance[FROZEN] -= settlement.amount
        balance[SETTLED] += settlement.amount
    elif settlement.state == "clawback":
        balance[CLAWED_BACK] += settlement.amount
    else:  # frozen, adjusted
        balance[FROZEN] += settlement.amount
    ctx.put(balances, account_key, balance)


engine.handle(topics.settlements, on_settlement)
