"""A live-stream-like event stream for the demo: configuration, clicks, order lives, garbage.

Deterministic for a seed and a clock: `DemoStream(seed).configuration(now)`
gives channels, shops and activities; `members()` member profiles,
`operators()` the first shop's operators and `plans(now)` three operation
plans; `next_events(now)` gives the next batch of clicks and order events.
A few buyers are hot (Zipf-like), orders follow clicks, some are paid
before they are created, some are refunded, and a small share of messages
is garbage for the dead-letter topic. One order in ten happened 20 days ago
(with a click before it), so its settlement is due as soon as it completes.
`granted(action, now)` tells it of a coupon the engine granted: some of
those buyers order at the coupon's shop soon after, most of them using it,
so the plan's results show uses, conversions and a lift over its holdout.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

DAY_MS = 86_400_000

CHANNELS = [
    {"channel_id": "kuaishou", "attribution_window_ms": 7 * DAY_MS, "site_wide": False,
     "self_purchase": False, "settle_days": 15, "settle_days_by_participant": {"promoter": 7},
     "self_operated_rate_bp": {"*": 300}, "webhook_url": None},
    {"channel_id": "douyin", "attribution_window_ms": 3 * DAY_MS, "site_wide": False,
     "self_purchase": False, "settle_days": 15, "self_operated_rate_bp": {"beauty": 500, "*": 200}},
    {"channel_id": "wechat", "attribution_window_ms": 7 * DAY_MS, "site_wide": True,
     "self_purchase": True, "settle_days": 15},
    {"channel_id": "xiaohongshu", "attribution_window_ms": DAY_MS, "site_wide": False,
     "self_purchase": False, "settle_days": 15},
]
CATEGORIES = ["beauty", "food", "fashion", "digital", "home"]
PLAN_SHOPS = 5  # buyers are members of one of the first shops each
MINUTE_MS = 60_000
# What a granted coupon does: the share of its buyers who order at its shop soon after
# (between the two delays), of those the share who use the coupon, and of the orders
# using it the share refunded in full (which gives the right back: `replenished`).
# The holdout gets no coupon and orders only as the traffic has it, so the variants
# convert more often.
COUPON_ORDER_SHARE = 0.3
COUPON_ORDER_DELAY_MS = (1_000, 8_000)
COUPON_USE_SHARE = 0.7
COUPON_REFUND_SHARE = 0.2


@dataclass(order=True)
class _Scheduled:
    due_ms: int
    seq: int
    topic: str = field(compare=False)
    key: str = field(compare=False)
    value: dict = field(compare=False)


class DemoStream:
    def __init__(self, seed: int = 7, *, buyers: int = 3000, shops: int = 40,
                 promoters: int = 200, run: str = "") -> None:
        self.rnd = random.Random(seed)
        self.seed = seed
        self.run = run  # in click and order ids, so a rerun's events are new to the engine
        self.buyers = [f"u-{i:05d}" for i in range(buyers)]
        self.shops = [f"shop-{i:03d}" for i in range(shops)]
        self.promoters = [f"p-{i:04d}" for i in range(promoters)]
        self.group_leaders = [f"gl-{i:03d}" for i in range(max(1, promoters // 10))]
        self.bases = [f"base-{i:02d}" for i in range(5)]
        self.items = {shop: [(f"{shop}-item-{j:02d}", self.rnd.choice(CATEGORIES),
                              self.rnd.choice([990, 1990, 2990, 4990, 9990, 12900, 29900]))
                             for j in range(12)] for shop in self.shops}
        self._weights = [1 / (rank + 1) for rank in range(len(self.buyers))]
        self._scheduled: list[_Scheduled] = []
        self._seq = 0
        self._clicks = 0
        self._orders = 0
        self._coupon_orders = 0
        self._recent: dict[str, tuple[str, str]] = {}  # buyer -> (shop, channel) last clicked

    # -- configuration -------------------------------------------------------

    def configuration(self, now_ms: int) -> Iterator[tuple[str, str, dict]]:
        for channel in CHANNELS:
            yield "channels", channel["channel_id"], channel
        for index, shop in enumerate(self.shops):
            joined = now_ms - 90 * DAY_MS
            exited = None
            if index % 10 == 7:
                exited = now_ms - 10 * DAY_MS       # left CPS recently: still attributed
            elif index % 10 == 8:
                exited = now_ms - 20 * DAY_MS       # left over 15 days ago: not CPS
            elif index % 10 == 9:
                joined = None                       # never joined CPS
            authorized = self.rnd.sample([c["channel_id"] for c in CHANNELS], k=2)
            yield "shops", shop, {"shop_id": shop, "cps_joined_ms": joined,
                                  "cps_exited_ms": exited, "authorized_channels": authorized}
            yield from self._activities(shop, now_ms)

    def _activities(self, shop: str, now_ms: int) -> Iterator[tuple[str, str, dict]]:
        start = now_ms - 30 * DAY_MS
        base = {"shop_id": shop, "start_ms": start, "end_ms": None, "group_leader_rate_bp": None,
                "item_ids": None, "category_ids": None, "promoter_ids": None, "base_ids": None,
                "group_leader_id": None}
        items = self.items[shop]
        activities = [
            {**base, "activity_id": f"{shop}-generic", "level": "shop_generic",
             "rate_bp": self.rnd.choice([500, 800, 1000])},
            {**base, "activity_id": f"{shop}-category", "level": "shop_category",
             "rate_bp": 1200, "category_ids": [items[0][1]]},
            {**base, "activity_id": f"{shop}-hot-item", "level": "generic_product",
             "rate_bp": 2000, "item_ids": [items[1][0]]},
            {**base, "activity_id": f"{shop}-leader", "level": "group_leader", "rate_bp": 1500,
             "group_leader_rate_bp": 300, "group_leader_id": self.group_leaders[0]},
        ]
        for activity in activities:
            yield "activities", activity["activity_id"], activity

    # -- operation plans (SPEC 13) -------------------------------------------------

    def members(self) -> Iterator[tuple[str, str, dict]]:
        """Each buyer's profile at one of the first shops."""
        for index, buyer in enumerate(self.buyers):
            shop = self.shops[index % PLAN_SHOPS]
            yield "members", f"{shop}/{buyer}", {
                "shop_id": shop, "buyer_id": buyer, "level": self.rnd.randrange(5),
                "tags": self.rnd.sample(["vip", "new", "churned", "student"],
                                        k=self.rnd.randrange(3)),
                "follower": self.rnd.random() < 0.4,
                "birthday": f"{self.rnd.randrange(1, 13):02d}-{self.rnd.randrange(1, 29):02d}",
                "tz": self.rnd.choice(["Asia/Shanghai", None])}

    def operators(self) -> Iterator[tuple[str, str, dict]]:
        """Four operators of shop-000 (SPEC 14): three in sales, one of them with a small
        daily cap, and one in service only, whom the sales plan never picks."""
        for operator_id, qualifications, daily_cap in (
                ("op-ann", ["sales", "vip"], 40), ("op-bo", ["sales"], 40),
                ("op-cy", ["sales"], 5), ("op-di", ["service"], 40)):
            yield "operators", operator_id, {
                "operator_id": operator_id, "shop_id": self.shops[0],
                "qualifications": qualifications, "daily_cap": daily_cap,
                "total_cap": 10_000, "active": True}

    def plans(self, now_ms: int) -> Iterator[tuple[str, str, dict]]:
        """Three plans: a coupon every minute to the active members of shop-000 (capped at
        one an hour each, a tenth held out), a reminder to buyers whose order stays unpaid
        for 30 minutes, both delivered through the sink `demo-webhook` (`make run` sets it
        up), and every ten minutes the loyal followers of shop-000 given to its sales
        operators (`demo-assign`, SPEC 14)."""
        action = {"kind": "grant", "sink": "demo-webhook"}
        yield "plans", "demo-coupon", {
            "plan_id": "demo-coupon", "shop_id": self.shops[0], "name": "Coupon for members",
            # Counted from the start of this minute, so its first occurrence runs at once
            # (late by less than a minute) and its results show within a minute.
            "created_ms": now_ms - now_ms % MINUTE_MS,
            "trigger": {"kind": "schedule", "cron": "* * * * *"},
            "audience": {"all": [{"level_gte": 2}, {"not": {"tag": "churned"}}]},
            "action": {**action, "payload": {"coupon": "5-off"}}, "holdout_bp": 1000,
            "variants": [{"variant": "5-off", "weight_bp": 5000},
                         {"variant": "10-off", "weight_bp": 5000,
                          "payload": {"coupon": "10-off"}}],
            "frequency_cap": {"max": 1, "per_ms": 3_600_000}, "rate_per_s": 20, "burst": 20}
        yield "plans", "demo-unpaid-reminder", {
            "plan_id": "demo-unpaid-reminder", "shop_id": self.shops[0],
            "name": "Reminder: order unpaid for 30 minutes", "created_ms": now_ms,
            "trigger": {"kind": "event", "on": "created_unpaid", "delay_ms": 1_800_000},
            "audience": {"created_unpaid_for_ms": 1_800_000},
            "action": {"kind": "notify", "sink": "demo-webhook",
                       "payload": {"template": "unpaid-reminder"}},
            "quiet_hours": {"from": "22:00", "to": "08:00"}, "rate_per_s": 50, "burst": 50}
        yield "plans", "demo-assign", {
            "plan_id": "demo-assign", "shop_id": self.shops[0],
            "name": "Followers to the sales operators",
            # From the last ten-minute mark, so its first occurrence runs at once.
            "created_ms": now_ms - now_ms % (10 * MINUTE_MS),
            "trigger": {"kind": "schedule", "cron": "*/10 * * * *"},
            "audience": {"all": [{"level_gte": 3}, {"follower": True}]},
            "action": {"kind": "assign", "sink": "demo-webhook", "payload": {
                "requires": ["sales"], "priority": 1, "exclude": {"tag": "churned"}}},
            "rate_per_s": 50, "burst": 50}

    # -- traffic ---------------------------------------------------------------

    def next_events(self, now_ms: int, count: int) -> list[tuple[str, str | None, bytes]]:
        """About `count` events: due order steps first, then new clicks and orders."""
        out: list[tuple[str, str | None, bytes]] = []
        while self._scheduled and self._scheduled[0].due_ms <= now_ms and len(out) < count:
            step = heapq.heappop(self._scheduled)
            out.append((step.topic, step.key, orjson.dumps(step.value)))
        while len(out) < count:
            roll = self.rnd.random()
            if roll < 0.005:
                out.append(self._garbage())
            elif roll < 0.70 or not self._recent:
                out.append(self._click(now_ms))
            else:
                self._start_order(now_ms)
                if self._scheduled and self._scheduled[0].due_ms <= now_ms:
                    step = heapq.heappop(self._scheduled)
                    out.append((step.topic, step.key, orjson.dumps(step.value)))
        return out

    def due_events(self, now_ms: int) -> list[tuple[str, str | None, bytes]]:
        """Only the scheduled steps of orders already started that are due by `now_ms`."""
        out = []
        while self._scheduled and self._scheduled[0].due_ms <= now_ms:
            step = heapq.heappop(self._scheduled)
            out.append((step.topic, step.key, orjson.dumps(step.value)))
        return out

    @property
    def in_flight(self) -> int:
        """Scheduled steps not sent yet."""
        return len(self._scheduled)

    @property
    def counts(self) -> dict[str, int]:
        return {"clicks": self._clicks, "orders": self._orders,
                "coupon_orders": self._coupon_orders}

    def granted(self, action: dict, now_ms: int) -> None:
        """An action of an operation plan (a `cps.plan_actions` record): a buyer granted a
        coupon at a demo shop may order there soon after, using the coupon or not (SPEC 13:
        `coupon_ids` holds the grant's `action_id`). Decided by the seed and the action id
        alone, so the same grants give the same orders in whatever order they come."""
        action_id, shop = action.get("action_id"), action.get("shop_id")
        if action.get("kind") != "grant" or not action_id or shop not in self.items:
            return
        rnd = random.Random(f"{self.seed}/{action_id}")
        if rnd.random() >= COUPON_ORDER_SHARE:
            return
        self._orders += 1
        self._coupon_orders += 1
        # The action id can be longer than an order id may be; a digest of it is not.
        digest = hashlib.blake2b(action_id.encode(), digest_size=8).hexdigest()
        order_id = f"o-{self.run}c-{digest}"
        item, category, price = rnd.choice(self.items[shop])
        base = {"order_id": order_id, "buyer_id": action["buyer_id"], "shop_id": shop,
                "channel_id": None, "fanstype": None, "tracking": None,
                "items": [{"item_id": item, "category_id": category, "quantity": 1,
                           "amount": price}], "refund": None}
        coupons = {"coupon_ids": [action_id]} if rnd.random() < COUPON_USE_SHARE else {}
        created_at = now_ms + rnd.randint(*COUPON_ORDER_DELAY_MS)
        paid_at = created_at + rnd.randint(200, 3000)
        self._schedule(0, created_at, {**base, **coupons, "event": "created",
                                       "ts_ms": created_at})
        self._schedule(0, paid_at, {**base, **coupons, "event": "paid", "ts_ms": paid_at})
        if coupons and rnd.random() < COUPON_REFUND_SHARE:
            refund = {"refund_id": f"r-{order_id}", "item_id": item, "amount": price}
            for event, delay_ms in (("refund_started", 500), ("refunded", 1500)):
                self._schedule(0, paid_at + delay_ms, {**base, "event": event,
                                                       "ts_ms": paid_at + delay_ms,
                                                       "refund": refund})
        done_at = paid_at + rnd.randint(2000, 8000)
        self._schedule(0, done_at, {**base, "event": "completed", "ts_ms": done_at})

    def _buyer(self) -> str:
        return self.rnd.choices(self.buyers, weights=self._weights, k=1)[0]

    def _click(self, now_ms: int) -> tuple[str, str, bytes]:
        self._clicks += 1
        buyer = self._buyer()
        shop = self.rnd.choice(self.shops[: max(1, len(self.shops) // 2)]) \
            if self.rnd.random() < 0.6 else self.rnd.choice(self.shops)
        channel = self.rnd.choices(["kuaishou", "douyin", "wechat", "xiaohongshu"],
                                   weights=[5, 3, 1, 1])[0]
        promoter = buyer if self.rnd.random() < 0.02 else self.rnd.choice(self.promoters)
        item = self.rnd.choice(self.items[shop])
        click = {"click_id": f"c-{self.run}{self._clicks:08d}",
                 "ts_ms": now_ms - self.rnd.randint(0, 500),
                 "buyer_id": buyer, "shop_id": shop, "item_id": item[0], "channel_id": channel,
                 "promoter_id": promoter, "activity_id": None,
                 "group_leader_id": self.group_leaders[0] if self.rnd.random() < 0.2 else None,
                 "base_id": self.rnd.choice(self.bases) if self.rnd.random() < 0.1 else None}
        self._recent[buyer] = (shop, channel)
        return "clicks", buyer, orjson.dumps(click)

    def _start_order(self, now_ms: int) -> None:
        self._orders += 1
        order_id = f"o-{self.run}{self._orders:08d}"
        if self.rnd.random() < 0.8:
            buyer = self.rnd.choice(list(self._recent)[-500:])
            shop, channel = self._recent[buyer]
        else:
            buyer, shop, channel = self._buyer(), self.rnd.choice(self.shops), None
        backdated = self.rnd.random() < 0.1
        if backdated:
            # An order of 20 days ago, attributed to a click of an hour before it.
            now_ms -= 20 * DAY_MS
            channel = channel or "kuaishou"
            self._clicks += 1
            self._schedule_event("clicks", buyer, now_ms - 1000, {
                "click_id": f"c-{self.run}{self._clicks:08d}", "ts_ms": now_ms - 3_600_000,
                "buyer_id": buyer, "shop_id": shop, "item_id": self.items[shop][0][0],
                "channel_id": channel, "promoter_id": self.rnd.choice(self.promoters),
                "activity_id": None, "group_leader_id": None, "base_id": None})
        lines = self.rnd.sample(self.items[shop], k=self.rnd.choice([1, 1, 1, 2, 3]))
        items = [{"item_id": item, "category_id": category, "quantity": 1, "amount": price}
                 for item, category, price in lines]
        fanstype = channel if channel and self.rnd.random() < 0.3 else (
            self.rnd.choice(["kuaishou", "douyin"]) if self.rnd.random() < 0.1 else None)
        base = {"order_id": order_id, "buyer_id": buyer, "shop_id": shop, "channel_id": channel,
                "fanstype": fanstype, "tracking": None, "items": items, "refund": None}
        # Event times may be 20 days back; when each is sent follows the real clock.
        shift = 20 * DAY_MS if backdated else 0
        created_at = now_ms
        paid_first = self.rnd.random() < 0.03
        self._schedule(shift, now_ms + (800 if paid_first else 0),
                       {**base, "event": "created", "ts_ms": created_at})
        paid_at = created_at + self.rnd.randint(200, 3000)
        self._schedule(shift, now_ms if paid_first else paid_at,
                       {**base, "event": "paid", "ts_ms": paid_at})
        if self.rnd.random() < 0.03:
            self._schedule(shift, paid_at, {**base, "event": "paid", "ts_ms": paid_at})
        done_at = paid_at + self.rnd.randint(2000, 8000)
        if self.rnd.random() < 0.12:
            refund_item = items[0]
            refund = {"refund_id": f"r-{order_id}", "item_id": refund_item["item_id"],
                      "amount": refund_item["amount"] // self.rnd.choice([1, 2, 3])}
            self._schedule(shift, paid_at + 500, {**base, "event": "refund_started",
                                                  "ts_ms": paid_at + 500, "refund": refund})
            self._schedule(shift, paid_at + 1500, {**base, "event": "refunded",
                                                   "ts_ms": paid_at + 1500, "refund": refund})
        self._schedule(shift, done_at, {**base, "event": "completed", "ts_ms": done_at})

    def _schedule(self, shift_ms: int, event_ms: int, event: dict) -> None:
        """Send an order event when the clock reaches its time (plus `shift_ms` if backdated)."""
        self._schedule_event("orders", event["order_id"], event_ms + shift_ms, event)

    def _schedule_event(self, topic: str, key: str, due_ms: int, event: dict) -> None:
        self._seq += 1
        heapq.heappush(self._scheduled, _Scheduled(due_ms, self._seq, topic, key, event))

    def _garbage(self) -> tuple[str, str | None, bytes]:
        topic = self.rnd.choice(["clicks", "orders"])
        value = self.rnd.choice([
            b"{not json", b'{"click_id": 42}', b"\xff\xfe garbage", b"[]",
            b'{"order_id": "o-x", "event": "teleported"}',
            orjson.dumps({"click_id": "c-long", "buyer_id": "u" * 300, "ts_ms": 1}),
        ])
        return topic, None, value
