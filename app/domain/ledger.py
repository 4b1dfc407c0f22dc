"""The money of one order (SPEC 6 and 7): commissions and their settlement.

A `Ledger` holds the facts of an order (lines, payment, refunds, the
attribution, completion) and what has been published so far. Each fact is
folded in by a function that returns the new ledger and the events to
publish (`Step`). Published amounts are always the difference between what
the facts now call for and what was published before, so a fact seen twice
publishes nothing the second time, and refunds in any order and split end
at the same totals as one refund of their sum.

Rates and the split policy are fixed when the order is first priced (paid
and attributed), so later configuration changes never rewrite old orders.

Longer than the other modules on purpose: pricing, refunds, publishing and
settlement all keep the one invariant above over the same `Ledger`, and
reading them together is how a change to one is checked against the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Protocol

import mmh3

from app.domain.model import DAY_MS, Channel, OrderEvent, OrderLine
from app.domain.pools import (
    DEFAULT_POLICY,
    Policy,
    Pool,
    account_of,
    pool_amount,
    split,
)
from app.domain.rates import (
    Activity,
    LineContext,
    Rate,
    best_by_level,
    group_leader_rate,
    product_rate,
    self_operated_rate,
)

PAID = "paid"
SETTLE = "settle"


class Pricing(Protocol):
    """The configuration a price depends on (the catalog implements it)."""

    def activities(self, shop_id: str) -> Iterable[Activity]: ...

    def policy(self, channel_id: str | None) -> Policy: ...

    def channel(self, channel_id: str) -> Channel: ...


@dataclass(frozen=True, slots=True)
class Attributed:
    """What billing needs of an attribution."""

    type: str
    channel_id: str | None
    promoter_id: str | None
    group_leader_id: str | None
    base_id: str | None
    buyer_id: str


@dataclass(frozen=True, slots=True)
class Source:
    """Where an event came from, to dead-letter it later if it proves invalid."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class LineRefund:
    refund_id: str
    item_id: str
    amount: int
    ts_ms: int


@dataclass(frozen=True, slots=True)
class PendingRefund:
    refund: LineRefund
    source: Source


@dataclass(frozen=True, slots=True)
class PricedLine:
    """A line and its pools with the rate of each, fixed at pricing."""

    item_id: str
    amount: int
    pools: tuple[tuple[str, Rate], ...]


@dataclass(frozen=True, slots=True)
class Terms:
    lines: tuple[PricedLine, ...]
    policy: Policy
    accounts: tuple[tuple[str, str], ...]  # participant -> account
    channel: Channel

    def account(self, participant: str) -> str:
        return dict(self.accounts).get(participant) or f"unassigned:{participant}"


@dataclass(frozen=True, slots=True)
class Payee:
    """One (participant, account) of the order and its settlement progress."""

    participant: str
    account_id: str
    amount: int = 0           # as published in settlement events so far
    touched: bool = False     # a settlement event was published
    settled: bool = False
    due_ms: int | None = None
    seq: int = 0              # settlement events published, for consumers' de-duplication


@dataclass(frozen=True, slots=True)
class Commission:
    event_id: str
    order_id: str
    item_id: str
    pool: str
    participant: str
    account_id: str
    delta: int
    total: int
    rate_bp: int
    activity_id: str | None
    level: str | None
    cause: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class Settlement:
    event_id: str
    order_id: str
    account_id: str
    participant: str
    state: str  # frozen | adjusted | settled | clawback
    amount: int
    due_ms: int | None
    ts_ms: int
    cause: str
    seq: int


@dataclass(frozen=True, slots=True)
class Ledger:
    order_id: str
    buyer_id: str | None = None
    shop_id: str | None = None
    attributed: Attributed | None = None
    lines: tuple[OrderLine, ...] = ()
    lines_paid: bool = False
    paid_ms: int | None = None
    completed_ms: int | None = None
    closed_ms: int | None = None
    refunds: tuple[LineRefund, ...] = ()
    pending: tuple[PendingRefund, ...] = ()
    started_refunds: frozenset[str] = frozenset()
    cancelled_refunds: frozenset[str] = frozenset()
    terms: Terms | None = None
    totals: dict[tuple[str, str, str], int] = field(default_factory=dict)
    payees: dict[str, Payee] = field(default_factory=dict)  # by participant

    @property
    def finished_ms(self) -> int | None:
        """When the order ended: completed, or closed after its payment."""
        if self.completed_ms is not None:
            return self.completed_ms
        if self.closed_ms is not None and self.paid_ms is not None:
            return self.closed_ms
        return None

    def refunded(self, item_id: str) -> int:
        return sum(r.amount for r in self.refunds if r.item_id == item_id)

    @property
    def open_refunds(self) -> frozenset[str]:
        """Refunds started and not ended: a refund ends when it is cancelled or refunded,
        whichever of its events came first, so a late or repeated `refund_started` never
        reopens it."""
        if not self.started_refunds:
            return frozenset()
        ended = self.cancelled_refunds | {r.refund_id for r in self.refunds} | {
            p.refund.refund_id for p in self.pending}
        return self.started_refunds - ended

    @property
    def fully_settled(self) -> bool:
        """Every payee that was ever published has been settled (and there is one)."""
        touched = [payee for payee in self.payees.values() if payee.touched]
        return bool(touched) and all(payee.settled for payee in touched)

    def due_entries(self) -> set[tuple[int, str]]:
        """(due_ms, participant) of every payee that settles once its due time passes:
        none while a refund is open, so the settlement check never reads a blocked payee."""
        if self.open_refunds:
            return set()
        return {(p.due_ms, p.participant) for p in self.payees.values()
                if p.touched and not p.settled and p.due_ms is not None}


@dataclass(frozen=True, slots=True)
class Step:
    ledger: Ledger
    commissions: tuple[Commission, ...] = ()
    settlements: tuple[Settlement, ...] = ()
    rejected: tuple[tuple[Source, str], ...] = ()


def event_id(*parts: object) -> str:
    """A deterministic id: the same order, line, pool, participant and cause, the same id."""
    text = "\x1f".join(["" if part is None else str(part) for part in parts])
    return format(mmh3.hash128(text.encode(), signed=False), "032x")


# -- folding facts in --------------------------------------------------------


def record_order_event(ledger: Ledger, event: OrderEvent, pricing: Pricing,
                       source: Source) -> Step:
    """Fold one order event into the ledger."""
    # One replace for all the changes: a ledger is rebuilt per event, so it must be cheap.
    changes: dict[str, object] = {}
    if (buyer_id := ledger.buyer_id or event.buyer_id) != ledger.buyer_id:
        changes["buyer_id"] = buyer_id
    if (shop_id := ledger.shop_id or event.shop_id) != ledger.shop_id:
        changes["shop_id"] = shop_id
    kind = event.event
    if kind == "created" and not ledger.lines_paid and not ledger.lines:
        changes["lines"] = event.items
    elif kind == "paid" and ledger.paid_ms is None:
        changes.update(lines=event.items, lines_paid=True, paid_ms=event.ts_ms)
    elif kind == "completed" and ledger.completed_ms is None:
        changes["completed_ms"] = event.ts_ms
    elif kind == "closed" and ledger.closed_ms is None:
        changes["closed_ms"] = event.ts_ms
    elif kind == "refund_started" and event.refund.refund_id not in ledger.started_refunds:
        changes["started_refunds"] = ledger.started_refunds | {event.refund.refund_id}
    elif kind == "refund_cancelled" and event.refund.refund_id not in ledger.cancelled_refunds:
        changes["cancelled_refunds"] = ledger.cancelled_refunds | {event.refund.refund_id}
    elif kind == "refunded" and not _applied(ledger, event.refund.refund_id):
        refund = LineRefund(event.refund.refund_id, event.refund.item_id, event.refund.amount,
                            event.ts_ms)
        changes["pending"] = (*ledger.pending, PendingRefund(refund, source))
    if changes:
        ledger = replace(ledger, **changes)
    return _settle_facts(ledger, pricing)


def record_attribution(ledger: Ledger, attributed: Attributed, pricing: Pricing) -> Step:
    if ledger.attributed is not None:
        return Step(ledger)  # one attribution per order; a replay changes nothing
    return _settle_facts(replace(ledger, attributed=attributed,
                                 buyer_id=ledger.buyer_id or attributed.buyer_id), pricing)


def settle_due(ledger: Ledger, now_ms: int) -> Step:
    """Settle every payee whose due time has passed, unless a refund is open."""
    if ledger.open_refunds:
        return Step(ledger)
    payees = dict(ledger.payees)
    out: list[Settlement] = []
    for participant, payee in ledger.payees.items():
        if payee.touched and not payee.settled and payee.due_ms is not None \
                and payee.due_ms <= now_ms:
            settled = replace(payee, settled=True, seq=payee.seq + 1)
            payees[participant] = settled
            out.append(_settlement(ledger.order_id, settled, "settled", payee.amount,
                                   SETTLE, now_ms))
    if not out:
        return Step(ledger)
    return Step(replace(ledger, payees=payees), settlements=tuple(out))


# -- internals -----------------------------------------------------------------


def _applied(ledger: Ledger, refund_id: str) -> bool:
    return any(r.refund_id == refund_id for r in ledger.refunds) or any(
        p.refund.refund_id == refund_id for p in ledger.pending)


@dataclass
class _Published:
    commissions: list[Commission] = field(default_factory=list)
    settlements: list[Settlement] = field(default_factory=list)
    rejected: list[tuple[Source, str]] = field(default_factory=list)


def _settle_facts(ledger: Ledger, pricing: Pricing) -> Step:
    """Validate waiting refunds, price the order when possible, publish what changed."""
    out = _Published()
    if ledger.terms is None and ledger.attributed is not None and ledger.paid_ms is not None:
        ledger = replace(ledger, terms=_price(ledger, pricing))
        ledger = _publish(ledger, (), PAID, ledger.paid_ms, out)
        # Refunds that arrived before the price follow, one by one, as if in order.
        for index, refund in enumerate(ledger.refunds):
            ledger = _publish(ledger, ledger.refunds[:index + 1], f"refund:{refund.refund_id}",
                              refund.ts_ms, out)
    if ledger.lines and ledger.pending:
        for pending in ledger.pending:
            refund = pending.refund
            reason = _refund_problem(ledger, refund)
            if reason is not None:
                out.rejected.append((pending.source, reason))
                continue
            ledger = replace(ledger, refunds=(*ledger.refunds, refund))
            if ledger.terms is not None:
                ledger = _publish(ledger, ledger.refunds, f"refund:{refund.refund_id}",
                                  refund.ts_ms, out)
        ledger = replace(ledger, pending=())
    return Step(_with_due_times(ledger), tuple(out.commissions), tuple(out.settlements),
                tuple(out.rejected))


def _refund_problem(ledger: Ledger, refund: LineRefund) -> str | None:
    line = next((line for line in ledger.lines if line.item_id == refund.item_id), None)
    if line is None:
        return f"refund.item_id: the order has no line {refund.item_id!r}"
    remaining = line.amount - ledger.refunded(refund.item_id)
    if refund.amount > remaining:
        return (f"refund.amount: {refund.amount} is more than the {remaining} that remains "
                f"paid on line {refund.item_id!r}")
    return None


def _price(ledger: Ledger, pricing: Pricing) -> Terms:
    attributed = ledger.attributed
    assert attributed is not None and ledger.paid_ms is not None
    channel = pricing.channel(attributed.channel_id) if attributed.channel_id \
        else Channel.unconfigured("")
    accounts = tuple(
        (participant, account)
        for participant in ("promoter", "group_leader", "channel_platform", "youzan_platform",
                            "fans")
        if (account := account_of(participant, promoter_id=attributed.promoter_id,
                                  group_leader_id=attributed.group_leader_id,
                                  channel_id=attributed.channel_id,
                                  buyer_id=attributed.buyer_id)) is not None
    )
    if attributed.type == "self_operated":
        lines = tuple(
            PricedLine(line.item_id, line.amount, (
                (Pool.CHANNEL.value,
                 self_operated_rate(dict(channel.self_operated_rate_bp), line.category_id)),))
            for line in ledger.lines)
        return Terms(lines, DEFAULT_POLICY, accounts, channel)
    if attributed.type != "cps":
        return Terms((), DEFAULT_POLICY, accounts, channel)
    activities = [a for a in pricing.activities(ledger.shop_id or "")
                  if a.shop_id == ledger.shop_id]
    lines = []
    for line in ledger.lines:
        context = LineContext(line.item_id, line.category_id, attributed.promoter_id,
                              attributed.base_id, attributed.group_leader_id)
        best = best_by_level(activities, context, ledger.paid_ms)
        pools = [(Pool.PRODUCT.value, product_rate(best))]
        if attributed.group_leader_id is not None:
            leader = group_leader_rate(best)
            if leader.rate_bp:
                pools.append((Pool.GROUP_LEADER.value, leader))
        lines.append(PricedLine(line.item_id, line.amount, tuple(pools)))
    return Terms(tuple(lines), pricing.policy(attributed.channel_id), accounts, channel)


def _targets(terms: Terms, refunds: tuple[LineRefund, ...]) -> dict[tuple[str, str, str],
                                                               tuple[int, Rate]]:
    """What each (line, pool, participant) should have on the net amounts after `refunds`."""
    refunded: dict[str, int] = {}
    for refund in refunds:
        refunded[refund.item_id] = refunded.get(refund.item_id, 0) + refund.amount
    targets: dict[tuple[str, str, str], tuple[int, Rate]] = {}
    for line in terms.lines:
        net = line.amount - refunded.get(line.item_id, 0)
        for pool, rate in line.pools:
            pool_total = pool_amount(net, rate.rate_bp)
            for participant, amount in split(pool_total, net,
                                             terms.policy.shares(Pool(pool))).items():
                targets[(line.item_id, pool, participant)] = (amount, rate)
    return targets


def _publish(ledger: Ledger, refunds: tuple[LineRefund, ...], cause: str, ts_ms: int,
             out: _Published) -> Ledger:
    """Publish what moves the ledger to the net amounts after `refunds`; return the new ledger."""
    terms = ledger.terms
    assert terms is not None
    totals = dict(ledger.totals)
    by_participant: dict[str, int] = {}
    for key, (target, rate) in sorted(_targets(terms, refunds).items()):
        item_id, pool, participant = key
        by_participant[participant] = by_participant.get(participant, 0) + target
        delta = target - totals.get(key, 0)
        if delta:
            totals[key] = target
            out.commissions.append(Commission(
                event_id=event_id(ledger.order_id, item_id, pool, participant, cause),
                order_id=ledger.order_id, item_id=item_id, pool=pool, participant=participant,
                account_id=terms.account(participant), delta=delta, total=target,
                rate_bp=rate.rate_bp, activity_id=rate.activity_id, level=rate.level,
                cause=cause, ts_ms=ts_ms))
    payees = dict(ledger.payees)
    for participant, amount in sorted(by_participant.items()):
        payee = payees.get(participant) or Payee(participant, terms.account(participant),
                                                 due_ms=_due_ms(ledger, participant))
        change = amount - payee.amount
        if not change:
            continue
        state = "clawback" if payee.settled else "frozen" if cause == PAID else "adjusted"
        payee = replace(payee, amount=amount, touched=True, seq=payee.seq + 1)
        payees[participant] = payee
        out.settlements.append(_settlement(ledger.order_id, payee, state, change, cause, ts_ms))
    return replace(ledger, totals=totals, payees=payees)


def _due_ms(ledger: Ledger, participant: str) -> int | None:
    """When a payee's money is due: the order's end + the channel's days for the participant."""
    finished = ledger.finished_ms
    if finished is None or ledger.terms is None:
        return None
    channel = ledger.terms.channel
    days = channel.settle_days_by_participant.get(participant, channel.settle_days)
    return finished + days * DAY_MS


def _with_due_times(ledger: Ledger) -> Ledger:
    if ledger.finished_ms is None or ledger.terms is None or all(
            payee.due_ms is not None for payee in ledger.payees.values()):
        return ledger
    payees = {participant: payee if payee.due_ms is not None
              else replace(payee, due_ms=_due_ms(ledger, participant))
              for participant, payee in ledger.payees.items()}
    return replace(ledger, payees=payees)


def _settlement(order_id: str, payee: Payee, state: str, amount: int, cause: str,
                ts_ms: int) -> Settlement:
    return Settlement(
        event_id=event_id(order_id, payee.participant, payee.account_id, state, cause),
        order_id=order_id, account_id=payee.account_id, participant=payee.participant,
        state=state, amount=amount, due_ms=payee.due_ms, ts_ms=ts_ms, cause=cause,
        seq=payee.seq)
