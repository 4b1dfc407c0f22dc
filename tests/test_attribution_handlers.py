"""Attribution handlers on an in-memory partition: the reading order changes nothing.

A partition's three inputs (clicks, re-keyed clicks, orders) hold a backlog;
the handlers read them in every interleaving hypothesis draws, each topic in
its own order. The fake catch-up barrier behaves as the engine's: a ticket
is reached once every click input is read as far as it reached when the
ticket was asked for (here: all of it, the backlog being written before).
Every interleaving must give every order the result of the rules over all
of its buyer's clicks, with the same `delayed` flag. The rules' result comes
from `by_the_rules`, SPEC 5 written again here by plain comparisons, not from
app.domain, so a mistake in the engine's rules cannot hide in both.
"""

from __future__ import annotations

import random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

import tables.attribution as tables_module
from agents.attribution import AttributionRules, AttributionTopics, Attributor
from app.domain.attribution import Waiting
from app.domain.model import DAY_MS, Channel, OrderFacts, Shop
from app.domain.tokens import Signer
from app.engine.memory import MemoryContext, MemoryTables
from app.records.codecs import decode_waiting, encode_waiting
from tables.attribution import AttributionTables

NOW = 1_800_000_000_000
GRACE_MS = 30_000
CLICKS, REKEYED_CLICKS, ORDERS = "clicks", "clicks-by-buyer", "orders-by-buyer"
BUYER = b"u1"  # every click and order here is the buyer's; re-keyed records carry its key
SHOPS = {"s1": Shop("s1", cps_joined_ms=NOW - 90 * DAY_MS, authorized_channels=frozenset({"fans"})),
         "s2": Shop("s2", cps_joined_ms=NOW - 90 * DAY_MS)}
CHANNELS = {"wide": Channel("wide", site_wide=True, self_purchase=True),
            "short": Channel("short", attribution_window_ms=DAY_MS)}


class Catalog:
    def shop(self, shop_id: str) -> Shop | None:
        return SHOPS.get(shop_id)

    def channel(self, channel_id: str) -> Channel:
        return CHANNELS.get(channel_id) or Channel.unconfigured(channel_id)


class Partition:
    """One partition's inputs, read in a given interleaving, with the engine's barrier."""

    def __init__(self, backlog: dict[str, list[bytes]], *, immediate_barrier: bool = False,
                 tables: AttributionTables | None = None):
        self.backlog = backlog
        self.read = dict.fromkeys(backlog, 0)
        self.immediate = immediate_barrier
        self.ends: dict[int, dict[str, int]] = {}  # ticket -> click inputs' ends when asked
        self.ctx = MemoryContext(now_ms=NOW)
        self.attributor = Attributor(
            topics=AttributionTopics(CLICKS, REKEYED_CLICKS, ORDERS, "attributions"),
            tables=tables or tables_module.define(MemoryTables()),
            rules=AttributionRules(grace_ms=GRACE_MS,
                                   click_retention_ms=60 * DAY_MS, click_history_cap=100),
            catalog=Catalog(), signer=Signer("secret"), catch_up=self._catch_up,
            published=lambda ctx, result: None)
        self.handlers = {CLICKS: self.attributor.on_click,
                         REKEYED_CLICKS: self.attributor.on_rekeyed_click,
                         ORDERS: self.attributor.on_rekeyed_order}

    def _catch_up(self, topics, hook):
        assert set(topics) == {CLICKS, REKEYED_CLICKS}
        partition = self

        class Barrier:
            def request(self, ctx) -> int:
                ticket = len(partition.ends) + 1
                partition.ends[ticket] = {t: len(partition.backlog[t]) for t in topics}
                return ticket

        self.hook = hook
        return Barrier()

    def run(self, order_of_topics: list[str]) -> dict[str, dict]:
        announced = 0
        for topic in order_of_topics:
            self.handlers[topic](self.ctx, BUYER, self.backlog[topic][self.read[topic]])
            self.read[topic] += 1
            reached = [ticket for ticket, ends in self.ends.items() if self.immediate or all(
                self.read[t] >= end for t, end in ends.items())]
            if reached and max(reached) > announced:
                announced = max(reached)
                self.hook(self.ctx, announced)
        self.ctx.now_ms += GRACE_MS  # every grace period ends; the timer re-tries
        self.attributor.expire_waiting_orders(self.ctx)
        self.hook(self.ctx, len(self.ends))
        results = {}
        for topic, key, value in self.ctx.sent:
            if topic == "attributions":
                result = orjson.loads(value)
                assert key.decode() not in results, "two attributions of one order"
                results[key.decode()] = {k: result[k] for k in (
                    "type", "mode", "reason", "click_id", "delayed")}
        return results


clicks_st = st.lists(st.tuples(
    st.sampled_from(["s1", "s2"]), st.sampled_from(["ch", "wide", "short"]),
    st.sampled_from(["p1", "u1"]), st.integers(-10 * DAY_MS, 0), st.booleans()),
    max_size=6)
orders_st = st.lists(st.tuples(
    st.sampled_from(["s1", "s2", "s-unknown"]), st.integers(-8 * DAY_MS, 0),
    st.sampled_from([None, "fans"]), st.booleans()), min_size=1, max_size=4)


def backlog_of(clicks, orders) -> tuple[dict[str, list[bytes]], list[dict], list[dict]]:
    """The partition's backlog, and every click and every `created` event (with
    `paid_first`) as plain dicts for `by_the_rules`."""
    backlog: dict[str, list[bytes]] = {CLICKS: [], REKEYED_CLICKS: [], ORDERS: []}
    all_clicks = []
    for n, (shop, channel, promoter, ts, rekeyed) in enumerate(clicks):
        click = {"click_id": f"c{n}", "ts_ms": NOW + ts, "buyer_id": "u1", "shop_id": shop,
                 "channel_id": channel, "promoter_id": promoter}
        all_clicks.append(click)
        backlog[REKEYED_CLICKS if rekeyed else CLICKS].append(orjson.dumps(click))
    all_orders = []
    for n, (shop, ts, fanstype, paid_first) in enumerate(orders):
        created = {"order_id": f"o{n}", "event": "created", "ts_ms": NOW + ts, "buyer_id": "u1",
                   "shop_id": shop, "fanstype": fanstype,
                   "items": [{"item_id": "i", "quantity": 1, "amount": 100}]}
        paid = {**created, "event": "paid", "ts_ms": NOW + ts + 1000}
        backlog[ORDERS] += [orjson.dumps(e) for e in ([paid, created] if paid_first
                                                       else [created, paid])]
        all_orders.append({**created, "paid_first": paid_first})
    return backlog, all_clicks, all_orders


def interleaving(backlog: dict[str, list[bytes]], rnd: random.Random) -> list[str]:
    """Every topic read in its own order, the topics mixed at random."""
    left = {topic: len(records) for topic, records in backlog.items()}
    order = []
    while any(left.values()):
        topic = rnd.choice([t for t, n in left.items() if n])
        left[topic] -= 1
        order.append(topic)
    return order


def _latest(clicks: list[dict]) -> dict | None:
    return max(clicks, key=lambda c: (c["ts_ms"], c["click_id"]), default=None)


def _inside_window(click: dict, t_ms: int) -> bool:
    channel = CHANNELS.get(click["channel_id"])
    window_ms = channel.attribution_window_ms if channel else 7 * DAY_MS  # SPEC 5's default
    return t_ms - window_ms <= click["ts_ms"]


def _site_wide(channel_id: str) -> bool:
    return channel_id in CHANNELS and CHANNELS[channel_id].site_wide


def _self_purchase(channel_id: str) -> bool:
    return channel_id in CHANNELS and CHANNELS[channel_id].self_purchase


def by_the_rules(clicks: list[dict], orders: list[dict]) -> dict[str, dict]:
    """SPEC 5 for this test's shops and channels, by plain comparisons.

    T is the `created` time; every click is in Kafka before the orders, so an
    order waits (`delayed`) only for its `created` or when CPS failed for want
    of a click (a late one could still come).
    """
    results = {}
    for order in orders:
        t_ms, shop_id, buyer = order["ts_ms"], order["shop_id"], order["buyer_id"]
        shop = SHOPS.get(shop_id)
        seen = [c for c in clicks if c["buyer_id"] == buyer and c["ts_ms"] <= t_ms]
        here = _latest([c for c in seen if c["shop_id"] == shop_id])
        wide = _latest([c for c in seen
                        if c["shop_id"] != shop_id and _site_wide(c["channel_id"])])
        chosen, mode, failure = None, None, None
        if shop is None or shop.cps_joined_ms > t_ms:  # no shop of this test leaves CPS
            failure = "shop_not_cps"
        elif here is not None and _inside_window(here, t_ms):
            chosen, mode = here, "last_click"
        elif wide is not None and _inside_window(wide, t_ms):
            chosen, mode = wide, "site_wide"
        else:
            failure = "window_expired" if here or wide else "no_click"
        if chosen is not None and chosen["promoter_id"] == buyer:
            if _self_purchase(chosen["channel_id"]):
                mode = "self_purchase"
            else:
                chosen, mode, failure = None, None, "self_purchase_not_allowed"
        fanstype = order["fanstype"]
        if chosen is not None:
            result = {"type": "cps", "mode": mode, "reason": None, "click_id": chosen["click_id"]}
        elif fanstype and shop is not None and fanstype in shop.authorized_channels:
            result = {"type": "self_operated", "mode": "fanstype", "reason": None,
                      "click_id": None}
        else:
            result = {"type": "none", "mode": None, "click_id": None,
                      "reason": "channel_not_authorized" if fanstype else failure}
        delayed = order["paid_first"] or failure in (
            "no_click", "window_expired", "self_purchase_not_allowed")
        results[order["order_id"]] = {**result, "delayed": delayed}
    return results


@settings(max_examples=200, deadline=None)
@given(clicks=clicks_st, orders=orders_st, seeds=st.lists(st.integers(), min_size=2,
                                                          max_size=4))
def test_every_reading_order_gives_the_rules_result(clicks, orders, seeds):
    backlog, all_clicks, all_orders = backlog_of(clicks, orders)
    canonical = Partition(backlog).run(
        [CLICKS] * len(backlog[CLICKS]) + [REKEYED_CLICKS] * len(backlog[REKEYED_CLICKS])
        + [ORDERS] * len(backlog[ORDERS]))
    assert canonical == by_the_rules(all_clicks, all_orders)
    for seed in seeds:
        assert Partition(backlog).run(interleaving(backlog, random.Random(seed))) == canonical


def test_without_the_barrier_an_order_read_first_misses_its_newer_click():
    # The buyer's older click is read, then the order, then the newer click at the same shop.
    clicks = [("s1", "ch", "p1", -2 * DAY_MS, False), ("s1", "ch", "p1", -DAY_MS, True)]
    backlog, _clicks, _orders = backlog_of(clicks, [("s1", 0, None, False)])
    reading = [CLICKS, ORDERS, ORDERS, REKEYED_CLICKS]
    assert Partition(backlog).run(reading)["o0"]["click_id"] == "c1"
    assert Partition(backlog, immediate_barrier=True).run(reading)["o0"]["click_id"] == "c0"


def test_an_order_without_a_click_waits_for_a_late_one_and_says_so():
    backlog, _clicks, _orders = backlog_of([], [("s1", 0, None, False)])
    partition = Partition(backlog)
    for created_then_paid in backlog[ORDERS]:
        partition.attributor.on_rekeyed_order(partition.ctx, BUYER, created_then_paid)
    partition.hook(partition.ctx, len(partition.ends))
    assert partition.ctx.sent_to("attributions") == []  # no click in Kafka: it waits for a late one
    late = orjson.dumps({"click_id": "late", "ts_ms": NOW - 1000, "buyer_id": "u1",
                         "shop_id": "s1", "channel_id": "ch", "promoter_id": "p1"})
    partition.attributor.on_click(partition.ctx, None, late)
    partition.hook(partition.ctx, len(partition.ends))
    (_topic, _key, value), = partition.ctx.sent_to("attributions")
    result = orjson.loads(value)
    assert (result["click_id"], result["delayed"]) == ("late", True)


def test_after_a_restart_the_stored_orders_are_decided_once_the_clicks_are_read():
    clicks = [("s1", "ch", "p1", -DAY_MS, False)]
    backlog, _clicks, _orders = backlog_of(clicks, [("s1", 0, None, False)])
    before = Partition(backlog)
    for created_then_paid in backlog[ORDERS]:
        before.attributor.on_rekeyed_order(before.ctx, BUYER, created_then_paid)
    assert before.ctx.sent_to("attributions") == []  # killed before the click was read
    after = Partition(backlog, tables=before.attributor.tables)
    assert after.run([CLICKS]) == {"o0": {"type": "cps", "mode": "last_click", "reason": None,
                                          "click_id": "c0", "delayed": False}}


def test_a_catch_up_freeing_many_orders_decides_them_a_commit_at_a_time():
    # Every order is read before the clicks, as in a drained backlog: the last click's
    # catch-up frees all of them at once.
    clicks = [("s1", "ch", "p1", -DAY_MS, False), ("s2", "wide", "u1", -DAY_MS, True)]
    orders = [(("s1", "s2")[n % 2], -n, None, False) for n in range(23)]
    backlog, all_clicks, all_orders = backlog_of(clicks, orders)
    reading = [ORDERS] * len(backlog[ORDERS]) + [CLICKS, REKEYED_CLICKS]
    paged = Partition(backlog)
    paged.ctx.max_uncommitted = 5
    for topic in reading:
        paged.handlers[topic](paged.ctx, BUYER, backlog[topic][paged.read[topic]])
        paged.read[topic] += 1
    paged.hook(paged.ctx, len(paged.ends))
    pages = [len(paged.ctx.sent_to("attributions"))]
    while pages[-1] < len(orders):
        paged.ctx.commit()
        paged.attributor.expire_waiting_orders(paged.ctx)  # the timer goes on with the rest
        pages.append(len(paged.ctx.sent_to("attributions")))
    assert pages == [5, 10, 15, 20, 23]
    assert {orjson.loads(value)["order_id"]: orjson.loads(value)["click_id"]
            for _topic, _key, value in paged.ctx.sent_to("attributions")} == {
        order_id: result["click_id"]
        for order_id, result in by_the_rules(all_clicks, all_orders).items()}


def test_waiting_state_round_trips_and_old_rows_count_as_held():
    waiting = Waiting(OrderFacts("o", "paid", 5, "u", "s"), None, 99, held=False)
    assert decode_waiting(encode_waiting(waiting)) == waiting
    old_row = orjson.dumps([["o", "paid", 5, "u", "s", None, None, None], None, 99])
    assert decode_waiting(old_row).held
