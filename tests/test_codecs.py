"""Stored ledgers survive their codec, and rows written by earlier versions still read."""

from __future__ import annotations

import orjson

from app.domain.behaviour import Facts
from app.domain.ledger import (
    Attributed,
    Ledger,
    Source,
    record_attribution,
    record_order_event,
)
from app.domain.model import Channel, OrderEvent, OrderLine, Refund
from app.domain.pools import DEFAULT_POLICY
from app.domain.rates import Activity, Level
from app.records.codecs import decode_ledger, encode_ledger
from tables.operations import decode_facts, encode_facts

T = 1_700_000_000_000
SOURCE = Source("cps.orders", 3, 42, b"o1", b'{"event": "refunded"}')


class Pricing:
    def activities(self, shop_id):
        return [Activity("a1", "s1", Level.SHOP_GENERIC, 1000, start_ms=0)]

    def policy(self, channel_id):
        return DEFAULT_POLICY

    def channel(self, channel_id):
        return Channel(channel_id, settle_days_by_participant={"promoter": 7})


def event(kind: str, ts_ms: int, refund=None) -> OrderEvent:
    return OrderEvent("o1", kind, ts_ms, "u1", "s1",
                      items=(OrderLine("i1", "c1", 2, 12900), OrderLine("i2", None, 1, 999)),
                      refund=Refund(*refund) if refund else None)


def test_a_ledger_with_every_kind_of_fact_round_trips():
    ledger = Ledger("o1")
    for kind, ts_ms, refund in [
            ("refunded", T + 5, ("r-early", "i1", 100)),  # waits for the lines
            ("paid", T, None), ("refund_started", T + 10, ("r1", "i1", 500)),
            ("refund_started", T + 11, ("r2", "i2", 9)),
            ("refund_cancelled", T + 12, ("r2", "i2", 9)),
            ("refund_cancelled", T + 13, ("r3", "i2", 9)), ("completed", T + 20, None)]:
        ledger = record_order_event(ledger, event(kind, ts_ms, refund), Pricing(), SOURCE).ledger
    ledger = record_attribution(ledger, Attributed("cps", "kuaishou", "p1", None, None, "u1"),
                                Pricing()).ledger
    pending = record_order_event(Ledger("o2"), event("refunded", T, ("r9", "i1", 1)),
                                 Pricing(), SOURCE).ledger
    assert ledger.open_refunds == {"r1"} and ledger.terms is not None and pending.pending

    for stored in (ledger, pending):
        assert decode_ledger(encode_ledger(stored)) == stored


def test_a_row_from_before_cancelled_refunds_were_kept_keeps_its_open_refunds():
    ledger = record_order_event(Ledger("o1"), event("refund_started", T, ("r1", "i1", 5)),
                                Pricing(), SOURCE).ledger
    row = orjson.loads(encode_ledger(ledger))
    assert row[-1] == []  # cancelled refunds, written last
    old_row = orjson.dumps(row[:-1])

    assert decode_ledger(old_row).open_refunds == {"r1"}
    assert decode_ledger(old_row).cancelled_refunds == frozenset()


def test_behaviour_rows_of_earlier_versions_still_read():
    facts = Facts(1, 2, 3, (("o1", 500, 2), ("o2", 70, None)), (("o3", 9),), ("o4",))
    assert decode_facts(encode_facts(facts)) == facts
    # paid orders without their time, and no closed orders
    old = orjson.dumps([1, 2, 3, [["o1", 500]], [["o3", 9]]])
    assert decode_facts(old) == Facts(1, 2, 3, (("o1", 500, None),), (("o3", 9),), ())
