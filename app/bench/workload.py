"""The benchmark's input: a live stream's clicks and order lives, deterministic for a seed.

About 70 % clicks and 30 % order events. Shops and items are Zipf-distributed
(a few shops and items take most of the traffic), buyers are many (every
buyer's click history ends up in state), and orders mostly follow a recent
click of their buyer. Event times advance at `base_rate` events per second
and, during the burst phase in the middle, at `burst_factor` times that, as
when a streamer announces a flash sale. About one order in ten is partly
refunded. Every value is what the SPEC's topics carry, so the engine and
every other benchmarked implementation read the same bytes.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from app.services.demo import CATEGORIES, CHANNELS, DAY_MS

CHANNEL_WEIGHTS = {"kuaishou": 5, "douyin": 3, "wechat": 1, "xiaohongshu": 1}


@dataclass(frozen=True, slots=True)
class Shape:
    events: int = 1_000_000
    buyers: int = 200_000
    shops: int = 400
    items_per_shop: int = 40
    click_share: float = 0.7
    refund_share: float = 0.1
    base_rate: int = 2_000           # events per second of event time outside the burst
    burst_factor: int = 10
    burst_share: float = 0.3         # share of all events that fall in the burst
    zipf_s: float = 1.1
    seed: int = 1


def _zipf_cumulative(n: int, s: float) -> list[float]:
    return list(itertools.accumulate(1 / (rank + 1) ** s for rank in range(n)))


class Workload:
    """Configuration and events of one benchmark run."""

    def __init__(self, shape: Shape, *, start_ms: int, run: str = "") -> None:
        self.shape = shape
        self.start_ms = start_ms
        self.run = run
        rnd = random.Random(shape.seed)
        self.shops = [f"bshop-{i:04d}" for i in range(shape.shops)]
        self.items = {shop: [(f"{shop}-{j:03d}", rnd.choice(CATEGORIES),
                              rnd.choice([990, 1990, 2990, 4990, 9990, 12900, 29900]))
                             for j in range(shape.items_per_shop)] for shop in self.shops}
        self._shop_weights = _zipf_cumulative(shape.shops, shape.zipf_s)
        self._item_weights = _zipf_cumulative(shape.items_per_shop, shape.zipf_s)
        self.orders = 0
        self.order_events = 0
        self.clicks = 0

    # -- configuration -----------------------------------------------------------

    def configuration(self) -> Iterator[tuple[str, str, dict]]:
        """Channels, shops (one in ten not in CPS) and one generic activity per shop."""
        joined = self.start_ms - 90 * DAY_MS
        for channel in CHANNELS:
            yield "channels", channel["channel_id"], channel
        for index, shop in enumerate(self.shops):
            yield "shops", shop, {"shop_id": shop,
                                  "cps_joined_ms": None if index % 10 == 9 else joined,
                                  "cps_exited_ms": None,
                                  "authorized_channels": list(CHANNEL_WEIGHTS)}
            yield "activities", f"{shop}-generic", {
                "activity_id": f"{shop}-generic", "shop_id": shop, "level": "shop_generic",
                "rate_bp": 1000, "start_ms": joined, "end_ms": None,
                "group_leader_rate_bp": None, "item_ids": None, "category_ids": None,
                "promoter_ids": None, "base_ids": None, "group_leader_id": None}

    # -- events ------------------------------------------------------------------

    def events(self) -> Iterator[tuple[str, str, bytes]]:
        """(topic, key, value) in event-time order: clicks keyed by buyer, orders by order id."""
        shape = self.shape
        rnd = random.Random(shape.seed + 1)
        channels = list(CHANNEL_WEIGHTS)
        channel_weights = list(itertools.accumulate(CHANNEL_WEIGHTS.values()))
        burst_from = int(shape.events * (1 - shape.burst_share) / 2)
        burst_to = burst_from + int(shape.events * shape.burst_share)
        events_per_order = 3 + 2 * shape.refund_share
        order_per_click = (1 - shape.click_share) / shape.click_share / events_per_order
        pending: list[tuple[int, int, str, bytes]] = []  # (ts, seq, key, value) of order steps
        recent: list[tuple[str, str, str]] = []           # (buyer, shop, channel), a ring
        seq = itertools.count()
        ts = float(self.start_ms)
        for index in range(shape.events):
            rate = shape.base_rate * (shape.burst_factor if burst_from <= index < burst_to else 1)
            ts += 1000 / rate
            now = int(ts)
            if pending and pending[0][0] <= now:
                _due, _, key, value = heapq.heappop(pending)
                self.order_events += 1
                yield "orders", key, value
                continue
            if recent and rnd.random() < order_per_click:
                for step in self._order(rnd, now, recent):
                    heapq.heappush(pending, (step[0], next(seq), step[1], step[2]))
            buyer = f"bu-{rnd.randrange(shape.buyers):07d}"
            shop = rnd.choices(self.shops, cum_weights=self._shop_weights)[0]
            item = rnd.choices(self.items[shop], cum_weights=self._item_weights)[0]
            channel = rnd.choices(channels, cum_weights=channel_weights)[0]
            self.clicks += 1
            click_id = f"bc-{self.run}{self.clicks:09d}"
            if len(recent) < 5000:
                recent.append((buyer, shop, channel))
            else:
                recent[self.clicks % 5000] = (buyer, shop, channel)
            yield "clicks", buyer, orjson.dumps({
                "click_id": click_id, "ts_ms": now - rnd.randrange(200), "buyer_id": buyer,
                "shop_id": shop, "item_id": item[0], "channel_id": channel,
                "promoter_id": f"bp-{rnd.randrange(2000):05d}", "activity_id": None,
                "group_leader_id": None, "base_id": None})

    def _order(self, rnd: random.Random, now: int,
               recent: list[tuple[str, str, str]]) -> list[tuple[int, str, bytes]]:
        """The life of a new order: created now, paid, maybe refunded in part, completed."""
        self.orders += 1
        order_id = f"bo-{self.run}{self.orders:08d}"
        buyer, shop, channel = recent[rnd.randrange(len(recent))]
        if rnd.random() < 0.1:
            buyer = f"bu-{rnd.randrange(self.shape.buyers):07d}"  # no click of this buyer
        lines = rnd.sample(self.items[shop], k=rnd.choice([1, 1, 1, 2, 3]))
        base = {"order_id": order_id, "buyer_id": buyer, "shop_id": shop,
                "channel_id": channel, "fanstype": None, "tracking": None,
                "items": [{"item_id": item, "category_id": category, "quantity": 1,
                           "amount": price} for item, category, price in lines],
                "refund": None}
        paid = now + rnd.randrange(100, 2000)
        steps = [(now, {**base, "event": "created", "ts_ms": now}),
                 (paid, {**base, "event": "paid", "ts_ms": paid})]
        if rnd.random() < self.shape.refund_share:
            first = base["items"][0]
            refund = {"refund_id": f"r-{order_id}", "item_id": first["item_id"],
                      "amount": first["amount"] // 2}
            steps.append((paid + 300, {**base, "event": "refund_started", "ts_ms": paid + 300,
                                       "refund": refund}))
            steps.append((paid + 900, {**base, "event": "refunded", "ts_ms": paid + 900,
                                       "refund": refund}))
        done = paid + rnd.randrange(1000, 5000)
        steps.append((done, {**base, "event": "completed", "ts_ms": done}))
        return [(at, order_id, orjson.dumps(event)) for at, event in steps]
