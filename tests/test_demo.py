"""The demo stream's coupon plan: its first occurrence runs at once, and buyers granted a
coupon order soon after, some using it, some of those refunded in full."""

from __future__ import annotations

import math

import orjson

from app.domain.outcomes import CONVERTED, REPLENISHED, USED, Exposure, Watch
from app.domain.plans import fire_times, parse_plan
from app.records.inputs import decode_order
from app.services.demo import (
    COUPON_ORDER_DELAY_MS,
    COUPON_ORDER_SHARE,
    COUPON_REFUND_SHARE,
    COUPON_USE_SHARE,
    DemoStream,
)

NOW_MS = 1_800_000_012_345  # 12.345 s into a minute
GRANTS = 3000


def _grant(n: int, *, kind: str = "grant", shop: str = "shop-000") -> dict:
    return {"action_id": f"demo-coupon@1800000000000:u-{n:05d}", "plan_id": "demo-coupon",
            "occurrence_id": "demo-coupon@1800000000000", "buyer_id": f"u-{n:05d}",
            "shop_id": shop, "variant": "5-off", "kind": kind, "sink": "demo-webhook",
            "payload": {"coupon": "5-off"}, "ts_ms": NOW_MS - 300}


def _orders_after(stream: DemoStream, grants: list[dict]) -> dict[str, list[dict]]:
    """Every order event the grants lead to, by order id, in the order they are due."""
    for grant in grants:
        stream.granted(grant, NOW_MS)
    events = stream.due_events(NOW_MS + 10 * 60_000)
    assert stream.in_flight == 0
    orders: dict[str, list[dict]] = {}
    for topic, key, value in events:
        assert topic == "orders"
        event = orjson.loads(value)
        assert key == event["order_id"]
        orders.setdefault(key, []).append(event)
    return orders


def test_the_coupon_plan_fires_at_once():
    stream = DemoStream(7, buyers=50)
    plan = parse_plan(next(value for _topic, key, value in stream.plans(NOW_MS)
                           if key == "demo-coupon"))
    first = next(iter(fire_times(plan, plan.created_ms - 1, "UTC")))
    assert first == 1_800_000_000_000  # this minute's start: due now, 12.345 s late


def test_buyers_granted_a_coupon_order_with_it_within_seconds():
    grants = [_grant(n) for n in range(GRANTS)]
    by_action = {grant["action_id"]: grant for grant in grants}
    orders = _orders_after(DemoStream(7, run="r-"), grants)
    used = refunded = 0
    for order_id, events in orders.items():
        kinds = [event["event"] for event in events]
        created, paid = events[0], events[1]
        assert kinds[:2] == ["created", "paid"] and kinds[-1] == "completed"
        assert order_id.startswith("o-r-c-") and len(order_id) <= 128
        buyers = {event["buyer_id"] for event in events}
        assert len(buyers) == 1 and {event["shop_id"] for event in events} == {"shop-000"}
        low, high = COUPON_ORDER_DELAY_MS
        assert NOW_MS + low <= created["ts_ms"] <= NOW_MS + high
        assert created["ts_ms"] < paid["ts_ms"] < events[-1]["ts_ms"]
        coupons = created.get("coupon_ids")
        assert paid.get("coupon_ids") == coupons
        if coupons is not None:
            used += 1
            [action_id] = coupons
            assert by_action[action_id]["buyer_id"] in buyers
        if "refunded" in kinds:
            refunded += 1
            assert coupons is not None  # only orders using the coupon are refunded
            refund = events[kinds.index("refunded")]["refund"]
            [line] = paid["items"]
            assert (refund["item_id"], refund["amount"]) == (line["item_id"], line["amount"])
        for event in events:
            decode_order(orjson.dumps(event))  # valid for the engine
    # Binomial counts within 4.5 standard deviations of the shares the demo promises.
    for count, trials, share in ((len(orders), GRANTS, COUPON_ORDER_SHARE),
                                 (used, len(orders), COUPON_USE_SHARE),
                                 (refunded, used, COUPON_REFUND_SHARE)):
        assert abs(count - trials * share) <= 4.5 * math.sqrt(trials * share * (1 - share))


def test_the_orders_depend_on_the_grants_not_on_their_arrival_order():
    grants = [_grant(n) for n in range(200)]
    assert _orders_after(DemoStream(7), grants) == _orders_after(DemoStream(7), grants[::-1])
    assert _orders_after(DemoStream(8), grants) != _orders_after(DemoStream(7), grants)


def test_notifications_and_grants_at_other_shops_order_nothing():
    grants = [_grant(n, kind="notify") for n in range(100)]
    grants += [_grant(n, shop="elsewhere") for n in range(100)]
    assert _orders_after(DemoStream(7), grants) == {}


def test_the_engine_records_each_coupon_order_as_used_converted_and_replenished():
    """The demo's orders, folded by the engine's outcome rules, give one `converted` per
    order, `used` per order carrying the coupon, `replenished` per one refunded in full."""
    grants = [_grant(n) for n in range(300)]
    orders = _orders_after(DemoStream(7), grants)
    expected = {CONVERTED: len(orders), USED: 0, REPLENISHED: 0}
    found = dict.fromkeys(expected, 0)
    for events in orders.values():
        action_id = events[0]["coupon_ids"][0] if "coupon_ids" in events[0] else None
        expected[USED] += action_id is not None
        expected[REPLENISHED] += any(event["event"] == "refunded" for event in events)
        grant = next(g for g in grants if g["buyer_id"] == events[0]["buyer_id"])
        watch = Watch((Exposure("demo-coupon", grant["occurrence_id"], "5-off", grant["ts_ms"],
                                604_800_000, grant["action_id"]),))
        for event in events:
            watch = watch.observed(decode_order(orjson.dumps(event)))
        paid = events[1]
        _watch, outcomes = watch.settled(
            [(paid["order_id"], paid["items"][0]["amount"], paid["ts_ms"])], NOW_MS)
        for outcome in outcomes:
            found[outcome.kind] += 1
    assert found == expected and expected[USED] and expected[REPLENISHED]
