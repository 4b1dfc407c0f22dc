"""`cps bench`'s plan phase: a `now` plan over many members on one worker (SPEC 13).

The members' profiles are written before the engine starts; once it has read
them (its lag on `members` is 0) a webhook sink with no rate limit of its own
pointing at a receiver in this process and a `now` plan selecting every
member are written to their topics. Measured: the time from writing the plan
to the last action received, actions per second, the time the engine took to
decide and emit every action (from the progress changelog), the worker's peak
RSS, and whether every member got exactly one action.

Then conversions: once every action is in, some members, spread over them all,
pay an order each at the plan's shop, at the demo's order rate. Per order, the
time from its attribution's broker timestamp (cps.attributions) to its
`converted` record's (cps.operation_records), and until that record could be
read (committed); and whether each order gave exactly one `converted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import orjson
from aiohttp import web
from aiokafka.structs import TopicPartition

from app.bench.live import TAIL_TIMEOUT_S, lag, percentile, start_engine
from app.bench.runner import Implementation
from app.bench.workload import Shape, Workload
from app.config.settings import Settings
from app.kafka.connection import KafkaConnection, start_at_end, started
from app.services.feeding import Feeder
from app.web.local_http import serve

SHOP = "plan-shop"
PLAN_ID = "bench-plan"
# `cps demo` at its default 200 events/s starts about 36 orders a second (app/services/demo.py:
# 30 % of its draws start an order, which then sends 3 to 4 events).
DEMO_ORDERS_PER_S = 36


class Receiver:
    """A webhook endpoint counting the distinct actions it got and when the last came."""

    def __init__(self) -> None:
        self.actions: set[str] = set()
        self.requests = 0
        self.last_at = 0.0
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        self._runner, url = await serve("/hook", self._receive)
        return url

    async def _receive(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.actions.add(request.headers.get("Idempotency-Key", ""))
        self.last_at = time.monotonic()
        return web.Response(status=204)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def measure_plan(settings: Settings, engine: Implementation, *, members: int,
                       run_prefix: str, report: Callable[[str], None],
                       timeout_s: float, orders: int = 0) -> dict:
    """The plan's actions, then (`orders` > 0) conversions of as many members."""
    prefix = f"{run_prefix}plan."
    workload = Workload(Shape(events=0, buyers=1, seed=4), start_ms=int(time.time() * 1000))
    profiles = (("members", f"{SHOP}/pm-{n:07d}", orjson.dumps({
        "shop_id": SHOP, "buyer_id": f"pm-{n:07d}", "level": n % 5, "tags": ["bench"],
        "follower": n % 2 == 0, "birthday": None, "tz": None})) for n in range(members))
    report(f"bench: plan: writing {members:,} member profiles")
    started = await start_engine(settings, engine, prefix, workload, profiles)
    launched = started.launched
    receiver = Receiver()
    result: dict = {"members": members}
    began = time.monotonic()
    try:
        while (remaining := await lag(settings.broker, launched.group,
                                      [f"{prefix}members"], settings.partitions)):
            if launched.exited() or time.monotonic() - began > timeout_s:
                result["error"] = f"members not loaded ({remaining:,} left); log: " \
                                  f"{launched.log_paths}"
                return result
            report(f"bench: plan: loading members, lag {remaining:,}")
            await asyncio.sleep(5)
        result["load_seconds"] = round(time.monotonic() - began, 1)
        url = await receiver.start()
        feeder = started.feeder
        await feeder.send("sinks", "bench", orjson.dumps({
            "sink_id": "bench", "kind": "webhook", "url": url, "streams": ["commissions"],
            "rate_per_s": 1_000_000, "burst": 1_000_000, "max_in_flight": 256}))
        await feeder.flush()
        await asyncio.sleep(2)  # the sink's queue topic appears (a plan would wait for it)
        written, created_ms = time.monotonic(), int(time.time() * 1000)
        await feeder.send("plans", PLAN_ID, orjson.dumps({
            "plan_id": PLAN_ID, "shop_id": SHOP, "audience": {"tag": "bench"},
            "trigger": {"kind": "now"}, "created_ms": created_ms,
            "action": {"kind": "grant", "sink": "bench", "payload": {"coupon": "bench"}},
            "rate_per_s": 1_000_000, "burst": 1_000_000}))
        await feeder.flush()
        report(f"bench: plan: plan written, {members:,} actions to come")
        next_report = time.monotonic() + 10
        while len(receiver.actions) < members:
            if launched.exited() or time.monotonic() - written > timeout_s:
                result["error"] = (f"{len(receiver.actions):,} of {members:,} actions; log: "
                                   f"{launched.log_paths}")
                break
            if time.monotonic() >= next_report:
                next_report += 10
                report(f"bench: plan: {len(receiver.actions):,} actions received")
            await asyncio.sleep(0.2)
        seconds = max(receiver.last_at - written, 0.001)
        result.update(seconds=round(seconds, 1), actions=len(receiver.actions),
                      requests=receiver.requests,
                      actions_per_s=round(len(receiver.actions) / seconds))
        finished_ms = await _decided_by(settings, f"{launched.group}-plan_progress-"
                                        "changelog")
        if finished_ms is not None:
            result["decided_seconds"] = round((finished_ms - created_ms) / 1000, 1)
        if orders and "error" not in result:
            report(f"bench: plan: {min(orders, members):,} paid orders at "
                   f"{DEMO_ORDERS_PER_S} a second, each to convert")
            result["conversions"] = await measure_conversions(
                settings, feeder, prefix, members=members, orders=min(orders, members))
            report(f"bench: plan: conversions {result['conversions']}")
    finally:
        await receiver.stop()
        await started.feeder.__aexit__(None, None, None)
        usage = await asyncio.to_thread(launched.stop)
    result["peak_rss_mb"] = round(usage.peak_rss_mb)
    return result


class Conversions:
    """Broker timestamps of the attributions and `converted` records of some orders, read
    committed from the topics' ends as they are when it starts."""

    def __init__(self, bootstrap: str, prefix: str, partitions: int,
                 orders: set[str]) -> None:
        self.attributions, self.records = f"{prefix}attributions", f"{prefix}operation_records"
        self.partitions = [TopicPartition(topic, p) for topic in (self.attributions, self.records)
                           for p in range(partitions)]
        self.consumer = KafkaConnection(bootstrap).consumer(
            group_id=None, isolation_level="read_committed", enable_auto_commit=False)
        self.orders = orders
        self.attributed: dict[str, int] = {}  # order id -> its attribution's timestamp
        # order id -> (timestamp, when it could be read here) of each `converted` it got
        self.converted: dict[str, list[tuple[int, int]]] = {}
        self.unexpected = 0  # `converted` records of the plan for other orders

    async def start(self) -> None:
        await start_at_end(self.consumer, self.partitions)

    async def poll(self) -> None:
        batches = await self.consumer.getmany(timeout_ms=100, max_records=20_000)
        read_ms = int(time.time() * 1000)
        for tp, messages in batches.items():
            for message in messages:
                if tp.topic == self.attributions:
                    order = message.key.decode()
                    if order in self.orders:
                        self.attributed.setdefault(order, message.timestamp)
                    continue
                record = orjson.loads(message.value)
                if record["kind"] != "converted" or record["plan_id"] != PLAN_ID:
                    continue
                if record["ref"] in self.orders:
                    self.converted.setdefault(record["ref"], []).append(
                        (message.timestamp, read_ms))
                else:
                    self.unexpected += 1

    def summary(self) -> dict:
        return conversion_summary(self.orders, self.attributed, self.converted,
                                  self.unexpected)

    async def follow(self) -> None:
        while True:
            await self.poll()

    async def stop(self) -> None:
        await self.consumer.stop()


def conversion_summary(orders: set[str], attributed: dict[str, int],
                       converted: dict[str, list[tuple[int, int]]], unexpected: int) -> dict:
    """Percentiles (ms) from each order's attribution to its first `converted` record
    (broker timestamps) and to the moment that record could be read, and whether every
    order converted exactly once (none missing, none repeated, none for another order)."""
    timed = [(records[0], attributed[order]) for order, records in converted.items()
             if order in attributed]
    delays = [stamp - attributed_ms for (stamp, _read), attributed_ms in timed]
    readable = [read - attributed_ms for (_stamp, read), attributed_ms in timed]
    repeated = sum(len(records) - 1 for records in converted.values())
    missing = len(orders - set(converted))
    return {"orders": len(orders), "attributed": len(attributed), "converted": len(converted),
            "missing": missing, "duplicates": repeated, "unexpected": unexpected,
            "exactly_once": missing == repeated == unexpected == 0,
            "p50": percentile(delays, 0.50), "p99": percentile(delays, 0.99),
            "max": max(delays, default=None),
            "readable_p50": percentile(readable, 0.50),
            "readable_p99": percentile(readable, 0.99),
            "readable_max": max(readable, default=None)}


async def measure_conversions(settings: Settings, feeder: Feeder, prefix: str, *,
                              members: int, orders: int) -> dict:
    """`orders` members, spread over all, each pay an order at the plan's shop (its
    `created` and `paid` sent together, so the time is the engine's, not the buyer's),
    `DEMO_ORDERS_PER_S` a second; then every `converted` is awaited (at most
    `TAIL_TIMEOUT_S` after the last order) and a second more for any repeat."""
    buyers = {f"pb-{n:07d}": f"pm-{n * members // orders:07d}" for n in range(orders)}
    watch = Conversions(settings.broker, prefix, settings.partitions, set(buyers))
    await watch.start()
    polling = asyncio.create_task(watch.follow())
    try:
        began = time.monotonic()
        for n, (order_id, buyer) in enumerate(buyers.items()):
            wait = began + n / DEMO_ORDERS_PER_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            now_ms = int(time.time() * 1000)
            base = {"order_id": order_id, "buyer_id": buyer, "shop_id": SHOP,
                    "items": [{"item_id": "bench-item", "category_id": "bench",
                               "quantity": 1, "amount": 1990}]}
            for event in ("created", "paid"):
                await feeder.send("orders", order_id,
                                  orjson.dumps({**base, "event": event, "ts_ms": now_ms}))
            await feeder.flush()  # each order goes out at its time, not in a later batch
        deadline = time.monotonic() + TAIL_TIMEOUT_S
        while len(watch.converted) < orders and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
    finally:
        polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
        await watch.stop()
    return watch.summary()


async def _decided_by(settings: Settings, changelog: str) -> int | None:
    """When the last partition finished deciding the plan (ms), from the progress
    table's changelog; None when some partition has not finished."""
    consumer = KafkaConnection(settings.broker).consumer(
        changelog, group_id=None, auto_offset_reset="earliest",
        isolation_level="read_committed", enable_auto_commit=False)
    async with started(consumer):
        partitions = [TopicPartition(changelog, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(partitions)
        latest: dict[tuple[int, bytes], dict] = {}
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for tp, messages in (await consumer.getmany(timeout_ms=1000)).items():
                for message in messages:
                    if message.value is not None:
                        latest[tp.partition, message.key] = orjson.loads(message.value)
        finished = [row.get("finished_ms") for row in latest.values()]
        return None if not finished or None in finished else max(finished)
