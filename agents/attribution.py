"""Attribution: clicks and orders meet per buyer; one attribution per order goes out.

Clicks are keyed by buyer and orders by order id, so orders (and clicks a
producer keyed otherwise) are first re-keyed by buyer onto internal topics;
a record that already sits in its buyer's partition is handled in place.
"""

from __future__ import annotations

from app.domain import clicks as click_history
from app.domain.attribution import (
    Decision,
    WaitingIndex,
    conclude,
    decide,
    next_decision,
    record_event,
    start_waiting,
)
from app.domain.model import Click, OrderEvent, OrderFacts
from app.domain.tokens import TRACKING, TokenError, click_from_tracking
from app.engine.partitioning import partition_for
from app.engine.processor import Context
from app.main import app, settings, topics
from app.records import decode_click, decode_order, encode_attribution
from app.services import catalog, engine, monitor, signer, sink_registry
from app.sinks.fanout import fan_out
from tables.attribution import attributed, clicks, order_waits

# cps.orders is read by the billing agent, which hands each order event to `accept_order`.
source = engine.source(
    topics.clicks, topics.clicks_by_buyer, topics.orders_by_buyer,
)


@app.agent(source, name="attribution")
async def attribution(stream) -> None:
    await engine.consume(stream)


def on_click(ctx: Context, key: bytes | None, value: bytes | None) -> None:
    click = decode_click(value)
    if _in_buyer_partition(ctx, click.buyer_id, topics.clicks_by_buyer, value):
        _record_click(ctx, click.buyer_id.encode(), click)


def on_rekeyed_click(ctx: Context, key: bytes | None, value: bytes | None) -> None:
    click = decode_click(value)
    _record_click(ctx, click.buyer_id.encode(), click)


def accept_order(ctx: Context, event: OrderEvent, value: bytes) -> None:
    """An order event for attribution: decided here if in its buyer's partition, else forwarded."""
    if _in_buyer_partition(ctx, event.buyer_id, topics.orders_by_buyer, value):
        _attribute_event(ctx, event.facts())


def on_rekeyed_order(ctx: Context, key: bytes | None, value: bytes | None) -> None:
    _attribute_event(ctx, decode_order(value).facts())


def _in_buyer_partition(ctx: Context, buyer_id: str, rekeyed_topic: str, value: bytes) -> bool:
    """True when the record sits in its buyer's partition; otherwise forward it there.

    Forwarded at once, outside the transaction: a second copy after a crash is
    harmless here (one attribution per order, clicks deduplicated by id).
    """
    buyer_key = buyer_id.encode()
    if partition_for(buyer_key, settings.partitions) == ctx.partition:
        return True
    ctx.forward(rekeyed_topic, buyer_key, value)
    return False


def expire_waiting_orders(ctx: Context) -> None:
    """Timer: decide the orders whose grace period is over."""
    index = ctx.cache(_load_waiting_index)
    for order_id in index.due(ctx.now_ms):
        order_key = order_id.encode()
        waiting = ctx.get(order_waits, order_key)
        if waiting is None:
            continue  # decided in the meantime
        decision = next_decision(waiting, ctx.now_ms, lambda facts: _decide(ctx, facts))
        if decision is not None:
            _publish(ctx, waiting.facts, decision, delayed=True)


def _record_click(ctx: Context, buyer_key: bytes, click: Click) -> None:
    history = ctx.get(clicks, buyer_key) or []
    updated = click_history.add_click(
        history, click_history.to_row(click), now_ms=ctx.now_ms,
        retention_ms=settings.click_retention_ms, cap=settings.click_history_cap,
    )
    if updated is None:
        return  # a duplicate click changes nothing
    ctx.put(clicks, buyer_key, updated)
    index = ctx.cache(_load_waiting_index)
    for order_id in index.of_buyer(click.buyer_id):
        waiting = ctx.get(order_waits, order_id.encode())
        if waiting is None:
            index.discard(order_id, click.buyer_id)
            continue
        decision = next_decision(waiting, ctx.now_ms, lambda facts: _decide(ctx, facts))
        if decision is not None:
            _publish(ctx, waiting.facts, decision, delayed=True)


def _attribute_event(ctx: Context, facts: OrderFacts) -> None:
    order_key = facts.order_id.encode()
    if ctx.get(attributed, order_key) is not None:
        return  # one attribution per order; later events change nothing
    stored = ctx.get(order_waits, order_key)
    if stored is None:
        waiting = start_waiting(facts, now_ms=ctx.now_ms, grace_ms=settings.attribution_grace_ms)
    else:
        waiting = record_event(stored, facts)
    decision = next_decision(waiting, ctx.now_ms, lambda f: _decide(ctx, f))
    if decision is not None:
        _publish(ctx, waiting.facts, decision, delayed=stored is not None)
    elif waiting is not stored:
        ctx.put(order_waits, order_key, waiting)
        if stored is None:
            ctx.cache(_load_waiting_index).add(facts.order_id, facts.buyer_id,
                                               waiting.deadline_ms)


def _decide(ctx: Context, facts: OrderFacts) -> Decision:
    history = ctx.get(clicks, facts.buyer_id.encode()) or []
    return decide(facts, history, catalog.shop(facts.shop_id), catalog.channel,
                  _tracked_click(facts))


def _tracked_click(facts: OrderFacts) -> Click | None:
    """The click in the order's tracking token, if the token is genuine (judged at T)."""
    if not facts.tracking:
        return None
    try:
        return click_from_tracking(signer.verify(TRACKING, facts.tracking, now_ms=facts.ts_ms))
    except TokenError:
        return None


def _publish(ctx: Context, facts: OrderFacts, decision: Decision, *, delayed: bool) -> None:
    order_key = facts.order_id.encode()
    if delayed:
        ctx.delete(order_waits, order_key)
        ctx.cache(_load_waiting_index).discard(facts.order_id, facts.buyer_id)
    if ctx.get(attributed, order_key) is not None:
        return  # never a second attribution, whatever state a bug or a replay left behind
    result = conclude(facts, decision, attributed_ms=ctx.now_ms, delayed=delayed)
    ctx.send(topics.attributions, order_key, encode_attribution(result))
    ctx.put(attributed, order_key, result.attributed_ms)
    monitor.record_attribution(result.ts_ms, result.attributed_ms, result.click_ts_ms, delayed)
    fan_out(ctx, sink_registry, "attributions", facts.order_id, f"attribution:{facts.order_id}",
            result, {"channel_id": result.channel_id, "shop_id": result.shop_id,
                     "promoter_id": result.promoter_id, "type": result.type.value})


def _load_waiting_index(ctx: Context) -> WaitingIndex:
    index = WaitingIndex()
    for _key, waiting in order_waits.scan(ctx.partition):
        index.add(waiting.first.order_id, waiting.first.buyer_id, waiting.deadline_ms)
    return index


engine.handle(topics.clicks, on_click)
engine.handle(topics.clicks_by_buyer, on_rekeyed_click)
engine.handle(topics.orders_by_buyer, on_rekeyed_order)
engine.every_tick(expire_waiting_orders)
