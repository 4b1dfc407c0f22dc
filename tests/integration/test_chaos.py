"""Faults on the real broker: SIGKILLed workers, a restarted broker, a rebalance mid-stream.

Each test feeds a deterministic stream of clicks and order lives at a steady
rate while the fault happens, then reads every output topic with
`read_committed` and compares it with an independent recomputation of what
the stream must produce (`Expected`, written from the SPEC's rules with
plain arithmetic, not with app.domain): exactly one attribution per order
to the buyer's click, every commission delta once, commission and
settlement totals per account to the minor unit; then `cps reconcile` must
be clean.

`make test` runs the short form; `make chaos` sets CPS_CHAOS=full for a
longer stream and more faults.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from app.broker.local import LocalBroker
from app.settings import Settings

CPS = str(Path(sys.executable).with_name("cps"))
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Scale:
    orders: int
    rate: int          # events per second fed to the engine
    kills: int
    timeout_s: float   # for the outputs to be complete once the stream is fed


SCALES = {
    "short": Scale(orders=240, rate=60, kills=3, timeout_s=150),
    "full": Scale(orders=3000, rate=150, kills=10, timeout_s=600),
}
SCALE = SCALES[os.environ.get("CPS_CHAOS", "short")]
pytestmark = pytest.mark.timeout(1800 if SCALE is SCALES["full"] else 300)

# The grace is long so that no order is ever decided without its click, whatever
# the faults do to the relative pace of the click and order partitions.
WORKER_SETTINGS = {"CPS_ATTRIBUTION_GRACE_MS": "600000",
                   "CPS_SETTLEMENT_SCHEDULE": "* * * * * *"}

SHARES = (("youzan_platform", 1000), ("channel_platform", 500))  # then promoter: the rest
CHANNELS = {"kuaishou": {"promoter": 7}, "douyin": {}}  # settle days by participant
GENERIC_BP, ITEM_BP = 1000, 2500


def split(net: int, rate_bp: int) -> dict[str, int]:
    """The default policy's split of one line's product pool (SPEC 6), non-zero shares only."""
    pool = net * rate_bp // 10_000
    shares, left = {}, pool
    for participant, share_bp in SHARES:
        shares[participant] = min(pool * share_bp // 10_000, left)
        left -= shares[participant]
    shares["promoter"] = left
    return {participant: amount for participant, amount in shares.items() if amount}


@dataclass
class Expected:
    attributions: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    commissions: Counter = field(default_factory=Counter)  # (order, item, participant, cause)
    committed: Counter = field(default_factory=Counter)    # account -> commission total
    settled: Counter = field(default_factory=Counter)      # account -> settled + clawbacks


@dataclass
class Scenario:
    config: list[tuple[str, str, dict]]
    stream: list[tuple[str, str, dict]]
    expected: Expected


def scenario(orders: int, *, seed: int, now: int) -> Scenario:
    """A stream of `orders` order lives of about orders/2 buyers, one click each."""
    rnd = random.Random(seed)
    shops = [f"s{i}" for i in range(4)]
    items = {shop: [(f"{shop}-i{j}", 2 if j == 0 else 1) for j in range(5)] for shop in shops}
    config = [("channels", channel, {"channel_id": channel, "settle_days": 15,
                                     "settle_days_by_participant": days})
              for channel, days in CHANNELS.items()]
    config += [("shops", shop, {"shop_id": shop, "cps_joined_ms": now - 90 * DAY_MS,
                                "authorized_channels": []}) for shop in shops]
    for shop in shops:
        config.append(("activities", f"a-{shop}", {
            "activity_id": f"a-{shop}", "shop_id": shop, "level": "shop_generic",
            "rate_bp": GENERIC_BP, "start_ms": now - 90 * DAY_MS}))
        config.append(("activities", f"a-{shop}-item", {
            "activity_id": f"a-{shop}-item", "shop_id": shop, "level": "generic_product",
            "rate_bp": ITEM_BP, "item_ids": [items[shop][0][0]], "start_ms": now - 90 * DAY_MS}))

    expected = Expected()
    lives: list[list[tuple[str, str, dict]]] = []
    base = now - 20 * DAY_MS
    buyer_clicks: dict[str, tuple[str, str, str, str]] = {}
    for k in range(orders):
        buyer = f"b{rnd.randrange(max(1, orders // 2))}"
        created = base + k * 60_000
        life: list[tuple[str, str, dict]] = []
        if buyer not in buyer_clicks:
            click = (f"c-{buyer}", rnd.choice(shops), rnd.choice(list(CHANNELS)), f"p{k % 17}")
            buyer_clicks[buyer] = click
            click_id, shop, channel, promoter = click
            life.append(("clicks", buyer, {
                "click_id": click_id, "ts_ms": created - HOUR_MS, "buyer_id": buyer,
                "shop_id": shop, "item_id": None, "channel_id": channel,
                "promoter_id": promoter}))
        click_id, shop, channel, promoter = buyer_clicks[buyer]
        order_id = f"o{k:05d}"
        expected.attributions[order_id] = (click_id, channel, promoter)
        lines = [{"item_id": item, "category_id": "cat", "quantity": 1,
                  "amount": rnd.choice([990, 4990, 12900, 29900])}
                 for item, _ in rnd.sample(items[shop], rnd.randint(1, 3))]
        rates = {item: ITEM_BP if boosted == 2 else GENERIC_BP for item, boosted in items[shop]}
        life += _order_life(rnd, order_id, buyer, shop, channel, promoter, lines, rates,
                            created, now, expected)
        lives.append(life)
    return Scenario(config, _interleave(rnd, lives), expected)


def _order_life(rnd, order_id, buyer, shop, channel, promoter, lines, rates, created, now,
                expected: Expected) -> list[tuple[str, str, dict]]:
    kind = rnd.choice(["settles", "refunded", "frozen", "clawback", "cancelled", "open_refund",
                       "closed"])
    paid = created + 1000
    events: list[tuple[str, int, dict]] = [("created", created, {"items": lines})]
    if kind == "closed":
        events.append(("closed", created + HOUR_MS, {}))
    else:
        events.append(("paid", paid, {"items": lines}))
    line = rnd.choice(lines)
    refund = {"refund_id": f"r-{order_id}", "item_id": line["item_id"],
              "amount": rnd.randint(1, line["amount"])}
    completed = now - (10 if kind == "cancelled" else 16) * DAY_MS
    refunded = kind in ("refunded", "clawback")
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

    accounts = {"youzan_platform": "youzan", "channel_platform": channel, "promoter": promoter}
    per_participant: Counter = Counter()
    if kind != "closed":
        for entry in lines:
            net = entry["amount"]
            before = split(net, rates[entry["item_id"]])
            for participant, amount in before.items():
                expected.commissions[(order_id, entry["item_id"], participant, "paid")] += amount
            if refunded and entry is line:
                after = split(net - refund["amount"], rates[entry["item_id"]])
                for participant in before.keys() | after.keys():
                    delta = after.get(participant, 0) - before.get(participant, 0)
                    if delta:
                        expected.commissions[(order_id, entry["item_id"], participant,
                                              f"refund:{refund['refund_id']}")] += delta
                before = after
            per_participant.update(before)
    for participant, amount in per_participant.items():
        expected.committed[accounts[participant]] += amount
        days = CHANNELS[channel].get(participant, 15)
        if kind != "open_refund" and kind != "frozen" and completed + days * DAY_MS <= now:
            expected.settled[accounts[participant]] += amount
    return [("orders", order_id, {"order_id": order_id, "event": event, "ts_ms": ts,
                                  "buyer_id": buyer, "shop_id": shop, **extra})
            for event, ts, extra in events]


def _interleave(rnd, lives: list[list]) -> list:
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


def test_the_recomputation_matches_the_spec_arithmetic():
    # 12900 at 10 %: pool 1290, youzan 129, channel 64, promoter the rest.
    assert split(12900, 1000) == {"youzan_platform": 129, "channel_platform": 64,
                                  "promoter": 1097}
    assert split(5, 1000) == {}
    built = scenario(50, seed=3, now=1_800_000_000_000)
    keys = [key for topic, key, _ in built.stream if topic == "orders"]
    assert len(set(keys)) == 50 == len(built.expected.attributions)
    for order_id in set(keys):  # every life stays in order
        events = [v["event"] for t, k, v in built.stream if t == "orders" and k == order_id]
        assert events[0] == "created"


class Feeder(threading.Thread):
    """Produces the stream at `rate` events/s in the background; `pause()`/`resume()`."""

    def __init__(self, bootstrap: str, prefix: str, stream: list, rate: int) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.prefix, self.stream, self.rate = bootstrap, prefix, stream, rate
        self.sent = 0
        self.running = threading.Event()
        self.running.set()
        self.error: BaseException | None = None

    def pause(self) -> None:
        self.running.clear()

    def resume(self) -> None:
        self.running.set()

    def run(self) -> None:
        try:
            asyncio.run(self._feed())
        except BaseException as exc:  # reported by finish()
            self.error = exc

    async def _feed(self) -> None:
        step = max(1, self.rate // 10)
        failures = 0
        while self.sent < len(self.stream):
            try:
                await self._feed_with_one_producer(step)
            except KafkaError:
                # A producer that lived through a broker restart may be unusable; a new one
                # sends the batch again (a copy the engine must take as a duplicate).
                failures += 1
                if failures > 30:
                    raise
                await asyncio.sleep(1)

    async def _feed_with_one_producer(self, step: int) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                    enable_idempotence=True)
        await producer.start()
        try:
            while self.sent < len(self.stream):
                while not self.running.is_set():
                    await asyncio.sleep(0.05)
                started = time.monotonic()
                batch = self.stream[self.sent:self.sent + step]
                sends = [await producer.send(self.prefix + topic, orjson.dumps(value),
                                             key=key.encode()) for topic, key, value in batch]
                await asyncio.gather(*sends)
                self.sent += len(batch)
                await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - started)))
        finally:
            await producer.stop()

    def finish(self, timeout: float = 600) -> None:
        self.resume()
        self.join(timeout)
        assert self.error is None, f"feeding failed: {self.error!r}"
        assert self.sent == len(self.stream)


def configure(kafka, built: Scenario) -> None:
    """Write the configuration once a worker made the topics, and let workers read it."""
    for topic in ("channels", "shops", "activities"):
        kafka.produce(topic, [(key, value) for t, key, value in built.config if t == topic])
    time.sleep(1.5)


def check_outputs(kafka, worker, built: Scenario, *, timeout: float, workers=()) -> None:
    """Read every output with read_committed and compare with the recomputation."""
    expected = built.expected
    logs = "".join(w.tail(30) for w in workers)
    attributions = kafka.read("attributions", timeout=timeout, settle=3.0, until=lambda rs: len(
        {r["key"] for r in rs}) >= len(expected.attributions))
    per_order = Counter(r["key"] for r in attributions)
    assert {k for k, n in per_order.items() if n != 1} == set(), logs
    assert set(per_order) == set(expected.attributions), logs
    for record in attributions:
        value = record["value"]
        assert (value["type"], value["mode"]) == ("cps", "last_click"), value
        assert (value["click_id"], value["channel_id"], value["promoter_id"]) == (
            expected.attributions[record["key"]]), value

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
    assert committed == expected.committed

    def settled_totals(records: list[dict]) -> tuple[Counter, Counter]:
        held, settled = Counter(), Counter()
        for record in records:
            value = record["value"]
            if value["state"] in ("settled", "clawback"):
                settled[value["account_id"]] += value["amount"]
            if value["state"] != "settled":
                held[value["account_id"]] += value["amount"]
        return +held, +settled

    settlements = kafka.read("settlements", timeout=timeout, settle=2.0, until=lambda rs: (
        settled_totals(rs) == (+expected.committed, +expected.settled)))
    assert Counter(r["value"]["event_id"] for r in settlements).most_common(1)[0][1] == 1
    held, settled = settled_totals(settlements)
    assert held == +expected.committed
    assert settled == +expected.settled

    result = subprocess.run([CPS, "reconcile", "--in-flight-s", "0"], env=worker.env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"orders: {len(expected.attributions)}" in result.stdout


def wait_for_recovery(worker, timeout: float = 60) -> bool:
    """Wait until the worker's current log says table recovery began; False if it never did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.process.poll() is None:
        if "Restoring state from changelog topics" in worker.logs[-1].read_text(errors="replace"):
            return True
        time.sleep(0.02)
    return False


def test_sigkill_at_random_moments_changes_no_result(kafka, make_worker, bootstrap, prefix):
    now = int(time.time() * 1000)
    built = scenario(SCALE.orders, seed=11, now=now)
    workers = [make_worker(name, **WORKER_SETTINGS).start() for name in ("a", "b")]
    configure(kafka, built)
    feeder = Feeder(bootstrap, prefix, built.stream, SCALE.rate)
    feeder.start()
    rnd = random.Random(7)
    feed_time = len(built.stream) / SCALE.rate
    gaps = [rnd.uniform(0.3, 1.0) for _ in range(SCALE.kills)]
    moments = [feed_time * sum(gaps[:n + 1]) / (sum(gaps) + 0.5) for n in range(SCALE.kills)]
    began = time.monotonic()
    recoveries_hit = 0
    for n, moment in enumerate(moments):
        time.sleep(max(0.0, began + moment - time.monotonic()))
        victim = rnd.choice(workers)
        victim.kill()
        if n == 0:
            victim.wipe_state()  # recovers every table from its changelog
            victim.launch()
            recoveries_hit += wait_for_recovery(victim)
            victim.kill()  # ... and dies again while recovering
        victim.launch()
    feeder.finish()
    for worker in workers:
        worker.wait_ready()
    check_outputs(kafka, workers[0], built, timeout=SCALE.timeout_s, workers=workers)
    assert recoveries_hit == 1


def test_rebalance_mid_stream_changes_no_result(kafka, make_worker, bootstrap, prefix):
    now = int(time.time() * 1000)
    built = scenario(SCALE.orders, seed=12, now=now)
    first = make_worker("a", **WORKER_SETTINGS).start()
    configure(kafka, built)
    feeder = Feeder(bootstrap, prefix, built.stream, SCALE.rate)
    feeder.start()
    feed_time = len(built.stream) / SCALE.rate
    second = make_worker("b", **WORKER_SETTINGS)
    rounds = 1 if SCALE is SCALES["short"] else 3
    for _ in range(rounds):
        time.sleep(feed_time / (2 * rounds + 1))
        second.start()  # the group rebalances: partitions move to the second worker
        time.sleep(feed_time / (2 * rounds + 1))
        second.stop()  # ... and back
    feeder.finish()
    check_outputs(kafka, first, built, timeout=SCALE.timeout_s, workers=[first, second])


@pytest.fixture
def own_broker(tmp_path):
    """A broker of this test alone, on a free port: it is stopped and started mid-test."""
    broker = LocalBroker(Settings.from_env().kafka_home, 0, run_dir=tmp_path / "broker",
                         report=lambda _line: None)
    broker.start(fresh=True)
    yield broker
    broker.stop()


def test_broker_restart_mid_stream_loses_and_doubles_nothing(own_broker, make_worker, kafka,
                                                             prefix):
    bootstrap = own_broker.running().bootstrap
    kafka = type(kafka)(bootstrap, prefix)  # the session's helper, bound to this broker
    now = int(time.time() * 1000)
    built = scenario(SCALE.orders, seed=13, now=now)
    worker = make_worker("a", broker=bootstrap, **WORKER_SETTINGS).start()
    configure(kafka, built)
    feeder = Feeder(bootstrap, prefix, built.stream, SCALE.rate)
    feeder.start()
    feed_time = len(built.stream) / SCALE.rate
    outages = 1 if SCALE is SCALES["short"] else 3
    for _ in range(outages):
        time.sleep(feed_time / (outages + 1))
        feeder.pause()
        own_broker.stop()
        time.sleep(5)
        own_broker.start()
        feeder.resume()
    feeder.finish()
    check_outputs(kafka, worker, built, timeout=SCALE.timeout_s, workers=[worker])
    assert worker.process.poll() is None, worker.tail()
