"""Billing end to end on the real broker: commissions, refunds, T+15 / T+7 settlement, balances."""

from __future__ import annotations

import time
from collections import Counter

import orjson

from app.domain.model import DAY_MS

EVERY_SECOND = "* * * * * *"


def configure(kafka, now: int) -> None:
    kafka.produce("channels", [
        ("ch", {"channel_id": "ch"}),
        ("kuaishou", {"channel_id": "kuaishou", "settle_days": 15,
                      "settle_days_by_participant": {"promoter": 7},
                      "self_operated_rate_bp": {"*": 300}}),
    ])
    kafka.produce("shops", [("s1", {"shop_id": "s1", "cps_joined_ms": now - 60 * DAY_MS,
                                    "authorized_channels": ["kuaishou"]})])
    kafka.produce("activities", [
        ("a-generic", {"activity_id": "a-generic", "shop_id": "s1", "level": "shop_generic",
                       "rate_bp": 1000, "start_ms": now - 90 * DAY_MS}),
        ("a-item", {"activity_id": "a-item", "shop_id": "s1", "level": "generic_product",
                    "rate_bp": 2000, "item_ids": ["i2"], "start_ms": now - 90 * DAY_MS}),
    ])
    time.sleep(1.5)


def lines() -> list[dict]:
    return [{"item_id": "i1", "category_id": "c1", "quantity": 1, "amount": 12900},
            {"item_id": "i2", "category_id": "c2", "quantity": 2, "amount": 5000}]


def order_event(order_id: str, buyer: str, event: str, ts: int, **extra) -> dict:
    return {"order_id": order_id, "event": event, "ts_ms": ts, "buyer_id": buyer, "shop_id": "s1",
            "items": lines(), **extra}


def by_key(records: list[dict], field: str) -> dict:
    grouped: dict = {}
    for record in records:
        grouped.setdefault(record["value"][field], []).append(record["value"])
    return grouped


def test_full_order_life_with_backdated_times(kafka, make_worker, events):
    worker = make_worker(CPS_SETTLEMENT_SCHEDULE=EVERY_SECOND).start()
    now = int(time.time() * 1000)
    configure(kafka, now)
    paid_at, completed_at = now - 20 * DAY_MS, now - 16 * DAY_MS
    kafka.produce("clicks", [("u1", events.click("c1", "u1", paid_at - 60_000, channel="ch",
                                                promoter="p1"))])
    refund = {"refund_id": "r1", "item_id": "i1", "amount": 2900}
    life = [
        order_event("o1", "u1", "created", paid_at - 1000),
        order_event("o1", "u1", "paid", paid_at),
        order_event("o1", "u1", "paid", paid_at),                       # a duplicate
        order_event("o1", "u1", "refund_started", paid_at + 1000, refund=refund),
        order_event("o1", "u1", "refunded", paid_at + 2000, refund=refund),
        order_event("o1", "u1", "refunded", paid_at + 2000, refund=refund),  # a duplicate
        order_event("o1", "u1", "refunded", paid_at + 3000,
                    refund={"refund_id": "r2", "item_id": "i2", "amount": 5001}),  # too much
        order_event("o1", "u1", "completed", completed_at),
    ]
    kafka.produce("orders", [("o1", e) for e in life])

    settlements = kafka.read("settlements", timeout=60, settle=2.0,
                             until=lambda rs: sum(r["value"]["state"] == "settled"
                                                  for r in rs) >= 3)
    commissions = kafka.read("commissions", settle=1.0, until=lambda rs: len(rs) >= 9)

    # i1: 12,900 at 10 %, then 10,000 after the refund; i2: 5,000 at the item's 20 %.
    totals = Counter()
    for record in commissions:
        value = record["value"]
        totals[(value["item_id"], value["participant"])] += value["delta"]
        assert set(value) >= {"event_id", "order_id", "item_id", "pool", "participant",
                              "account_id", "delta", "total", "rate_bp", "activity_id", "level",
                              "cause", "ts_ms"}
        assert record["key"] == "o1"
    assert +totals == {("i1", "youzan_platform"): 100, ("i1", "channel_platform"): 50,
                       ("i1", "promoter"): 850, ("i2", "youzan_platform"): 100,
                       ("i2", "channel_platform"): 50, ("i2", "promoter"): 850}, worker.tail()
    causes = Counter(r["value"]["cause"] for r in commissions)
    assert causes == {"paid": 6, "refund:r1": 3}
    rates = {(r["value"]["item_id"], r["value"]["activity_id"], r["value"]["rate_bp"],
              r["value"]["level"]) for r in commissions}
    assert rates == {("i1", "a-generic", 1000, "shop_generic"),
                     ("i2", "a-item", 2000, "generic_product")}
    assert len({r["value"]["event_id"] for r in commissions}) == len(commissions)

    states = Counter((r["value"]["participant"], r["value"]["state"]) for r in settlements)
    assert states == {(p, s): 1 for p in ("youzan_platform", "channel_platform", "promoter")
                      for s in ("frozen", "adjusted", "settled")}
    settled = {r["value"]["participant"]: r["value"] for r in settlements
               if r["value"]["state"] == "settled"}
    assert {p: v["amount"] for p, v in settled.items()} == {
        "youzan_platform": 200, "channel_platform": 100, "promoter": 1700}
    assert all(v["due_ms"] == completed_at + 15 * DAY_MS for v in settled.values())
    assert all(r["key"] == r["value"]["account_id"] for r in settlements)

    dead = kafka.read("deadletter", timeout=20, until=lambda rs: len(rs) >= 1)
    assert [d["value"]["error"][:14] for d in dead] == ["refund.amount:"]

    time.sleep(1.0)
    status, body = worker.get("/accounts/p1?format=json")
    assert status == 200
    assert orjson.loads(body) == {"account_id": "p1", "frozen": 0, "settled": 1700,
                                  "clawed_back": 0, "commissions": 1700}
    status, page = worker.get("/accounts/youzan")
    assert status == 200 and b"<table>" in page and b"200" in page


def test_kuaishou_promoter_settles_at_t_plus_7_and_the_platform_later(kafka, make_worker, events):
    make_worker(CPS_SETTLEMENT_SCHEDULE=EVERY_SECOND).start()
    now = int(time.time() * 1000)
    configure(kafka, now)
    paid_at, completed_at = now - 11 * DAY_MS, now - 10 * DAY_MS
    kafka.produce("clicks", [("u2", events.click("c2", "u2", paid_at - 1000, channel="kuaishou",
                                                promoter="p2"))])
    kafka.produce("orders", [("o2", order_event("o2", "u2", kind, ts)) for kind, ts in (
        ("created", paid_at - 500), ("paid", paid_at), ("completed", completed_at))])
    settlements = kafka.read("settlements", timeout=60, settle=4.0,
                             until=lambda rs: any(r["value"]["state"] == "settled" for r in rs))
    states = {(r["value"]["participant"], r["value"]["state"]): r["value"] for r in settlements}
    assert states[("promoter", "settled")]["due_ms"] == completed_at + 7 * DAY_MS
    assert ("youzan_platform", "settled") not in states
    assert ("channel_platform", "settled") not in states
    assert states[("channel_platform", "frozen")]["due_ms"] == completed_at + 15 * DAY_MS


def test_refund_after_settlement_is_clawed_back_and_self_operated_pays_the_channel(
        kafka, make_worker):
    worker = make_worker(CPS_SETTLEMENT_SCHEDULE=EVERY_SECOND,
                         CPS_ATTRIBUTION_GRACE_MS="1000").start()
    now = int(time.time() * 1000)
    configure(kafka, now)
    paid_at = now - 30 * DAY_MS
    kafka.produce("orders", [("o3", order_event("o3", "u3", kind, ts, fanstype="kuaishou"))
                             for kind, ts in (("created", paid_at - 10), ("paid", paid_at),
                                              ("completed", paid_at + 10))])
    kafka.read("settlements", timeout=60, until=lambda rs: any(
        r["value"]["state"] == "settled" for r in rs))
    refund = {"refund_id": "late", "item_id": "i1", "amount": 12900}
    kafka.produce("orders", [("o3", order_event("o3", "u3", "refunded", now, refund=refund))])
    settlements = kafka.read("settlements", timeout=60, settle=2.0, until=lambda rs: any(
        r["value"]["state"] == "clawback" for r in rs))
    assert [(r["value"]["participant"], r["value"]["state"], r["value"]["amount"])
            for r in settlements] == [("channel_platform", "frozen", 537),
                                      ("channel_platform", "settled", 537),
                                      ("channel_platform", "clawback", -387)], worker.tail()
    time.sleep(1.0)
    assert orjson.loads(worker.get("/accounts/kuaishou?format=json")[1]) == {
        "account_id": "kuaishou", "frozen": 0, "settled": 537, "clawed_back": -387,
        "commissions": 150}
