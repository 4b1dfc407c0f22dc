"""Attribution: clicks and orders meet per buyer; one attribution per order goes out.

The handlers are `app.attributor.Attributor`'s; this module wires them to
the engine, the tables and the sinks.
"""

from __future__ import annotations

from app.attributor import (
    AttributionRules,
    AttributionTables,
    AttributionTopics,
    Attributor,
)
from app.domain.attribution import Attribution
from app.engine.processor import Context
from app.main import app, settings, topics
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


def _published(ctx: Context, result: Attribution) -> None:
    monitor.record_attribution(result.ts_ms, result.attributed_ms, result.click_ts_ms,
                               result.delayed)
    fan_out(ctx, sink_registry, "attributions", result.order_id,
            f"attribution:{result.order_id}", result,
            {"channel_id": result.channel_id, "shop_id": result.shop_id,
             "promoter_id": result.promoter_id, "type": result.type.value})


attributor = Attributor(
    topics=AttributionTopics(clicks=topics.clicks, clicks_by_buyer=topics.clicks_by_buyer,
                             orders_by_buyer=topics.orders_by_buyer,
                             attributions=topics.attributions),
    tables=AttributionTables(clicks=clicks, order_waits=order_waits, attributed=attributed),
    rules=AttributionRules(partitions=settings.partitions,
                           grace_ms=settings.attribution_grace_ms,
                           click_retention_ms=settings.click_retention_ms,
                           click_history_cap=settings.click_history_cap),
    catalog=catalog, signer=signer, catch_up=engine.catch_up, published=_published,
)
accept_order = attributor.accept_order

engine.handle(topics.clicks, attributor.on_click)
engine.handle(topics.clicks_by_buyer, attributor.on_rekeyed_click)
engine.handle(topics.orders_by_buyer, attributor.on_rekeyed_order)
engine.every_tick(attributor.expire_waiting_orders)
