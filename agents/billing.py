"""Billing: every order's commissions and settlement, partitioned by order.

Reads the order events in their order's partition (the orders pipeline
routes them here) and the attributions this engine publishes (keyed by
order id). Each fact goes into the order's ledger (app.domain.ledger); what
changed goes out on cps.commissions (key order id) and cps.settlements (key
account id), and to the sinks. A timer runs the settlement check on the
CPS_SETTLEMENT_SCHEDULE cron against the wall clock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

from app.domain import ledger as money
from app.domain.ledger import Ledger, Pricing, Source, Step
from app.domain.model import OrderEvent
from app.domain.schedule import Schedule
from app.engine.handler_context import HandlerContext
from app.records.fields import DEAD_LETTER_VALUE_BYTES
from app.records.inputs import decode_rekeyed_order
from app.records.outputs import (
    attributed,
    decode_attribution,
    encode_commission,
    encode_settlement,
)
from app.sinks.fanout import SinkRegistry, fan_out
from tables import every_table
from tables.billing import BillingTables

if TYPE_CHECKING:
    from app.config.settings import Settings
    from app.engine.processor import Engine
    from app.kafka.topics import Topics
    from app.services.catalog import Catalog

# Payees settled per partition and timer run; the rest wait for the next run.
SETTLE_BATCH = 2000


class OrderCenter(Protocol):
    """What billing tells the order center (agents/order_center.py)."""

    def note_order_event(self, ctx: HandlerContext, event: OrderEvent) -> bool: ...

    def note_attribution(self, ctx: HandlerContext, order_id: str, attribution: dict) -> None: ...


@dataclass(frozen=True, slots=True)
class BillingTopics:
    commissions: str
    settlements: str


class Billing:
    """The billing handlers of the engine, one instance per worker."""

    def __init__(self, *, topics: BillingTopics, tables: BillingTables, pricing: Pricing,
                 sinks: SinkRegistry, order_center: OrderCenter, schedule: Schedule) -> None:
        self.topics = topics
        self.tables = tables
        self.pricing = pricing
        self.sinks = sinks
        self.order_center = order_center
        self.schedule = schedule

    # -- handlers ------------------------------------------------------------------

    def on_rekeyed_order(self, ctx: HandlerContext, key: bytes | None, value: bytes | None) -> None:
        self.book(ctx, decode_rekeyed_order(key, value, "order_id"), value)

    def book(self, ctx: HandlerContext, event: OrderEvent, value: bytes) -> None:
        """An order event in its order's partition: into the ledger and the timeline."""
        message = ctx.message
        origin = Source(message.topic, message.partition, message.offset, message.key,
                        value[:DEAD_LETTER_VALUE_BYTES])
        ledger = self._ledger(ctx, event.order_id)
        step = money.record_order_event(ledger, event, self.pricing, origin)
        if self.order_center.note_order_event(ctx, event):
            refund_id = event.refund.refund_id if event.refund else None
            self._order_status(ctx, step.ledger, event.event, event.ts_ms, refund_id,
                               fallback_channel=event.channel_id or event.fanstype)
        self._apply(ctx, ledger, step)

    def on_attribution(self, ctx: HandlerContext, key: bytes | None, value: bytes | None) -> None:
        attribution = decode_attribution(key, value)
        self.order_center.note_attribution(ctx, attribution.order_id, asdict(attribution))
        ledger = self._ledger(ctx, attribution.order_id)
        self._apply(ctx, ledger,
                    money.record_attribution(ledger, attributed(attribution), self.pricing))

    def settle_due_payees(self, ctx: HandlerContext) -> None:
        """Timer: at each firing of the schedule, settle the payees whose due time has passed."""
        runs = ctx.cache(_SettlementRuns)
        firing = self.schedule.last_firing_ms(ctx.now_ms)
        if runs.done_for == firing:
            return
        due_keys = self.tables.due_payees.keys_up_to(
            ctx.partition, b"%016d\x1f\xff" % ctx.now_ms, SETTLE_BATCH)
        by_order: dict[bytes, list[bytes]] = {}
        for key in due_keys:
            by_order.setdefault(key.split(b"\x1f")[1], []).append(key)
        for order_key, keys in by_order.items():
            if ctx.backlogged():
                return  # the rest at the next tick, once the worker's results are committed
            ledger = ctx.get(self.tables.ledgers, order_key) or Ledger(order_key.decode())
            self._apply(ctx, ledger, money.settle_due(ledger, ctx.now_ms))
            # A key the ledger does not index (its refund is open, written by an older
            # version, or its order is gone) leaves too, so no batch reads it again; the
            # payee comes back to the index when its refund ends.
            for key in set(keys) - _due_keys(ledger):
                ctx.delete(self.tables.due_payees, key)
        if len(due_keys) < SETTLE_BATCH:
            runs.done_for = firing

    # -- inside ----------------------------------------------------------------------

    def _ledger(self, ctx: HandlerContext, order_id: str) -> Ledger:
        return ctx.get(self.tables.ledgers, order_id.encode()) or Ledger(order_id)

    def _apply(self, ctx: HandlerContext, before: Ledger, step: Step) -> None:
        """Store the new ledger, publish its events and keep the settlement index current."""
        after = step.ledger
        order_key = after.order_id.encode()
        for origin, reason in step.rejected:
            ctx.dead_letter(reason, source=origin)
        if after == before:
            return
        ctx.put(self.tables.ledgers, order_key, after)
        facts = _sink_facts(after)
        for commission in step.commissions:
            ctx.send(self.topics.commissions, order_key, encode_commission(commission))
            fan_out(ctx, self.sinks, "commissions", after.order_id, commission.event_id,
                    commission, facts)
        for settlement in step.settlements:
            ctx.send(self.topics.settlements, settlement.account_id.encode(),
                     encode_settlement(settlement))
            fan_out(ctx, self.sinks, "settlements", after.order_id, settlement.event_id,
                    settlement, facts)
        if after.fully_settled and not before.fully_settled:
            self._order_status(ctx, after, "settled", ctx.now_ms, None)
        old, new = before.due_entries(), after.due_entries()
        for due_ms, participant in old - new:
            ctx.delete(self.tables.due_payees, due_key(due_ms, after.order_id, participant))
        for due_ms, participant in new - old:
            ctx.put(self.tables.due_payees, due_key(due_ms, after.order_id, participant), b"")

    def _order_status(self, ctx: HandlerContext, ledger: Ledger, status: str, ts_ms: int,
                      refund_id: str | None, *, fallback_channel: str | None = None) -> None:
        """Tell the sinks (channel webhooks among them) that the order's status changed."""
        facts = _sink_facts(ledger, fallback_channel)
        event = {"order_id": ledger.order_id, "status": status, "ts_ms": ts_ms,
                 "refund_id": refund_id, "shop_id": ledger.shop_id,
                 "channel_id": facts["channel_id"], "buyer_id": ledger.buyer_id}
        fan_out(ctx, self.sinks, "order_status", ledger.order_id,
                money.event_id(ledger.order_id, "status", status, refund_id, ts_ms), event,
                facts)


class _SettlementRuns:
    """The schedule firing this partition has finished (rebuilt after a rebalance: run again)."""

    def __init__(self, _ctx: HandlerContext) -> None:
        self.done_for: int | None = None


def _sink_facts(ledger: Ledger, fallback_channel: str | None = None) -> dict[str, object]:
    """What a sink's filters may name about an order."""
    attributed = ledger.attributed
    return {"shop_id": ledger.shop_id,
            "channel_id": (attributed.channel_id if attributed else None) or fallback_channel,
            "promoter_id": attributed.promoter_id if attributed else None,
            "type": attributed.type if attributed else None}


def due_key(due_ms: int, order_id: str, participant: str) -> bytes:
    """The key of a payee in `due_payees`: sorted by due time."""
    return b"%016d\x1f%s\x1f%s" % (due_ms, order_id.encode(), participant.encode())


def _due_keys(ledger: Ledger) -> set[bytes]:
    return {due_key(due_ms, ledger.order_id, participant)
            for due_ms, participant in ledger.due_entries()}


def register(*, engine: Engine, topics: Topics, settings: Settings, catalog: Catalog,
             sink_registry: SinkRegistry, billing_tables: BillingTables,
             order_center: OrderCenter) -> Billing:
    """Run billing on the engine: re-keyed order events and attributions in, commissions
    and settlements out; the settlement check on every tick."""
    billing = Billing(
        topics=BillingTopics(commissions=topics.commissions, settlements=topics.settlements),
        tables=billing_tables, pricing=catalog, sinks=sink_registry,
        order_center=order_center, schedule=Schedule(settings.settlement_schedule))
    engine.pipeline("billing", {
        topics.orders_by_order: billing.on_rekeyed_order,
        topics.attributions: billing.on_attribution,
    }, ticks=[billing.settle_due_payees],
        outputs=(topics.commissions, topics.settlements, *sink_registry.fan_out_topics),
        tables=every_table(billing_tables))
    return billing
