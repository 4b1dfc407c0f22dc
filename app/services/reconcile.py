"""Reconciliation: recompute the money from the topics alone and compare with what was published.

Nothing here reads the engine's tables. The orders and the configuration
topics are replayed through the same domain rules (app.domain.ledger) to
get, per order, what every (line, pool, participant) should hold; that is
compared with the published commission deltas, the settlement events with
the commissions per account, every settlement with its due time, and the
attributions with the orders (one each). Every difference is reported.

The rules price an order with the configuration as it is in the topics now;
if activities or policies changed after some orders were paid, those orders
show as differences (restrict the check to a time range).

The replay runs the engine's own ledger code, so a mistake in the rules
themselves (a rate, a pool, a split) is made twice and not seen; settlement
states and due times are taken as published; and nothing here says whether
an order got the right click, or whether a payee that is due was settled at
all. What it sees is the topics disagreeing with those rules: events lost,
doubled or forged, sums that do not add up, a settlement before its
published due time. The rules are checked against the SPEC by the
integration tests, which recompute every output with plain arithmetic
(tests/integration/scenarios.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from app.domain import ledger as money
from app.domain.attribution import Attribution
from app.domain.ledger import Ledger, Source
from app.kafka.connection import KafkaConnection
from app.kafka.topics import Topics
from app.records.fields import InvalidEvent
from app.records.inputs import decode_order
from app.records.outputs import attributed, decode_attribution
from app.services.catalog import Catalog


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


@dataclass
class Report:
    counts: Counter = field(default_factory=Counter)
    differences: list[str] = field(default_factory=list)

    def differ(self, text: str) -> None:
        self.differences.append(text)

    @property
    def clean(self) -> bool:
        return not self.differences


def reconcile(records: Iterable[ConsumedRecord], topics: Topics, *, now_ms: int,
              in_flight_ms: int = 60_000, since_ms: int | None = None,
              until_ms: int | None = None) -> Report:
    """Check every invariant over `records` (all topics mixed, each in its offset order)."""
    report = Report()
    catalog = Catalog(KafkaConnection(""), topics=topics)
    orders: dict[str, list[tuple[ConsumedRecord, object]]] = defaultdict(list)
    attributions: dict[str, list[Attribution]] = defaultdict(list)
    commissions: list[dict] = []
    settlements: list[dict] = []
    config = set(topics.config_topics)
    for record in records:
        if record.topic in config:
            catalog.apply(record.topic, record.key, record.value)
        elif record.topic == topics.orders:
            try:
                event = decode_order(record.value)
            except InvalidEvent:
                report.counts["invalid order events (dead-lettered)"] += 1
                continue
            orders[event.order_id].append((record, event))
        elif record.topic == topics.attributions:
            try:
                attribution = decode_attribution(record.key, record.value)
            except InvalidEvent as exc:
                report.differ(f"{record.topic} partition {record.partition} offset "
                              f"{record.offset}: not an attribution ({exc})")
                continue
            attributions[attribution.order_id].append(attribution)
        elif record.topic == topics.commissions:
            commissions.append(orjson.loads(record.value))
        elif record.topic == topics.settlements:
            settlements.append(orjson.loads(record.value))

    selected = {order_id for order_id, events in orders.items()
                if _in_range(events[0][0].timestamp_ms, since_ms, until_ms)}
    in_flight = {order_id for order_id in selected
                 if now_ms - max(r.timestamp_ms for r, _ in orders[order_id]) < in_flight_ms}
    checked = selected - in_flight
    report.counts.update({"orders": len(checked), "orders in flight (skipped)": len(in_flight)})

    _check_attributions(report, checked, attributions)
    expected = _recompute(report, checked, orders, attributions, catalog)
    _check_commissions(report, checked, expected, commissions)
    _check_settlements(report, checked, commissions, settlements)
    return report


def _in_range(ts: int, since_ms: int | None, until_ms: int | None) -> bool:
    return (since_ms is None or ts >= since_ms) and (until_ms is None or ts < until_ms)


def _check_attributions(report: Report, checked: set[str],
                        attributions: dict[str, list[Attribution]]) -> None:
    for order_id in sorted(checked):
        found = len(attributions.get(order_id, ()))
        if found != 1:
            report.differ(f"order {order_id}: {found} attributions, expected exactly 1")
    report.counts["attributions"] = sum(len(attributions.get(o, ())) for o in checked)


def _recompute(report: Report, checked: set[str], orders: dict, attributions: dict,
               catalog: Catalog) -> dict[str, Ledger]:
    ledgers = {}
    for order_id in sorted(checked):
        ledger = Ledger(order_id)
        for record, event in orders[order_id]:
            source = Source(record.topic, record.partition, record.offset, record.key, None)
            ledger = money.record_order_event(ledger, event, catalog, source).ledger
        results = attributions.get(order_id)
        if results:
            ledger = money.record_attribution(ledger, attributed(results[0]), catalog).ledger
        ledgers[order_id] = ledger
    return ledgers


def _check_commissions(report: Report, checked: set[str], expected: dict[str, Ledger],
                       commissions: list[dict]) -> None:
    published: Counter = Counter()
    ids = Counter()
    for commission in commissions:
        if commission["order_id"] not in checked:
            continue
        ids[commission["event_id"]] += 1
        published[(commission["order_id"], commission["item_id"], commission["pool"],
                   commission["participant"])] += commission["delta"]
    report.counts["commission events"] = sum(ids.values())
    for event_id, count in ids.items():
        if count > 1:
            report.differ(f"commission event {event_id} published {count} times")
    wanted: Counter = Counter()
    for order_id, ledger in expected.items():
        for (item_id, pool, participant), total in ledger.totals.items():
            wanted[(order_id, item_id, pool, participant)] += total
    for key in sorted(set(wanted) | set(published)):
        if wanted[key] != published[key]:
            order_id, item_id, pool, participant = key
            report.differ(f"order {order_id} line {item_id} pool {pool} {participant}: "
                          f"deltas sum to {published[key]}, the split of the net amount is "
                          f"{wanted[key]}")


def _check_settlements(report: Report, checked: set[str], commissions: list[dict],
                       settlements: list[dict]) -> None:
    by_account_commissions: Counter = Counter()
    for commission in commissions:
        if commission["order_id"] in checked:
            by_account_commissions[commission["account_id"]] += commission["delta"]
    by_account_settlements: Counter = Counter()
    frozen_now: Counter = Counter()  # per (order, participant), in publication order
    ids = Counter()
    for settlement in settlements:
        if settlement["order_id"] not in checked:
            continue
        ids[settlement["event_id"]] += 1
        payee = (settlement["order_id"], settlement["participant"])
        if settlement["state"] != "settled":
            by_account_settlements[settlement["account_id"]] += settlement["amount"]
            if settlement["state"] != "clawback":
                frozen_now[payee] += settlement["amount"]
            continue
        if settlement["amount"] != frozen_now[payee]:
            report.differ(f"order {payee[0]} {payee[1]}: settled {settlement['amount']}, "
                          f"but {frozen_now[payee]} was frozen")
        due = settlement.get("due_ms")
        if due is None or settlement["ts_ms"] < due:
            report.differ(f"order {settlement['order_id']} {settlement['participant']} "
                          f"settled at {settlement['ts_ms']} before its due time {due}")
    report.counts["settlement events"] = sum(ids.values())
    for event_id, count in ids.items():
        if count > 1:
            report.differ(f"settlement event {event_id} published {count} times")
    accounts = set(by_account_commissions) | set(by_account_settlements)
    report.counts["accounts"] = len(accounts)
    for account in sorted(accounts):
        if by_account_commissions[account] != by_account_settlements[account]:
            report.differ(f"account {account}: frozen + adjusted + clawbacks = "
                          f"{by_account_settlements[account]}, commissions = "
                          f"{by_account_commissions[account]}")
