"""Billing: every order's commissions and settlement, partitioned by order.

Reads the orders (keyed by order id), the attributions this engine
publishes (keyed by order id) and orders a producer keyed otherwise,
re-keyed onto an internal topic. Each fact goes into the order's ledger
(app.domain.ledger); what changed goes out on cps.commissions (key order
id) and cps.settlements (key account id). A timer runs the settlement check
on the CPS_SETTLEMENT_SCHEDULE cron against the wall clock.
"""

from __future__ import annotations

import orjson

from agents import attribution, order_center
from app.domain import ledger as money
from app.domain.ledger import Ledger, Source, Step
from app.domain.model import OrderEvent
from app.domain.schedule import Schedule
from app.engine.partitioning import partition_for
from app.engine.processor import Context
from app.main import app, settings, topics
from app.records import (
    DEAD_LETTER_VALUE_BYTES,
    decode_attributed,
    decode_order,
    encode_commission,
    encode_settlement,
)
from app.services import catalog, engine, sink_registry
from app.sinks.fanout import fan_out
from tables.billing import due_payees, ledgers

source = engine.source(
    topics.orders, topics.orders_by_order, topics.attributions,
)
schedule = Schedule(settings.settlement_schedule)
# Payees settled per partition and timer run; the rest wait for the next run.
SETTLE_BATCH = 2000


@app.agent(source, name="billing")
async def billing(stream) -> None:
    await engine.consume(stream)


def on_order(ctx: Context, key: bytes | None, value: bytes | None) -> None:
    event = decode_order(value)
    attribution.accept_order(ctx, event, value)
    order_key = event.order_id.encode()
    if partition_for(order_key, settings.partitions) == ctx.partition:
        _book(ctx, event, value)
    else:
        ctx.send(topics.orders_by_order, order_key, value)


def on_rekeyed_order(ctx: Context, key: bytes | None, value: bytes | None) -> None:
    _book(ctx, decode_order(value), value)


def on_attribution(ctx: Context, key: bytes | None, value: bytes | None) -> None:
    order_id, attributed = decode_attributed(value)
    order_center.note_attribution(ctx, order_id, orjson.loads(value))
    ledger = _ledger(ctx, order_id)
    _apply(ctx, ledger, money.record_attribution(ledger, attributed, catalog))


def settle_due_payees(ctx: Context) -> None:
    """Timer: at each firing of the schedule, settle the payees whose due time has passed."""
    state = ctx.cache(_SettlementRuns)
    firing = schedule.last_firing_ms(ctx.now_ms)
    if state.done_for == firing:
        return
    due_keys = due_payees.keys_up_to(ctx.partition, b"%016d\x1f\xff" % ctx.now_ms,
                                     SETTLE_BATCH)
    for order_id in dict.fromkeys(key.split(b"\x1f")[1].decode() for key in due_keys):
        ledger = ctx.get(ledgers, order_id.encode())
        if ledger is not None:
            _apply(ctx, ledger, money.settle_due(ledger, ctx.now_ms))
    if len(due_keys) < SETTLE_BATCH:
        state.done_for = firing


class _SettlementRuns:
    """The schedule firing this partition has finished (rebuilt after a rebalance: run again)."""

    def __init__(self, _ctx: Context) -> None:
        self.done_for: int | None = None


def _book(ctx: Context, event: OrderEvent, value: bytes) -> None:
    message = ctx.message
    origin = Source(message.topic, message.partition, message.offset, message.key,
                    value[:DEAD_LETTER_VALUE_BYTES])
    ledger = _ledger(ctx, event.order_id)
    step = money.record_order_event(ledger, event, catalog, origin)
    if order_center.note_order_event(ctx, event):
        refund_id = event.refund.refund_id if event.refund else None
        _order_status(ctx, step.ledger, event.event, event.ts_ms, refund_id,
                      fallback_channel=event.channel_id or event.fanstype)
    _apply(ctx, ledger, step)


def _ledger(ctx: Context, order_id: str) -> Ledger:
    return ctx.get(ledgers, order_id.encode()) or Ledger(order_id)


def _apply(ctx: Context, before: Ledger, step: Step) -> None:
    """Store the new ledger, publish its events and keep the settlement index current."""
    after = step.ledger
    order_key = after.order_id.encode()
    for origin, reason in step.rejected:
        ctx.dead_letter(reason, source=origin)
    if after == before:
        return
    ctx.put(ledgers, order_key, after)
    facts = _facts(after)
    for commission in step.commissions:
        ctx.send(topics.commissions, order_key, encode_commission(commission))
        fan_out(ctx, sink_registry, "commissions", after.order_id, commission.event_id,
                commission, facts)
    for settlement in step.settlements:
        ctx.send(topics.settlements, settlement.account_id.encode(),
                 encode_settlement(settlement))
        fan_out(ctx, sink_registry, "settlements", after.order_id, settlement.event_id,
                settlement, facts)
    if _fully_settled(after) and not _fully_settled(before):
        _order_status(ctx, after, "settled", ctx.now_ms, None)
    old, new = before.due_entries(), after.due_entries()
    for due_ms, participant in old - new:
        ctx.delete(due_payees, _due_key(due_ms, after.order_id, participant))
    for due_ms, participant in new - old:
        ctx.put(due_payees, _due_key(due_ms, after.order_id, participant), b"")


def _facts(ledger: Ledger, fallback_channel: str | None = None) -> dict[str, object]:
    """What a sink's filters may name about an order."""
    attributed = ledger.attributed
    return {"shop_id": ledger.shop_id,
            "channel_id": (attributed.channel_id if attributed else None) or fallback_channel,
            "promoter_id": attributed.promoter_id if attributed else None,
            "type": attributed.type if attributed else None}


def _fully_settled(ledger: Ledger) -> bool:
    touched = [payee for payee in ledger.payees.values() if payee.touched]
    return bool(touched) and all(payee.settled for payee in touched)


def _order_status(ctx: Context, ledger: Ledger, status: str, ts_ms: int,
                  refund_id: str | None, *, fallback_channel: str | None = None) -> None:
    """Tell the sinks (channel webhooks among them) that the order's status changed."""
    facts = _facts(ledger, fallback_channel)
    event = {"order_id": ledger.order_id, "status": status, "ts_ms": ts_ms,
             "refund_id": refund_id, "shop_id": ledger.shop_id, "channel_id": facts["channel_id"],
             "buyer_id": ledger.buyer_id}
    fan_out(ctx, sink_registry, "order_status", ledger.order_id,
            money.event_id(ledger.order_id, "status", status, refund_id, ts_ms), event, facts)


def _due_key(due_ms: int, order_id: str, participant: str) -> bytes:
    return b"%016d\x1f%s\x1f%s" % (due_ms, order_id.encode(), participant.encode())


engine.handle(topics.orders, on_order)
engine.handle(topics.orders_by_order, on_rekeyed_order)
engine.handle(topics.attributions, on_attribution)
engine.every_tick(settle_due_payees)
