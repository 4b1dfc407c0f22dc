"""A buyer's behaviour at one shop, folded from the engine's own clicks and orders
(SPEC 13): what the audience predicates ask about.

Each fold returns the new behaviour, or the same object when the event
changes nothing, so a replayed click or order event is harmless: clicks
count by their time (the latest wins), orders by their id (an order is
paid once, however often its `paid` event comes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from app.domain.audience import Behaviour


@dataclass(frozen=True, slots=True)
class Facts:
    last_click_ms: int | None = None
    last_paid_ms: int | None = None
    last_created_ms: int | None = None
    paid: tuple[tuple[str, int], ...] = ()           # (order id, paid amount)
    unpaid: tuple[tuple[str, int], ...] = ()         # (order id, created ms), not paid yet

    def behaviour(self) -> Behaviour:
        return Behaviour(last_click_ms=self.last_click_ms, last_paid_ms=self.last_paid_ms,
                         paid_orders=len(self.paid),
                         paid_amount=sum(amount for _order, amount in self.paid),
                         unpaid_created_ms=tuple(created for _order, created in self.unpaid))


def clicked(facts: Facts, ts_ms: int) -> Facts:
    if facts.last_click_ms is not None and facts.last_click_ms >= ts_ms:
        return facts
    return replace(facts, last_click_ms=ts_ms)


def order_event(facts: Facts, order_id: str, event: str, ts_ms: int, amount: int) -> Facts:
    """Fold one order event (`created`, `paid`, `closed`; others change nothing here)."""
    if any(order == order_id for order, _amount in facts.paid):
        return facts  # paid already: later events of the order do not make it unpaid
    waiting = tuple(entry for entry in facts.unpaid if entry[0] != order_id)
    if event == "created":
        if len(waiting) != len(facts.unpaid):
            return facts
        last = ts_ms if facts.last_created_ms is None else max(facts.last_created_ms, ts_ms)
        return replace(facts, unpaid=(*facts.unpaid, (order_id, ts_ms)), last_created_ms=last)
    if event == "paid":
        last = ts_ms if facts.last_paid_ms is None else max(facts.last_paid_ms, ts_ms)
        return replace(facts, unpaid=waiting, paid=(*facts.paid, (order_id, amount)),
                       last_paid_ms=last)
    if event == "closed" and len(waiting) != len(facts.unpaid):
        return replace(facts, unpaid=waiting)  # closed unpaid: no longer waiting for payment
    return facts


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
