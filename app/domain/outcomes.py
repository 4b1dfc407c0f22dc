"""What a plan's actions led to (SPEC 13): a granted right `used` by a paid order, that
order refunded in full or closed (`replenished`), and the buyer's first paid order at the
shop inside the conversion window (`converted`).

A buyer's exposures at a shop (each action emitted, each holdout decision, with its
time) meet the buyer's paid orders there (the behaviour facts) and the orders that may
use a granted right (traced from their events while the buyer holds one). `settle`
decides from everything known what each exposure led to that is not recorded yet. It
is asked only once every order event already in Kafka has been read (agents/plans.py),
so the earliest paid order wins whichever the worker read first; a result once recorded
stays, as its record is written once.

Every fold here is independent of the order and repetition of the events it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from app.domain.model import OrderEvent

USED, REPLENISHED, CONVERTED = "used", "replenished", "converted"
# An order paid inside a window but read this long after the window closed no longer
# converts (a backlog of a day is an outage to repair, not a measurement to keep open).
LATE_ORDERS_MS = 86_400_000
# How long a granted right is watched for its use and its order's refund.
RIGHTS_WATCHED_MS = 90 * 86_400_000
# A buyer's exposures and traced orders at one shop, at most (the newest are kept).
MAX_EXPOSURES = 256
MAX_TRACED_ORDERS = 64


@dataclass(frozen=True, slots=True)
class Exposure:
    """A buyer's action of one occurrence (or holdout decision), and what it led to."""

    plan_id: str
    occurrence_id: str
    variant: str | None
    ts_ms: int                     # the action's, or the held_out record's
    window_ms: int
    grant_id: str | None = None    # a granted right's action id
    converted: str | None = None   # order ids once recorded
    used: str | None = None
    replenished: bool = False

    def converts(self, paid_ms: int | None) -> bool:
        return paid_ms is not None and self.ts_ms < paid_ms <= self.ts_ms + self.window_ms

    def watched_until(self) -> int:
        window_end = self.ts_ms + self.window_ms + LATE_ORDERS_MS
        if self.grant_id is None or self.replenished:
            return window_end
        return max(window_end, self.ts_ms + RIGHTS_WATCHED_MS)


@dataclass(frozen=True, slots=True)
class TracedOrder:
    """An order of a buyer holding a granted right, as far as its events tell."""

    order_id: str
    coupon_ids: tuple[str, ...] = ()
    paid_ms: int | None = None
    paid_lines: tuple[tuple[str, int], ...] = ()     # (item id, amount) of `paid`
    created_lines: tuple[tuple[str, int], ...] = ()  # ... of `created`
    refunds: tuple[tuple[int, str, str, int], ...] = ()  # (ts, refund id, item, amount)
    closed_ms: int | None = None
    completed_ms: int | None = None

    def lines(self) -> tuple[tuple[str, int], ...]:
        return self.paid_lines or self.created_lines


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str
    exposure: Exposure   # as it was before this outcome
    order_id: str
    amount: int = 0      # converted: the order's paid amount


def trace(order: TracedOrder | None, event: OrderEvent) -> TracedOrder:
    """Fold one event into the order's trace (the same for any arrival order)."""
    order = order or TracedOrder(event.order_id)
    coupons = tuple(sorted({*order.coupon_ids, *event.coupon_ids}))
    lines = tuple(sorted((line.item_id, line.amount) for line in event.items))
    if event.event == "created":
        created = min(order.created_lines, lines) if order.created_lines else lines
        return replace(order, coupon_ids=coupons, created_lines=created)
    if event.event == "paid":
        first = order.paid_ms is None or event.ts_ms < order.paid_ms
        return replace(order, coupon_ids=coupons,
                       paid_ms=event.ts_ms if first else order.paid_ms,
                       paid_lines=lines if first else order.paid_lines)
    if event.event == "refunded" and event.refund is not None:
        refund = (event.ts_ms, event.refund.refund_id, event.refund.item_id,
                  event.refund.amount)
        others = [known for known in order.refunds if known[1] != refund[1]]
        same = [known for known in order.refunds if known[1] == refund[1]]
        return replace(order, refunds=tuple(sorted((*others, min((*same, refund))))))
    if event.event == "closed":
        return replace(order, closed_ms=_earliest(order.closed_ms, event.ts_ms))
    if event.event == "completed":
        return replace(order, completed_ms=_earliest(order.completed_ms, event.ts_ms))
    return order


def _earliest(known: int | None, ts_ms: int) -> int:
    return ts_ms if known is None else min(known, ts_ms)


def fully_refunded(order: TracedOrder) -> bool:
    """Every line's net amount is 0: refunds taken in time order, one larger than what
    remains on its line rejected (SPEC 4)."""
    remaining = dict(order.lines())
    if not remaining:
        return False
    for _ts, _refund_id, item_id, amount in order.refunds:
        if item_id in remaining and amount <= remaining[item_id]:
            remaining[item_id] -= amount
    return not any(remaining.values())


def replenishes(order: TracedOrder) -> bool:
    """The paid order gave the right back: refunded in full, or closed before completed."""
    if order.paid_ms is None:
        return False
    closed_first = order.closed_ms is not None and (
        order.completed_ms is None or order.closed_ms < order.completed_ms)
    return closed_first or fully_refunded(order)


def settle(exposures: Iterable[Exposure], paid: Iterable[tuple[str, int, int | None]],
           orders: Mapping[str, TracedOrder]) -> tuple[tuple[Exposure, ...], list[Outcome]]:
    """Each exposure's outcomes not recorded yet, and the exposures with them recorded.

    `paid`: the buyer's paid orders at the shop (order id, amount, paid time); `orders`:
    the traced orders by id. The first paid order wins: the earliest paid time, then the
    smaller order id.
    """
    by_time = sorted(((at, order, amount) for order, amount, at in paid if at is not None))
    using = sorted((order.paid_ms, order.order_id) for order in orders.values()
                   if order.paid_ms is not None and order.coupon_ids)
    settled: list[Exposure] = []
    outcomes: list[Outcome] = []
    for exposure in exposures:
        after = exposure
        if after.converted is None:
            first = next(((order, amount) for at, order, amount in by_time
                          if after.converts(at)), None)
            if first is not None:
                outcomes.append(Outcome(CONVERTED, after, first[0], first[1]))
                after = replace(after, converted=first[0])
        if after.grant_id is not None and after.used is None:
            user = next((order_id for _at, order_id in using
                         if after.grant_id in orders[order_id].coupon_ids), None)
            if user is not None:
                outcomes.append(Outcome(USED, after, user))
                after = replace(after, used=user)
        if after.used is not None and not after.replenished \
                and after.used in orders and replenishes(orders[after.used]):
            outcomes.append(Outcome(REPLENISHED, after, after.used))
            after = replace(after, replenished=True)
        settled.append(after)
    return tuple(settled), outcomes


def watched(exposures: Iterable[Exposure], now_ms: int) -> tuple[Exposure, ...]:
    """The exposures an order can still change, the newest `MAX_EXPOSURES`."""
    kept = sorted((exposure for exposure in exposures if exposure.watched_until() >= now_ms),
                  key=lambda exposure: (exposure.ts_ms, exposure.occurrence_id))
    return tuple(kept[-MAX_EXPOSURES:])


def holds_rights(exposures: Iterable[Exposure]) -> bool:
    """Whether the buyer's orders are worth tracing: a granted right not given back."""
    return any(exposure.grant_id is not None and not exposure.replenished
               for exposure in exposures)


def traced_kept(orders: Mapping[str, TracedOrder], exposures: Iterable[Exposure]
                ) -> dict[str, TracedOrder]:
    """The traced orders worth keeping: the ones a right's use depends on, then the newest
    paid (unpaid ones first, as their payment is still to come), `MAX_TRACED_ORDERS` in all."""
    exposures = tuple(exposures)
    if not holds_rights(exposures):
        return {}
    needed = {exposure.used for exposure in exposures if exposure.used is not None}
    ranked = sorted(orders.values(), key=lambda order: (
        order.order_id not in needed, order.paid_ms is not None, -(order.paid_ms or 0),
        order.order_id))
    return {order.order_id: order for order in ranked[:MAX_TRACED_ORDERS]}


@dataclass(frozen=True, slots=True)
class Watch:
    """What is watched of a buyer at a shop: the exposures and the orders traced for them."""

    exposures: tuple[Exposure, ...] = ()
    orders: tuple[TracedOrder, ...] = ()  # by order id

    def exposed(self, exposure: Exposure) -> Watch:
        """With one more exposure; the same watch when its occurrence is known (a replay)."""
        if any(known.occurrence_id == exposure.occurrence_id for known in self.exposures):
            return self
        return replace(self, exposures=(*self.exposures, exposure))

    def observed(self, event: OrderEvent) -> Watch:
        """With the order event traced, when the buyer holds a right it may use."""
        if not holds_rights(self.exposures):
            return self
        orders = {order.order_id: order for order in self.orders}
        orders[event.order_id] = trace(orders.get(event.order_id), event)
        return replace(self, orders=tuple(orders[key] for key in sorted(orders)))

    def settled(self, paid: Iterable[tuple[str, int, int | None]], now_ms: int
                ) -> tuple[Watch, list[Outcome]]:
        """The outcomes not recorded yet, and the watch with them recorded and what no order
        can change any more dropped."""
        exposures, outcomes = settle(self.exposures, paid,
                                     {order.order_id: order for order in self.orders})
        exposures = watched(exposures, now_ms)
        kept = traced_kept({order.order_id: order for order in self.orders}, exposures)
        return Watch(exposures, tuple(kept[key] for key in sorted(kept))), outcomes
