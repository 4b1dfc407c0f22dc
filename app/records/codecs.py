"""How engine state is stored in tables (and their changelogs): compact JSON arrays.

Formats are positional to keep the changelog small; each encoder has its
decoder next to it and a round-trip test.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from app.domain.attribution import Waiting
from app.domain.ledger import (
    Attributed,
    Ledger,
    LineRefund,
    Payee,
    PendingRefund,
    PricedLine,
    Source,
    Terms,
)
from app.domain.model import Channel, OrderFacts, OrderLine
from app.domain.pools import Policy, Share
from app.domain.rates import Rate

# -- attribution: waiting orders ------------------------------------------------


def _facts_row(facts: OrderFacts) -> list:
    return [facts.order_id, facts.event, facts.ts_ms, facts.buyer_id, facts.shop_id,
            facts.channel_id, facts.fanstype, facts.tracking]


def encode_waiting(waiting: Waiting) -> bytes:
    created = waiting.created
    return orjson.dumps([_facts_row(waiting.first),
                         None if created is None else _facts_row(created),
                         waiting.deadline_ms, waiting.held])


def decode_waiting(raw: bytes) -> Waiting:
    # Rows written before `held` existed: every stored wait then meant `delayed`.
    first, created, deadline_ms, held = [*orjson.loads(raw), True][:4]
    return Waiting(OrderFacts(*first), None if created is None else OrderFacts(*created),
                   deadline_ms, held)


# -- billing: order ledgers ---------------------------------------------------------


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def _shares(shares: tuple[Share, ...]) -> list:
    return [[s.participant, s.share_bp, s.of_amount, s.rest] for s in shares]


def _unshares(rows: list) -> tuple[Share, ...]:
    return tuple(Share(*row) for row in rows)


def _terms(terms: Terms | None) -> Any:
    if terms is None:
        return None
    channel = terms.channel
    return [
        [[line.item_id, line.amount,
          [[pool, rate.rate_bp, rate.activity_id, rate.level] for pool, rate in line.pools]]
         for line in terms.lines],
        _shares(terms.policy.product), _shares(terms.policy.group_leader),
        [list(pair) for pair in terms.accounts],
        [channel.channel_id, channel.settle_days, dict(channel.settle_days_by_participant)],
    ]


def _unterms(row: Any) -> Terms | None:
    if row is None:
        return None
    lines, product, leader, accounts, (channel_id, days, by_participant) = row
    return Terms(
        lines=tuple(PricedLine(item, amount, tuple((pool, Rate(bp, activity, level))
                                                   for pool, bp, activity, level in pools))
                    for item, amount, pools in lines),
        policy=Policy(_unshares(product), _unshares(leader)),
        accounts=tuple((participant, account) for participant, account in accounts),
        channel=Channel(channel_id, settle_days=days, settle_days_by_participant=by_participant),
    )


def encode_ledger(ledger: Ledger) -> bytes:
    attributed = ledger.attributed
    return orjson.dumps([
        ledger.order_id, ledger.buyer_id, ledger.shop_id,
        None if attributed is None else [attributed.type, attributed.channel_id,
                                         attributed.promoter_id, attributed.group_leader_id,
                                         attributed.base_id, attributed.buyer_id],
        [[line.item_id, line.category_id, line.quantity, line.amount] for line in ledger.lines],
        ledger.lines_paid, ledger.paid_ms, ledger.completed_ms, ledger.closed_ms,
        [[r.refund_id, r.item_id, r.amount, r.ts_ms] for r in ledger.refunds],
        [[[p.refund.refund_id, p.refund.item_id, p.refund.amount, p.refund.ts_ms],
          [p.source.topic, p.source.partition, p.source.offset, _b64(p.source.key),
           _b64(p.source.value)]] for p in ledger.pending],
        sorted(ledger.started_refunds),
        _terms(ledger.terms),
        [[*key, total] for key, total in ledger.totals.items()],
        [[p.participant, p.account_id, p.amount, p.touched, p.settled, p.due_ms, p.seq]
         for p in ledger.payees.values()],
        sorted(ledger.cancelled_refunds),
    ])


def decode_ledger(raw: bytes) -> Ledger:
    # Rows written before cancelled refunds were kept held only the still open ones where
    # the started ones are now: the same open refunds.
    (order_id, buyer_id, shop_id, attributed, lines, lines_paid, paid_ms, completed_ms,
     closed_ms, refunds, pending, started_refunds, terms, totals, payees,
     cancelled_refunds) = [*orjson.loads(raw), []][:16]
    return Ledger(
        order_id=order_id, buyer_id=buyer_id, shop_id=shop_id,
        attributed=None if attributed is None else Attributed(*attributed),
        lines=tuple(OrderLine(*line) for line in lines), lines_paid=lines_paid,
        paid_ms=paid_ms, completed_ms=completed_ms, closed_ms=closed_ms,
        refunds=tuple(LineRefund(*r) for r in refunds),
        pending=tuple(PendingRefund(LineRefund(*refund), Source(topic, partition, offset,
                                                             _unb64(key), _unb64(value)))
                      for refund, (topic, partition, offset, key, value) in pending),
        started_refunds=frozenset(started_refunds),
        cancelled_refunds=frozenset(cancelled_refunds),
        terms=_unterms(terms),
        totals={(item, pool, participant): total for item, pool, participant, total in totals},
        payees={row[0]: Payee(*row) for row in payees},
    )
