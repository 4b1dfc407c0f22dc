"""Attribution rules (SPEC section 5): one decision per order.

`decide` applies the rules to what is known at the attribution time T;
`Waiting` and `next_decision` say when an order must hold on for a late
click or for its `created` event; `conclude` turns a decision into the
output value. All take the clock as an argument. `WaitingIndex` is the
in-memory view of a partition's waiting orders.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from app.domain import clicks
from app.domain.clicks import Row
from app.domain.model import Channel, Click, OrderFacts, Shop


class Type(StrEnum):
    CPS = "cps"
    SELF_OPERATED = "self_operated"
    NONE = "none"


class Mode(StrEnum):
    TRACKING = "tracking"
    LAST_CLICK = "last_click"
    SITE_WIDE = "site_wide"
    SELF_PURCHASE = "self_purchase"
    FANSTYPE = "fanstype"


class Reason(StrEnum):
    SHOP_NOT_CPS = "shop_not_cps"
    NO_CLICK = "no_click"
    WINDOW_EXPIRED = "window_expired"
    SELF_PURCHASE_NOT_ALLOWED = "self_purchase_not_allowed"
    CHANNEL_NOT_AUTHORIZED = "channel_not_authorized"


# CPS failures that a click arriving late could still turn into CPS.
_CLICK_DEPENDENT = frozenset({Reason.NO_CLICK, Reason.WINDOW_EXPIRED,
                              Reason.SELF_PURCHASE_NOT_ALLOWED})

ChannelLookup = Callable[[str], Channel]


@dataclass(frozen=True, slots=True)
class Decision:
    type: Type
    mode: Mode | None = None
    reason: Reason | None = None
    click: Click | None = None
    channel_id: str | None = None
    cps_failure: Reason | None = None

    @property
    def awaits_click(self) -> bool:
        """Whether a late click of the buyer could still change this decision to CPS."""
        return self.cps_failure in _CLICK_DEPENDENT


@dataclass(frozen=True, slots=True)
class Attribution:
    """The one result per order, as published on the attributions topic."""

    order_id: str
    ts_ms: int
    attributed_ms: int
    buyer_id: str
    shop_id: str
    type: Type
    mode: Mode | None
    reason: Reason | None
    click_id: str | None
    channel_id: str | None
    promoter_id: str | None
    group_leader_id: str | None
    base_id: str | None
    delayed: bool
    # Beyond the SPEC's fields: what billing and monitoring want from the click.
    click_ts_ms: int | None = None
    activity_id: str | None = None
    item_id: str | None = None


def decide(order: OrderFacts, history: Sequence[Row], shop: Shop | None,
           channel_of: ChannelLookup, tracked: Click | None = None) -> Decision:
    """Attribute `order` at T = order.ts_ms from the buyer's click history.

    `tracked` is the click carried by the order's verified tracking token, if any.
    """
    t_ms = order.ts_ms
    cps = _cps(order, history, shop, channel_of, tracked, t_ms)
    if cps.type is Type.CPS:
        return cps
    fanstype = order.fanstype
    if fanstype:
        if shop is not None and fanstype in shop.authorized_channels:
            return Decision(Type.SELF_OPERATED, Mode.FANSTYPE, channel_id=fanstype,
                            cps_failure=cps.reason)
        return Decision(Type.NONE, reason=Reason.CHANNEL_NOT_AUTHORIZED, cps_failure=cps.reason)
    return Decision(Type.NONE, reason=cps.reason, cps_failure=cps.reason)


def _cps(order: OrderFacts, history: Sequence[Row], shop: Shop | None,
         channel_of: ChannelLookup, tracked: Click | None, t_ms: int) -> Decision:
    if shop is None or not shop.is_cps_at(t_ms):
        return Decision(Type.NONE, reason=Reason.SHOP_NOT_CPS)

    if tracked is not None and _tracked_click_counts(tracked, order, channel_of, t_ms):
        return _with_self_purchase_rule(tracked, Mode.TRACKING, order, channel_of)

    expired = False
    at_shop = clicks.latest_at_shop(history, order.shop_id, t_ms)
    if at_shop is not None:
        if _inside_window(at_shop[clicks.TS], channel_of(at_shop[clicks.CHANNEL]), t_ms):
            return _with_self_purchase_rule(clicks.from_row(order.buyer_id, at_shop),
                                            Mode.LAST_CLICK, order, channel_of)
        expired = True

    elsewhere = clicks.latest_site_wide(history, order.shop_id, t_ms,
                                        lambda channel_id: channel_of(channel_id).site_wide)
    if elsewhere is not None:
        if _inside_window(elsewhere[clicks.TS], channel_of(elsewhere[clicks.CHANNEL]), t_ms):
            return _with_self_purchase_rule(clicks.from_row(order.buyer_id, elsewhere),
                                            Mode.SITE_WIDE, order, channel_of)
        expired = True

    return Decision(Type.NONE, reason=Reason.WINDOW_EXPIRED if expired else Reason.NO_CLICK)


def _tracked_click_counts(tracked: Click, order: OrderFacts, channel_of: ChannelLookup,
                          t_ms: int) -> bool:
    return (tracked.shop_id == order.shop_id and tracked.ts_ms <= t_ms
            and _inside_window(tracked.ts_ms, channel_of(tracked.channel_id), t_ms))


def _inside_window(click_ts_ms: int, channel: Channel, t_ms: int) -> bool:
    return t_ms - channel.attribution_window_ms <= click_ts_ms


def _with_self_purchase_rule(click: Click, mode: Mode, order: OrderFacts,
                             channel_of: ChannelLookup) -> Decision:
    """The chosen click decides alone: a self-purchase is CPS only where the channel allows it."""
    if click.promoter_id == order.buyer_id:
        if channel_of(click.channel_id).self_purchase:
            return Decision(Type.CPS, Mode.SELF_PURCHASE, click=click, channel_id=click.channel_id)
        return Decision(Type.NONE, reason=Reason.SELF_PURCHASE_NOT_ALLOWED)
    return Decision(Type.CPS, mode, click=click, channel_id=click.channel_id)


@dataclass(frozen=True, slots=True)
class Waiting:
    """An order not attributed yet.

    It waits until its buyer's clicks already in Kafka have been read (the
    engine's catch-up barrier), and beyond that for its `created` event or,
    when CPS failed for want of a click, for a late click, both until
    `deadline_ms` (processing time: first arrival + grace period). `first` is
    the earliest event seen (by ts_ms), used when `created` never arrives.
    `held` says it was held back for `created` or a late click.
    """

    first: OrderFacts
    created: OrderFacts | None
    deadline_ms: int
    held: bool = False

    @property
    def facts(self) -> OrderFacts:
        return self.created or self.first


def start_waiting(event: OrderFacts, *, now_ms: int, grace_ms: int) -> Waiting:
    created = event if event.event == "created" else None
    return Waiting(first=event, created=created, deadline_ms=now_ms + grace_ms,
                   held=created is None)


def record_event(waiting: Waiting, event: OrderFacts) -> Waiting:
    """Fold another event of the same order into its waiting state (first `created` wins)."""
    first = event if event.ts_ms < waiting.first.ts_ms else waiting.first
    created = waiting.created
    if created is None and event.event == "created":
        created = event
    if first is waiting.first and created is waiting.created:
        return waiting
    return Waiting(first=first, created=created, deadline_ms=waiting.deadline_ms,
                   held=waiting.held)


def may_decide(before: Waiting | None, after: Waiting) -> bool:
    """Whether the event that turned `before` into `after` makes a decision possible now:
    the order's `created` just arrived (before it, the order can only wait or expire)."""
    return after.created is not None and (before is None or before.created is None)


def next_decision(waiting: Waiting, now_ms: int,
                  decide_for: Callable[[OrderFacts], Decision]) -> Decision | None:
    """The decision to publish now, or None while the order should keep waiting.

    An order waits for `created` (so T is the created time) and, when CPS
    failed for want of a click, for a late click, both until its deadline.
    Asked only once the buyer's clicks already in Kafka have been read.
    """
    expired = now_ms >= waiting.deadline_ms
    if waiting.created is None and not expired:
        return None
    decision = decide_for(waiting.facts)
    if decision.awaits_click and not expired:
        return None
    return decision


def hold(waiting: Waiting) -> Waiting:
    """The state of an order that `next_decision` keeps waiting."""
    return waiting if waiting.held else replace(waiting, held=True)


def is_delayed(waiting: Waiting, decision: Decision) -> bool:
    """The `delayed` flag: the result was held back for `created` or a late click.

    A decision that a late click could have changed counts as delayed even if
    the grace period ran out while the order waited for its buyer's clicks to
    be read, so the flag does not depend on how far the worker lagged.
    """
    return waiting.held or decision.awaits_click


def conclude(facts: OrderFacts, decision: Decision, *, attributed_ms: int,
             delayed: bool) -> Attribution:
    click = decision.click
    return Attribution(
        order_id=facts.order_id, ts_ms=facts.ts_ms, attributed_ms=attributed_ms,
        buyer_id=facts.buyer_id, shop_id=facts.shop_id, type=decision.type, mode=decision.mode,
        reason=decision.reason,
        click_id=click.click_id if click else None,
        channel_id=decision.channel_id,
        promoter_id=click.promoter_id if click else None,
        group_leader_id=click.group_leader_id if click else None,
        base_id=click.base_id if click else None,
        delayed=delayed,
        click_ts_ms=click.ts_ms if click else None,
        activity_id=click.activity_id if click else None,
        item_id=click.item_id if click else None,
    )


class WaitingIndex:
    """Which orders of a partition wait, by deadline, by buyer and by catch-up ticket
    (derived, in memory).

    Rebuilt from the stored waiting states whenever a partition is assigned;
    entries of orders decided in the meantime are skipped lazily.
    """

    def __init__(self) -> None:
        self._deadlines: list[tuple[int, str]] = []
        self._by_buyer: dict[str, set[str]] = {}
        self._behind: deque[tuple[int, str]] = deque()  # (ticket, order_id), tickets ascending
        # Orders whose ticket was reached, left to be decided a page at a time.
        self._ready: deque[str] = deque()
        self._queued: set[str] = set()

    def add(self, order_id: str, buyer_id: str, deadline_ms: int) -> None:
        heapq.heappush(self._deadlines, (deadline_ms, order_id))
        self._by_buyer.setdefault(buyer_id, set()).add(order_id)

    def discard(self, order_id: str, buyer_id: str) -> None:
        orders = self._by_buyer.get(buyer_id)
        if orders is not None:
            orders.discard(order_id)
            if not orders:
                del self._by_buyer[buyer_id]

    def of_buyer(self, buyer_id: str) -> list[str]:
        return sorted(self._by_buyer.get(buyer_id, ()))

    def waiting(self) -> list[str]:
        return sorted(order for orders in self._by_buyer.values() for order in orders)

    def behind(self, order_id: str, ticket: int) -> None:
        """Consider `order_id` again once the catch-up ticket (never lower than the last) is
        reached."""
        self._behind.append((ticket, order_id))

    def reach(self, ticket: int) -> None:
        """Make the orders behind tickets up to `ticket` ready to be decided again."""
        behind, ready, queued = self._behind, self._ready, self._queued
        while behind and behind[0][0] <= ticket:
            order_id = behind.popleft()[1]
            if order_id not in queued:
                queued.add(order_id)
                ready.append(order_id)

    def next_ready(self) -> str | None:
        """The ready order that came first (each once while it is ready), or None."""
        if not self._ready:
            return None
        order_id = self._ready.popleft()
        self._queued.discard(order_id)
        return order_id

    def due(self, now_ms: int) -> list[str]:
        """Orders whose deadline has passed, removed from the deadline queue."""
        due = []
        while self._deadlines and self._deadlines[0][0] <= now_ms:
            due.append(heapq.heappop(self._deadlines)[1])
        return due

    def __len__(self) -> int:
        return sum(len(orders) for orders in self._by_buyer.values())
