"""A buyer's behaviour at one shop, folded from the engine's own clicks and orders
(SPEC 13): what the audience predicates ask about.

Each fold returns the new behaviour, or the same object when the event
changes nothing, so a replayed click or order event is harmless: clicks
count by their time (the latest wins), orders by their id (an order is
paid once, however often its `paid` event comes). The facts are the same
for any arrival order of the same events (kept sorted, and an order paid
or closed stays so), so what a plan selects does not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from app.domain.audience import Behaviour


@dataclass(frozen=True, slots=True)
class Facts:
    last_click_ms: int | None = None
    last_paid_ms: int | None = None
    last_created_ms: int | None = None
    # (order id, paid amount, earliest `paid` time or None in rows of earlier versions)
    paid: tuple[tuple[str, int, int | None], ...] = ()  # by order id
    unpaid: tuple[tuple[str, int], ...] = ()         # (order id, created ms), not paid yet
    closed: tuple[str, ...] = ()                     # orders closed unpaid, by order id

    def behaviour(self) -> Behaviour:
        return Behaviour(last_click_ms=self.last_click_ms, last_paid_ms=self.last_paid_ms,
                         paid_orders=len(self.paid),
                         paid_amount=sum(amount for _order, amount, _at in self.paid),
                         unpaid_created_ms=tuple(created for _order, created in self.unpaid))


def clicked(facts: Facts, ts_ms: int) -> Facts:
    if facts.last_click_ms is not None and facts.last_click_ms >= ts_ms:
        return facts
    return replace(facts, last_click_ms=ts_ms)


def order_event(facts: Facts, order_id: str, event: str, ts_ms: int, amount: int) -> Facts:
    """Fold one order event (`created`, `paid`, `closed`; others change nothing here).

    An order that was paid or closed is never unpaid again, whichever of its events comes
    later: a `created` replayed after them, or arriving late, only counts as a creation.
    """
    paid = _paid(facts, order_id)
    if event == "paid" and paid:
        return _paid_earlier(facts, order_id, ts_ms)
    if event == "created":
        last = ts_ms if facts.last_created_ms is None else max(facts.last_created_ms, ts_ms)
        waiting = not paid and order_id not in facts.closed and not _waits(facts, order_id)
        if not waiting and last == facts.last_created_ms:
            return facts
        unpaid = sorted((*facts.unpaid, (order_id, ts_ms))) if waiting else facts.unpaid
        return replace(facts, unpaid=tuple(unpaid), last_created_ms=last)
    if event == "paid":
        last = ts_ms if facts.last_paid_ms is None else max(facts.last_paid_ms, ts_ms)
        return replace(facts, unpaid=_without(facts.unpaid, order_id),
                       paid=tuple(sorted((*facts.paid, (order_id, amount, ts_ms)),
                                         key=_by_order)),
                       closed=tuple(order for order in facts.closed if order != order_id),
                       last_paid_ms=last)
    if event == "closed" and not paid and order_id not in facts.closed:
        # closed unpaid: no longer waiting for payment, and never again
        return replace(facts, unpaid=_without(facts.unpaid, order_id),
                       closed=tuple(sorted((*facts.closed, order_id))))
    return facts


def _paid_earlier(facts: Facts, order_id: str, ts_ms: int) -> Facts:
    """A `paid` delivered again: its time counts when it is earlier than the one known (so
    the paid time is the same whichever copy came first); the amount stays the first's."""
    paid = [(order, amount, ts_ms if order == order_id and at is not None and ts_ms < at
             else at) for order, amount, at in facts.paid]
    return facts if tuple(paid) == facts.paid else replace(facts, paid=tuple(paid))


def _by_order(entry: tuple[str, int, int | None]) -> str:
    return entry[0]


def started_trigger(before: Facts, after: Facts, order_id: str, event: str) -> str | None:
    """The event trigger an order event starts: `created_unpaid` when it made the order
    wait for payment, `paid` when it paid it; None for a replay, a late `created` of an
    order paid or closed, and every other event."""
    if event == "created" and _waits(after, order_id) and not _waits(before, order_id):
        return "created_unpaid"
    if event == "paid" and _paid(after, order_id) and not _paid(before, order_id):
        return "paid"
    return None


def _waits(facts: Facts, order_id: str) -> bool:
    return any(order == order_id for order, _created in facts.unpaid)


def _paid(facts: Facts, order_id: str) -> bool:
    return any(entry[0] == order_id for entry in facts.paid)


def _without(orders: tuple[tuple[str, int], ...], order_id: str
             ) -> tuple[tuple[str, int], ...]:
    return tuple(entry for entry in orders if entry[0] != order_id)


def trigger_holds(facts: Facts, on: str, ref: str | None) -> bool:
    """Whether an event trigger still holds when its delay is over: the order created is
    still unpaid (`created_unpaid`, ref = order id); the click is still the buyer's last
    at the shop and no order came after it (`click_no_order`, ref = the click's time)."""
    if on == "created_unpaid":
        return any(order == ref for order, _created in facts.unpaid)
    if on == "click_no_order":
        click_ms = int(ref or 0)
        return facts.last_click_ms == click_ms and (facts.last_created_ms is None
                                                     or facts.last_created_ms < click_ms)
    return True  # paid: the payment happened
