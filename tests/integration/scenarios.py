"""Input streams of the fault and backlog tests, and what the engine must make of them.

`Expected` is an independent recomputation: the SPEC's rules (sections 5 to
7) written again here with plain arithmetic, not with app.domain, so a
mistake in the engine's rules cannot hide in both (`cps reconcile` replays
the engine's own ledger code, so it cannot see such a mistake). `check_outputs`
reads every output topic with read_committed and compares: exactly one
attribution per order, with the fields the rules give; every commission
delta once; commission totals per account; every settlement event of every
(order, participant, account), in order, to the minor unit; then `cps
reconcile` must be clean.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from app.domain.model import Click
from app.domain.tokens import TRACKING, Signer, tracking_payload
from app.kafka.connection import started

CPS = str(Path(sys.executable).with_name("cps"))
DAY_MS = 86_400_000
HOUR_MS = 3_600_000

SHARES = (("youzan_platform", 1000), ("channel_platform", 500))  # then promoter: the rest
GENERIC_BP, ITEM_BP = 1000, 2500
CATEGORY = "cat"
# "plain" is a channel nobody configured: 7-day window, nothing else, settles in 15 days.
CHANNELS = {
    "kuaishou": {"channel_id": "kuaishou", "settle_days": 15,
                 "settle_days_by_participant": {"promoter": 7},
                 "self_operated_rate_bp": {"*": 300}},
    "douyin": {"channel_id": "douyin", "site_wide": True, "self_purchase": True,
               "self_operated_rate_bp": {CATEGORY: 200}},
    "short": {"channel_id": "short", "attribution_window_ms": DAY_MS},
}
CPS_SHOPS = ("s0", "s1", "s2", "s3")
AUTHORIZED = {"s0": ["douyin"], "s1": ["kuaishou"], "s2": [], "s3": ["douyin", "kuaishou"],
              "s-nocps": ["douyin"], "s-exited": []}
WAITS_FOR_A_CLICK = ("no_click", "window_expired", "self_purchase_not_allowed")
KINDS = ("settles", "refunded", "frozen", "clawback", "cancelled", "open_refund", "closed")


def split(net: int, rate_bp: int) -> dict[str, int]:
    """The default policy's split of one line's product pool (SPEC 6), non-zero shares only."""
    pool = net * rate_bp // 10_000
    shares, left = {}, pool
    for participant, share_bp in SHARES:
        shares[participant] = min(pool * share_bp // 10_000, left)
        left -= shares[participant]
    shares["promoter"] = left
    return {participant: amount for participant, amount in shares.items() if amount}


def configuration(now: int) -> list[tuple[str, str, dict]]:
    config = [("channels", channel_id, channel) for channel_id, channel in CHANNELS.items()]
    for shop in CPS_SHOPS:
        config.append(("shops", shop, {"shop_id": shop, "cps_joined_ms": now - 90 * DAY_MS,
                                       "authorized_channels": AUTHORIZED[shop]}))
        config.append(("activities", f"a-{shop}", {
            "activity_id": f"a-{shop}", "shop_id": shop, "level": "shop_generic",
            "rate_bp": GENERIC_BP, "start_ms": now - 90 * DAY_MS}))
        config.append(("activities", f"a-{shop}-item", {
            "activity_id": f"a-{shop}-item", "shop_id": shop, "level": "generic_product",
            "rate_bp": ITEM_BP, "item_ids": [boosted_item(shop)], "start_ms": now - 90 * DAY_MS}))
    config.append(("shops", "s-nocps", {"shop_id": "s-nocps", "cps_joined_ms": None,
                                        "authorized_channels": AUTHORIZED["s-nocps"]}))
    config.append(("shops", "s-exited", {"shop_id": "s-exited",
                                         "cps_joined_ms": now - 90 * DAY_MS,
                                         "cps_exited_ms": now - 40 * DAY_MS,
                                         "authorized_channels": AUTHORIZED["s-exited"]}))
    return config


def boosted_item(shop: str) -> str:
    return f"{shop}-i0"


def items_of(shop: str) -> list[str]:
    return [f"{shop}-i{j}" for j in range(5)]


# -- the rules, again ------------------------------------------------------------------


def _channel(channel_id: str) -> dict:
    return CHANNELS.get(channel_id, {})


def _inside_window(click: dict, t_ms: int) -> bool:
    return t_ms - _channel(click["channel_id"]).get("attribution_window_ms", 7 * DAY_MS) \
        <= click["ts_ms"]


def _is_cps(shop: dict | None, t_ms: int) -> bool:
    if shop is None or shop.get("cps_joined_ms") is None:
        return False
    joined, exited = shop["cps_joined_ms"], shop.get("cps_exited_ms")
    return joined <= t_ms and (exited is None or exited < joined
                               or t_ms < exited + 15 * DAY_MS)


def _latest(clicks: list[dict]) -> dict | None:
    return max(clicks, key=lambda c: (c["ts_ms"], c["click_id"]), default=None)


def attribute(order: dict, clicks: list[dict], shops: dict[str, dict],
              tracked: dict | None) -> dict:
    """SPEC 5 for one order whose buyer's clicks (all in Kafka before it) are `clicks`; its
    `created` comes first (see `order_life`)."""
    t_ms, shop_id = order["ts_ms"], order["shop_id"]
    shop = shops.get(shop_id)
    chosen, mode, failure = None, None, None
    if not _is_cps(shop, t_ms):
        failure = "shop_not_cps"
    elif (tracked is not None and tracked["shop_id"] == shop_id and tracked["ts_ms"] <= t_ms
          and _inside_window(tracked, t_ms)):
        chosen, mode = tracked, "tracking"
    else:
        seen = [c for c in clicks if c["ts_ms"] <= t_ms]
        here = _latest([c for c in seen if c["shop_id"] == shop_id])
        wide = _latest([c for c in seen if c["shop_id"] != shop_id
                        and _channel(c["channel_id"]).get("site_wide")])
        if here is not None and _inside_window(here, t_ms):
            chosen, mode = here, "last_click"
        elif wide is not None and _inside_window(wide, t_ms):
            chosen, mode = wide, "site_wide"
        else:
            failure = "window_expired" if here or wide else "no_click"
    if chosen is not None and chosen["promoter_id"] == order["buyer_id"]:
        if _channel(chosen["channel_id"]).get("self_purchase"):
            mode = "self_purchase"
        else:
            chosen, failure = None, "self_purchase_not_allowed"
    delayed = failure in WAITS_FOR_A_CLICK
    if chosen is not None:
        return {"type": "cps", "mode": mode, "reason": None, "click_id": chosen["click_id"],
                "channel_id": chosen["channel_id"], "promoter_id": chosen["promoter_id"],
                "delayed": delayed}
    fanstype = order.get("fanstype")
    none = {"type": "none", "mode": None, "click_id": None, "channel_id": None,
            "promoter_id": None, "delayed": delayed}
    if not fanstype:
        return {**none, "reason": failure}
    if shop is not None and fanstype in shop["authorized_channels"]:
        return {**none, "type": "self_operated", "mode": "fanstype", "reason": None,
                "channel_id": fanstype}
    return {**none, "reason": "channel_not_authorized"}


def _shares(attribution: dict, shop: str, item: str, net: int) -> dict[str, int]:
    """Each participant's commission on one line (SPEC 6), non-zero only."""
    if attribution["type"] == "cps":
        return split(net, ITEM_BP if item == boosted_item(shop) else GENERIC_BP)
    if attribution["type"] == "self_operated":
        rates = _channel(attribution["channel_id"]).get("self_operated_rate_bp", {})
        pool = net * rates.get(CATEGORY, rates.get("*", 0)) // 10_000
        return {"channel_platform": pool} if pool else {}
    return {}


def _account(attribution: dict, participant: str) -> str:
    return {"youzan_platform": "youzan", "channel_platform": attribution["channel_id"],
            "promoter": attribution["promoter_id"]}[participant]


def _settle_days(attribution: dict, participant: str) -> int:
    channel = _channel(attribution["channel_id"])
    return channel.get("settle_days_by_participant", {}).get(
        participant, channel.get("settle_days", 15))


# A settlement event as compared: (state, amount, due_ms), due_ms kept for `settled` and
# `clawback` only (on `frozen` and `adjusted` it depends on whether the completion was
# read before the order was priced).
Event = tuple[str, int, int | None]


def payee_events(paid: int, change: int, settled_ms: int | None, *,
                 settled_before_refund: bool = False) -> tuple[Event, ...]:
    """One (order, participant, account)'s settlement events (SPEC 7).

    `paid` is its commission at payment, `change` what the refund changed,
    `settled_ms` its due time if it is settled by now (else None). Frozen at
    payment, adjusted by a refund before the settlement, settled the net amount;
    or, if the settlement check ran before the refund was read, settled the
    amount at payment and the refund clawed back.
    """
    frozen: tuple[Event, ...] = (("frozen", paid, None),) if paid else ()
    if settled_before_refund and settled_ms is not None and paid:
        clawback: tuple[Event, ...] = (("clawback", change, settled_ms),) if change else ()
        return (*frozen, ("settled", paid, settled_ms), *clawback)
    adjusted: tuple[Event, ...] = (("adjusted", change, None),) if change else ()
    settled: tuple[Event, ...] = (("settled", paid + change, settled_ms),) \
        if settled_ms is not None else ()
    return (*frozen, *adjusted, *settled)


# -- streams and their results -------------------------------------------------------


@dataclass
class Expected:
    attributions: dict[str, dict] = field(default_factory=dict)
    commissions: Counter = field(default_factory=Counter)  # (order, item, participant, cause)
    committed: Counter = field(default_factory=Counter)    # account -> commission total
    # order -> the settlement histories the rules allow (one, or two when a refund comes
    # after the completion of a due order: the settlement check may run before or after
    # it is read), each {(participant, account): events}.
    settlements: dict[str, list[dict[tuple[str, str], tuple[Event, ...]]]] = field(
        default_factory=dict)


@dataclass
class Scenario:
    config: list[tuple[str, str, dict]]
    stream: list[tuple[str, str, dict]]  # (topic without prefix, key, value)
    expected: Expected


def order_life(rnd: random.Random, expected: Expected, order: dict, attribution: dict,
               *, now: int, paid_first: bool = False) -> list[tuple[str, str, dict]]:
    """The events of one order's life (one of KINDS) and, into `expected`, its money."""
    order_id, shop, created = order["order_id"], order["shop_id"], order["ts_ms"]
    lines = [{"item_id": item, "category_id": CATEGORY, "quantity": 1,
              "amount": rnd.choice([990, 4990, 12900, 29900])}
             for item in rnd.sample(items_of(shop), rnd.randint(1, 3))]
    kind = rnd.choice(KINDS)
    paid = created + 1000
    events: list[tuple[str, int, dict]] = [("created", created, {"items": lines})]
    if kind == "closed":
        events.append(("closed", created + HOUR_MS, {}))
    elif paid_first:
        events.insert(0, ("paid", paid, {"items": lines}))
        attribution = {**attribution, "delayed": True}  # it waited for its `created`
    else:
        events.append(("paid", paid, {"items": lines}))
    line = rnd.choice(lines)
    refund = {"refund_id": f"r-{order_id}", "item_id": line["item_id"],
              "amount": rnd.randint(1, line["amount"])}
    completed = now - (10 if kind == "cancelled" else 16) * DAY_MS
    if kind == "refunded":
        events += [("refund_started", paid + HOUR_MS, {"refund": refund}),
                   ("refunded", paid + 2 * HOUR_MS, {"refund": refund})]
    if kind in ("settles", "refunded", "clawback", "cancelled", "open_refund"):
        if kind == "open_refund":
            # Opened before completion, so no settlement check can come first: an order
            # settled before its refund opens is settled (the refund would claw back).
            events.append(("refund_started", paid + HOUR_MS, {"refund": refund}))
        if kind == "cancelled":
            events += [("refund_started", paid + HOUR_MS, {"refund": refund}),
                       ("refund_cancelled", paid + 2 * HOUR_MS, {"refund": refund})]
        events.append(("completed", completed, {}))
    if kind == "clawback":
        events += [("refund_started", completed + HOUR_MS, {"refund": refund}),
                   ("refunded", completed + 2 * HOUR_MS, {"refund": refund})]

    expected.attributions[order_id] = attribution
    at_payment: Counter = Counter()  # participant -> commission, over lines and pools
    net: Counter = Counter()         # ... after the refund
    if kind != "closed":
        for entry in lines:
            paid_shares = _shares(attribution, shop, entry["item_id"], entry["amount"])
            for participant, amount in paid_shares.items():
                expected.commissions[(order_id, entry["item_id"], participant, "paid")] += amount
            net_shares = paid_shares
            if kind in ("refunded", "clawback") and entry is line:
                net_shares = _shares(attribution, shop, entry["item_id"],
                                     entry["amount"] - refund["amount"])
                for participant in paid_shares.keys() | net_shares.keys():
                    delta = net_shares.get(participant, 0) - paid_shares.get(participant, 0)
                    if delta:
                        expected.commissions[(order_id, entry["item_id"], participant,
                                              f"refund:{refund['refund_id']}")] += delta
            at_payment.update(paid_shares)
            net.update(net_shares)
    settled_ms = {}
    for participant in at_payment.keys() | net.keys():
        expected.committed[_account(attribution, participant)] += net[participant]
        due = completed + _settle_days(attribution, participant) * DAY_MS
        # Not settled while never completed or while a refund stays open.
        settled_ms[participant] = due if kind not in ("open_refund", "frozen") and due <= now \
            else None
    expected.settlements[order_id] = [
        {(participant, _account(attribution, participant)): payee_events(
            at_payment[participant], net[participant] - at_payment[participant],
            settled_ms[participant], settled_before_refund=settled_first)
         for participant in settled_ms}
        for settled_first in ((False, True) if kind == "clawback" else (False,))]
    base = {key: order[key] for key in ("buyer_id", "shop_id", "fanstype", "tracking")
            if order.get(key) is not None}
    return [("orders", order_id, {"order_id": order_id, "event": event, "ts_ms": ts, **base,
                                  **extra})
            for event, ts, extra in events]


def chaos_scenario(orders: int, *, seed: int, now: int) -> Scenario:
    """`orders` order lives of about orders/2 buyers, one click each, produced as they come:
    every order is CPS through its buyer's click, which comes just before it."""
    rnd = random.Random(seed)
    shops = {shop: value for topic, shop, value in configuration(now) if topic == "shops"}
    expected = Expected()
    lives: list[list[tuple[str, str, dict]]] = []
    base = now - 20 * DAY_MS
    buyer_clicks: dict[str, dict] = {}
    for k in range(orders):
        buyer = f"b{rnd.randrange(max(1, orders // 2))}"
        created = base + k * 60_000
        life: list[tuple[str, str, dict]] = []
        if buyer not in buyer_clicks:
            click = buyer_clicks[buyer] = {
                "click_id": f"c-{buyer}", "ts_ms": created - HOUR_MS, "buyer_id": buyer,
                "shop_id": rnd.choice(CPS_SHOPS), "item_id": None,
                "channel_id": rnd.choice(["kuaishou", "plain"]), "promoter_id": f"p{k % 17}"}
            life.append(("clicks", buyer, click))
        click = buyer_clicks[buyer]
        order = {"order_id": f"o{k:05d}", "buyer_id": buyer, "shop_id": click["shop_id"],
                 "ts_ms": created}
        attribution = attribute(order, [click], shops, None)
        assert attribution["mode"] == "last_click"
        life += order_life(rnd, expected, order, attribution, now=now)
        lives.append(life)
    return Scenario(configuration(now), _interleave(rnd, lives), expected)


def _interleave(rnd: random.Random, lives: list[list]) -> list:
    """Merge the order lives at random, each life keeping its own order."""
    pending = [list(reversed(life)) for life in lives]
    window = 20  # about this many orders are open at once, as in a live stream
    merged, start = [], 0
    while start < len(pending):
        open_lives = [life for life in pending[start:start + window] if life]
        if not open_lives:
            start += window
            continue
        merged.append(rnd.choice(open_lives).pop())
    return merged


def backlog_scenario(orders: int, *, seed: int, now: int, secret: str,
                     paid_first_share: float = 0.1) -> Scenario:
    """Every click first, then every order: a backlog on every input.

    Buyers have up to six clicks each over eleven days, at several shops,
    through channels with and without site-wide attribution, self-purchase
    and short windows, some with the buyer as promoter; orders fall between
    and after them, some carry a tracking token, some a `fanstype`, so every
    mode and every reason of SPEC 5 occurs. One click in six comes through
    the engine's re-keying topic (as a forward from another partition leaves
    it). `paid_first_share` of the orders send `paid` before `created`.
    """
    rnd = random.Random(seed)
    signer = Signer(secret)
    shops = {shop: value for topic, shop, value in configuration(now) if topic == "shops"}
    buyers = [f"b{n}" for n in range(max(1, orders // 2))]
    start = now - 28 * DAY_MS
    clicks: dict[str, list[dict]] = {}
    click_stream = []
    for buyer in buyers:
        clicks[buyer] = []
        for j in range(rnd.choice([0, 1, 1, 2, 3, 4, 6])):
            click = {"click_id": f"c-{buyer}-{j}", "ts_ms": start + rnd.randrange(11 * DAY_MS),
                     "buyer_id": buyer, "shop_id": rnd.choice([*CPS_SHOPS, "s0", "s-nocps"]),
                     "item_id": None,
                     "channel_id": rnd.choice(["kuaishou", "douyin", "short", "plain"]),
                     "promoter_id": buyer if rnd.random() < 0.15 else f"p{rnd.randrange(20)}"}
            clicks[buyer].append(click)
            topic = "internal.clicks-by-buyer" if rnd.random() < 1 / 6 else "clicks"
            click_stream.append((topic, buyer, click))
    rnd.shuffle(click_stream)

    expected = Expected()
    order_stream = []
    for k in range(orders):
        buyer = rnd.choice(buyers)
        own_shops = [c["shop_id"] for c in clicks[buyer]]
        shop = rnd.choice(own_shops) if own_shops and rnd.random() < 0.7 else rnd.choice(
            [*CPS_SHOPS, "s-nocps", "s-exited"])
        order = {"order_id": f"o{k:05d}", "buyer_id": buyer, "shop_id": shop,
                 "ts_ms": now - 19 * DAY_MS + rnd.randrange(2 * DAY_MS),
                 "fanstype": rnd.choice([None, None, None, "douyin", "kuaishou", "plain"])}
        tracked = None
        if rnd.random() < 0.06:
            tracked = {"click_id": f"c-track-{k}", "ts_ms": order["ts_ms"] - rnd.randrange(DAY_MS),
                       "buyer_id": f"cookie-{k}",
                       "shop_id": shop if rnd.random() < 0.7 else rnd.choice(CPS_SHOPS),
                       "channel_id": rnd.choice(["kuaishou", "douyin", "short"]),
                       "promoter_id": f"p-track-{k % 5}"}
            order["tracking"] = signer.sign(TRACKING, tracking_payload(Click(**tracked)))
        attribution = attribute(order, clicks[buyer], shops, tracked)
        order_stream.append(order_life(rnd, expected, order, attribution, now=now,
                                       paid_first=rnd.random() < paid_first_share))
    stream = click_stream + _interleave(rnd, order_stream)
    return Scenario(configuration(now), stream, expected)


# -- feeding and checking ---------------------------------------------------------------


def produce(bootstrap: str, prefix: str, stream: list[tuple[str, str, dict]]) -> None:
    """Write `stream` in its order (per partition), quickly, acknowledged by the broker."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                    enable_idempotence=True, linger_ms=5)
        async with started(producer):
            for n in range(0, len(stream), 2000):
                sends = [await producer.send(prefix + topic, orjson.dumps(value),
                                             key=key.encode())
                         for topic, key, value in stream[n:n + 2000]]
                await asyncio.gather(*sends)

    asyncio.run(run())


def configure(kafka, built: Scenario) -> None:
    """Write the configuration once a worker made the topics, and let workers read it."""
    for topic in ("channels", "shops", "activities"):
        kafka.produce(topic, [(key, value) for t, key, value in built.config if t == topic])
    time.sleep(1.5)


ATTRIBUTION_FIELDS = ("type", "mode", "reason", "click_id", "channel_id", "promoter_id",
                      "delayed")


def check_outputs(kafka, worker, built: Scenario, *, timeout: float, workers=(),
                  fields: tuple[str, ...] = ATTRIBUTION_FIELDS) -> None:
    """Read every output with read_committed and compare with the recomputation."""
    expected = built.expected
    logs = "".join(w.tail(30) for w in workers)
    attributions = kafka.read("attributions", timeout=timeout, settle=3.0, until=lambda rs: len(
        {r["key"] for r in rs}) >= len(expected.attributions))
    per_order = Counter(r["key"] for r in attributions)
    assert {k for k, n in per_order.items() if n != 1} == set(), logs
    assert set(per_order) == set(expected.attributions), logs
    wrong = {}
    for record in attributions:
        got = {name: record["value"][name] for name in fields}
        wanted = {name: expected.attributions[record["key"]][name] for name in fields}
        if got != wanted:
            wrong[record["key"]] = (got, wanted)
    assert not wrong, (f"{len(wrong)} of {len(per_order)} orders attributed otherwise than the "
                       f"rules say (got, wanted): {dict(list(wrong.items())[:10])}")

    wanted = sum(1 for delta in expected.commissions.values() if delta)
    commissions = kafka.read("commissions", timeout=timeout, settle=2.0,
                             until=lambda rs: len(rs) >= wanted)
    ids = Counter(r["value"]["event_id"] for r in commissions)
    assert [i for i, n in ids.items() if n > 1] == []
    published = Counter()
    committed = Counter()
    for record in commissions:
        value = record["value"]
        published[(value["order_id"], value["item_id"], value["participant"],
                   value["cause"])] += value["delta"]
        committed[value["account_id"]] += value["delta"]
    assert {k: v for k, v in published.items() if v} == {
        k: v for k, v in expected.commissions.items() if v}
    assert +committed == +expected.committed

    settlements = kafka.read("settlements", timeout=timeout, settle=2.0, until=lambda rs: (
        not _unexpected_settlements(rs, expected)))
    if settlements:
        assert Counter(r["value"]["event_id"] for r in settlements).most_common(1)[0][1] == 1
    wrong = _unexpected_settlements(settlements, expected)
    assert not wrong, (f"{len(wrong)} orders settled otherwise than the rules say (order: got, "
                       f"allowed): {dict(list(wrong.items())[:10])}")

    result = subprocess.run([CPS, "reconcile", "--in-flight-s", "0"], env=worker.env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"orders: {len(expected.attributions)}" in result.stdout


def _unexpected_settlements(records: list[dict], expected: Expected) -> dict[str, tuple]:
    """Orders whose settlement events (per payee, in publication order: a payee's events
    share a partition, keyed by account) are none of the histories the rules allow."""
    found: dict[str, dict[tuple[str, str], list[Event]]] = defaultdict(lambda: defaultdict(
        list))
    for record in records:
        value = record["value"]
        due = value["due_ms"] if value["state"] in ("settled", "clawback") else None
        found[value["order_id"]][(value["participant"], value["account_id"])].append(
            (value["state"], value["amount"], due))
    wrong = {}
    for order_id in found.keys() | expected.settlements.keys():
        got = {payee: tuple(events) for payee, events in found.get(order_id, {}).items()}
        allowed = expected.settlements.get(order_id, [{}])
        if got not in allowed:
            wrong[order_id] = (got, allowed)
    return wrong
