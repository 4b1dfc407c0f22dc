"""Attribution in a buyer's partition: clicks and orders meet, one attribution per order goes out.

Clicks are keyed by buyer and orders by order id, so orders (and clicks a
producer keyed otherwise) are first re-keyed by buyer onto internal topics;
a record that already sits in its buyer's partition is handled in place.

An order is decided only once every click of its partition's click inputs
that was in Kafka when the order (or the click or timer that re-tries it)
came has been read: the engine's catch-up barrier over those topics
(app/engine/catchup.py). Until then, and while it waits for `created` or a
late click, it is stored in `order_waits`, so the result does not depend on
which topic the worker happens to read first (docs/attribution.md).

The handlers take the engine's per-partition `Context` (state, sends, the
clock); everything else comes in through the constructor, so they run in
tests on the in-memory context (app/engine/memory.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from app.domain import clicks as click_history
from app.domain.attribution import (
    Attribution,
    Decision,
    Waiting,
    WaitingIndex,
    conclude,
    decide,
    hold,
    is_delayed,
    may_decide,
    next_decision,
    record_event,
    start_waiting,
)
from app.domain.model import Channel, Click, OrderEvent, OrderFacts, Shop
from app.domain.tokens import TRACKING, Signer, TokenError, click_from_tracking
from app.engine.handler_context import HandlerContext, Hook
from app.records.inputs import decode_click, decode_rekeyed_click, decode_rekeyed_order
from app.records.outputs import encode_attribution
from app.sinks.fanout import SinkRegistry, fan_out
from tables import every_table
from tables.attribution import AttributionTables

if TYPE_CHECKING:
    from app.config.settings import Settings
    from app.engine.processor import Engine
    from app.kafka.topics import Topics
    from app.services.catalog import Catalog
    from app.services.monitor import Monitor


class Catalog(Protocol):
    def shop(self, shop_id: str) -> Shop | None: ...

    def channel(self, channel_id: str) -> Channel: ...


class CatchUp(Protocol):
    def request(self, ctx: HandlerContext) -> int: ...


class BuyerObserver(Protocol):
    """Told of each new click and each order event in the buyer's partition (plans)."""

    def on_click(self, ctx: HandlerContext, click: Click) -> None: ...

    def on_order(self, ctx: HandlerContext, event: OrderEvent) -> None: ...


@dataclass(frozen=True, slots=True)
class AttributionTopics:
    clicks: str
    clicks_by_buyer: str
    orders_by_buyer: str
    attributions: str


@dataclass(frozen=True, slots=True)
class AttributionRules:
    grace_ms: int
    click_retention_ms: int
    click_history_cap: int


class Attributor:
    """The attribution handlers of the engine, one instance per worker."""

    def __init__(self, *, topics: AttributionTopics, tables: AttributionTables,
                 rules: AttributionRules, catalog: Catalog, signer: Signer,
                 catch_up: Callable[[Iterable[str], Hook], CatchUp],
                 published: Callable[[HandlerContext, Attribution], None],
                 observers: Sequence[BuyerObserver] = ()) -> None:
        self.topics = topics
        self.observers = observers
        self.tables = tables
        self.rules = rules
        self.catalog = catalog
        self.signer = signer
        self.published = published
        self.clicks_read = catch_up((topics.clicks, topics.clicks_by_buyer),
                                    self.decide_caught_up)

    # -- handlers ------------------------------------------------------------------

    def on_click(self, ctx: HandlerContext, key: bytes | None, value: bytes | None) -> None:
        click = decode_click(value)
        # Forwarded at once, outside the transaction: a second copy after a crash is
        # harmless here (clicks are deduplicated by id).
        if ctx.route(click.buyer_id.encode(), self.topics.clicks_by_buyer, value, at_once=True):
            self._record_click(ctx, click)

    def on_rekeyed_click(self, ctx: HandlerContext, key: bytes | None, value: bytes | None) -> None:
        self._record_click(ctx, decode_rekeyed_click(key, value))

    def on_order_event(self, ctx: HandlerContext, event: OrderEvent) -> None:
        """An order event in its buyer's partition (routed by the orders pipeline)."""
        for observer in self.observers:
            observer.on_order(ctx, event)
        self._order_event(ctx, event.facts())

    def on_rekeyed_order(self, ctx: HandlerContext, key: bytes | None, value: bytes | None) -> None:
        self.on_order_event(ctx, decode_rekeyed_order(key, value, "buyer_id"))

    def expire_waiting_orders(self, ctx: HandlerContext) -> None:
        """Timer: decide what a catch-up left ready; re-try the orders whose grace period is
        over, once the clicks are read."""
        index = ctx.cache(self._load_waiting_index)
        self._decide_ready(ctx, index)
        self._retry_once_clicks_read(ctx, index, index.due(ctx.now_ms))

    def decide_caught_up(self, ctx: HandlerContext, ticket: int) -> None:
        """Catch-up hook: decide the orders behind `ticket`, now that their clicks are read."""
        index = ctx.cache(self._load_waiting_index)
        index.reach(ticket)
        self._decide_ready(ctx, index)

    # -- inside ----------------------------------------------------------------------

    def _decide_ready(self, ctx: HandlerContext, index: WaitingIndex) -> None:
        """Decide ready orders until the worker holds a commit's worth of records; the
        timer goes on with the rest. At the end of a backlog one catch-up frees every order
        of the partition at once (they waited for the whole click backlog), and deciding
        them in one go would keep all their results in memory for one huge transaction."""
        while not ctx.backlogged() and (order_id := index.next_ready()) is not None:
            order_key = order_id.encode()
            waiting = ctx.get(self.tables.order_waits, order_key)
            if waiting is None:
                continue  # decided in the meantime
            decision = next_decision(waiting, ctx.now_ms, lambda f: self._decide(ctx, f))
            if decision is not None:
                self._publish(ctx, waiting, decision)
            elif not waiting.held:
                ctx.put(self.tables.order_waits, order_key, hold(waiting))

    def _record_click(self, ctx: HandlerContext, click: Click) -> None:
        buyer_key = click.buyer_id.encode()
        rules = self.rules
        history = ctx.get(self.tables.clicks, buyer_key) or []
        updated = click_history.add_click(
            history, click_history.to_row(click), now_ms=ctx.now_ms,
            retention_ms=rules.click_retention_ms, cap=rules.click_history_cap,
        )
        if updated is None:
            return  # a duplicate click changes nothing
        ctx.put(self.tables.clicks, buyer_key, updated)
        for observer in self.observers:
            observer.on_click(ctx, click)
        index = ctx.cache(self._load_waiting_index)
        self._retry_once_clicks_read(ctx, index, index.of_buyer(click.buyer_id))

    def _order_event(self, ctx: HandlerContext, facts: OrderFacts) -> None:
        order_key = facts.order_id.encode()
        if ctx.get(self.tables.attributed, order_key) is not None:
            return  # one attribution per order; later events change nothing
        stored = ctx.get(self.tables.order_waits, order_key)
        if stored is None:
            waiting = start_waiting(facts, now_ms=ctx.now_ms, grace_ms=self.rules.grace_ms)
        else:
            waiting = record_event(stored, facts)
        if waiting is stored:
            return  # a repeated or later event: nothing a decision depends on changed
        ctx.put(self.tables.order_waits, order_key, waiting)
        index = ctx.cache(self._load_waiting_index)
        if stored is None:
            index.add(facts.order_id, facts.buyer_id, waiting.deadline_ms)
        if may_decide(stored, waiting):
            self._retry_once_clicks_read(ctx, index, [facts.order_id])

    def _retry_once_clicks_read(self, ctx: HandlerContext, index: WaitingIndex,
                                order_ids: list[str]) -> None:
        """Decide `order_ids` (again) once the partition's clicks now in Kafka are read."""
        if order_ids:
            ticket = self.clicks_read.request(ctx)
            for order_id in order_ids:
                index.behind(order_id, ticket)

    def _decide(self, ctx: HandlerContext, facts: OrderFacts) -> Decision:
        history = ctx.get(self.tables.clicks, facts.buyer_id.encode()) or []
        return decide(facts, history, self.catalog.shop(facts.shop_id), self.catalog.channel,
                      self._tracked_click(facts))

    def _tracked_click(self, facts: OrderFacts) -> Click | None:
        """The click in the order's tracking token, if the token is genuine (judged at T)."""
        if not facts.tracking:
            return None
        try:
            return click_from_tracking(
                self.signer.verify(TRACKING, facts.tracking, now_ms=facts.ts_ms))
        except TokenError:
            return None

    def _publish(self, ctx: HandlerContext, waiting: Waiting, decision: Decision) -> None:
        facts = waiting.facts
        order_key = facts.order_id.encode()
        ctx.delete(self.tables.order_waits, order_key)
        ctx.cache(self._load_waiting_index).discard(facts.order_id, facts.buyer_id)
        if ctx.get(self.tables.attributed, order_key) is not None:
            return  # never a second attribution, whatever state a bug or a replay left behind
        result = conclude(facts, decision, attributed_ms=ctx.now_ms,
                          delayed=is_delayed(waiting, decision))
        ctx.send(self.topics.attributions, order_key, encode_attribution(result))
        ctx.put(self.tables.attributed, order_key, result.attributed_ms)
        self.published(ctx, result)

    def _load_waiting_index(self, ctx: HandlerContext) -> WaitingIndex:
        """The partition's waiting orders, all re-tried once the clicks are read (after a
        restart or a rebalance nobody knows which of them were about to be decided)."""
        index = WaitingIndex()
        for _key, waiting in self.tables.order_waits.scan(ctx.partition):
            index.add(waiting.first.order_id, waiting.first.buyer_id, waiting.deadline_ms)
        self._retry_once_clicks_read(ctx, index, index.waiting())
        return index


def register(*, engine: Engine, topics: Topics, settings: Settings, catalog: Catalog,
             signer: Signer, monitor: Monitor, sink_registry: SinkRegistry,
             attribution_tables: AttributionTables,
             observers: Sequence[BuyerObserver] = ()) -> Attributor:
    """Run attribution on the engine: clicks, re-keyed clicks and re-keyed order events in,
    attributions out (fanned out to the sinks)."""

    def published(ctx: HandlerContext, result: Attribution) -> None:
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
        tables=attribution_tables,
        rules=AttributionRules(grace_ms=settings.attribution_grace_ms,
                               click_retention_ms=settings.click_retention_ms,
                               click_history_cap=settings.click_history_cap),
        catalog=catalog, signer=signer, catch_up=engine.catch_up,
        published=published, observers=observers)
    engine.pipeline("attribution", {
        topics.clicks: attributor.on_click,
        topics.clicks_by_buyer: attributor.on_rekeyed_click,
        topics.orders_by_buyer: attributor.on_rekeyed_order,
    }, ticks=[attributor.expire_waiting_orders],
        outputs=(topics.clicks_by_buyer, topics.attributions, *sink_registry.fan_out_topics),
        tables=every_table(attribution_tables))
    return attributor
