"""`cps bench`'s two further phases: attribution delay under live load, memory with many buyers.

Live: each implementation starts on empty topics of its own, is warmed up
until it attributes, then gets a live stream at a steady rate (by default
half the engine's drain rate) whose event times are the wall clock at
sending. The delay of an order is from its `created` event's `ts_ms` to the
moment its attribution can be read (committed) by a consumer here, so it
includes every hop, batching and transaction on the way. Orders that waited
on purpose (no click yet: the grace period) are counted apart.

State: the engine alone drains one click each of many distinct buyers, all
written at once (a burst), until its consumer lag is 0; reports the time,
its peak RSS with all those buyers in its tables, and any dead letter.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import aiohttp
import orjson
from aiokafka.structs import TopicPartition

from app.bench import cpu
from app.bench.runner import (
    Implementation,
    Launched,
    OutputCounter,
    group_members,
    launch,
    prepare_output,
    write_configuration,
)
from app.bench.workload import Shape, Workload
from app.config.settings import Settings
from app.kafka.connection import KafkaConnection, started
from app.services.feeding import Feeder

WARM_UP_TIMEOUT_S = 180
TAIL_TIMEOUT_S = 30


def percentile(values: list[int], share: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def start_engine(settings: Settings, implementation: Implementation, prefix: str,
                 workload: Workload, burst: Iterable[tuple[str, str, bytes]] = ()) -> _Started:
    """Topics, configuration and `burst` of `prefix`, then the implementation's process."""
    configuration = list(workload.configuration())
    config_path = write_configuration(configuration, prefix)
    feeder = Feeder(replace(settings, topic_prefix=prefix))
    await feeder.__aenter__()
    for topic, key, value in configuration:
        await feeder.send(topic, key, orjson.dumps(value))
    for topic, key, value in burst:
        await feeder.send(topic, key, value)
    await feeder.flush()
    output = await prepare_output(settings, implementation, prefix)
    launched = await launch(settings, implementation, prefix, config_path, output=output)
    return _Started(launched, output, feeder)


@dataclass
class _Started:
    launched: Launched
    output: str
    feeder: Feeder


async def measure_live(settings: Settings, implementation: Implementation, *, rate: int,
                       seconds: int, buyers: int, run_prefix: str,
                       report: Callable[[str], None]) -> dict:
    """Delay percentiles (ms) of `implementation` fed `rate` events/s for `seconds`."""
    prefix = f"{run_prefix}live-{implementation.name}."
    shape = Shape(events=rate * seconds, buyers=buyers, base_rate=rate, burst_factor=1,
                  burst_share=0.0, seed=2)
    workload = Workload(shape, start_ms=int(time.time() * 1000))
    started = await start_engine(settings, implementation, prefix, workload)
    output, feeder, launched = started.output, started.feeder, started.launched
    timed: set[bytes] = set()
    counter = OutputCounter(settings.broker, output, settings.partitions, timed=timed)
    await counter.start()
    polling = asyncio.create_task(_keep_polling(counter))
    result: dict = {"rate": rate, "seconds": seconds}
    try:
        if not await _warm_up(settings, feeder, workload, counter, launched):
            result["error"] = (f"no attribution from a settled group after "
                               f"{WARM_UP_TIMEOUT_S}s; log: {launched.log_paths}")
            return result
        report(f"bench: {implementation.name}: live at {rate:,} events/s for {seconds}s")
        began = cpu.sample(launched.pids)
        sent = await _feed_live(feeder, shape, timed)
        fed = cpu.sample(launched.pids)
        deadline = time.monotonic() + TAIL_TIMEOUT_S
        while len(timed - counter.attributed) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        result.update({
            "orders": len(timed), "events": sent,
            "p50": percentile(counter.delays, 0.50), "p99": percentile(counter.delays, 0.99),
            "max": max(counter.delays, default=None), "waited": counter.waited,
            "missing": len(timed - counter.attributed),
            # Until the tail is attributed: the work of catching up belongs to these events.
            "cpu_us_per_event": cpu.cpu_us_per_event(began, cpu.sample(launched.pids), sent),
            "machine_busy_percent": cpu.machine_busy_percent(began, fed)})
        return result
    finally:
        polling.cancel()
        await counter.stop()
        await feeder.__aexit__(None, None, None)
        await asyncio.to_thread(launched.stop)


async def _keep_polling(counter: OutputCounter) -> None:
    while True:
        await counter.poll()


async def _warm_up(settings: Settings, feeder: Feeder, workload: Workload,
                   counter: OutputCounter, launched: Launched) -> bool:
    """Send a click and its order every half second until one is attributed, every
    worker has its partitions and has recovered its tables (no rebalance left to come)."""
    shop = workload.shops[0]
    deadline = time.monotonic() + WARM_UP_TIMEOUT_S
    workers = len(launched.processes)
    for n in itertools.count():
        if launched.exited() or time.monotonic() > deadline:
            return False
        if (counter.seen and await group_members(settings.broker, launched.group) == workers
                and await _all_ready(launched.ready_urls)):
            break
        now = int(time.time() * 1000)
        buyer = f"warm-{n}"
        await feeder.send("clicks", buyer, orjson.dumps({
            "click_id": f"warm-c-{n}", "ts_ms": now - 1000, "buyer_id": buyer, "shop_id": shop,
            "channel_id": "kuaishou", "promoter_id": "warm"}))
        await feeder.send("orders", f"warm-o-{n}", orjson.dumps({
            "order_id": f"warm-o-{n}", "event": "created", "ts_ms": now, "buyer_id": buyer,
            "shop_id": shop, "items": [{"item_id": "warm", "category_id": "warm",
                                        "quantity": 1, "amount": 100}]}))
        await feeder.flush()
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # let the warm-up backlog drain
    return True


async def _all_ready(urls: list[str]) -> bool:
    """Whether every worker's /ready says so."""
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for url in urls:
            try:
                async with session.get(url) as response:
                    if response.status != 200:
                        return False
            except (aiohttp.ClientError, TimeoutError):
                return False
    return True


async def _feed_live(feeder: Feeder, shape: Shape, timed: set[bytes]) -> int:
    """Send the workload's events when their event time comes, stamped with the wall clock."""
    began_ms = int(time.time() * 1000)
    workload = Workload(shape, start_ms=began_ms, run="live-")
    began = time.monotonic()
    sent = 0
    for topic, key, value in workload.events():
        event = orjson.loads(value)
        due = began + (event["ts_ms"] - began_ms) / 1000
        wait = due - time.monotonic()
        if wait > 0.002:
            await asyncio.sleep(wait)
        if topic == "orders" and event["event"] == "created":
            timed.add(key.encode())
        await feeder.send(topic, key, value)
        sent += 1
    await feeder.flush()
    return sent


async def measure_state(settings: Settings, engine: Implementation, *, buyers: int,
                        run_prefix: str, report: Callable[[str], None],
                        timeout_s: float) -> dict:
    """The engine draining one click each of `buyers` buyers, all sent before it starts."""
    prefix = f"{run_prefix}state."
    workload = Workload(Shape(events=buyers, buyers=buyers, seed=3),
                        start_ms=int(time.time() * 1000) - 3_600_000)
    channels = ("kuaishou", "douyin", "wechat", "xiaohongshu")
    now = int(time.time() * 1000)
    burst = (("clicks", f"sb-{n:07d}", orjson.dumps({
        "click_id": f"sc-{n:07d}", "ts_ms": now - n % 3_600_000, "buyer_id": f"sb-{n:07d}",
        "shop_id": workload.shops[n % len(workload.shops)], "channel_id": channels[n % 4],
        "promoter_id": f"sp-{n % 5000}"})) for n in range(buyers))
    report(f"bench: state: writing one click each of {buyers:,} buyers")
    started = await start_engine(settings, engine, prefix, workload, burst)
    inputs = [f"{prefix}clicks", f"{prefix}orders"]
    began = time.monotonic()
    result: dict = {"buyers": buyers}
    try:
        while True:
            remaining = await lag(settings.broker, started.launched.group, inputs,
                                  settings.partitions)
            if remaining == 0:
                break
            if started.launched.exited() or time.monotonic() - began > timeout_s:
                result["error"] = f"lag {remaining:,} left; log: {started.launched.log_paths}"
                break
            report(f"bench: state: lag {remaining:,}")
            await asyncio.sleep(5)
        result["seconds"] = round(time.monotonic() - began, 1)
        result["lag"] = remaining
        result["dead_letters"] = await _records(settings.broker, f"{prefix}deadletter",
                                                settings.partitions)
        result["alive"] = started.launched.exited() is None
    finally:
        await started.feeder.__aexit__(None, None, None)
        usage = await asyncio.to_thread(started.launched.stop)
    result["peak_rss_mb"] = round(usage.peak_rss_mb)
    return result


async def lag(bootstrap: str, group: str, topics: list[str], partitions: int) -> int:
    """Records of `topics` that `group` has not committed yet (end offset - committed)."""
    connection = KafkaConnection(bootstrap)
    async with started(connection.admin()) as admin, \
            started(connection.consumer(group_id=None)) as consumer:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for topic in topics
                                           for p in range(partitions)])
        try:
            committed = await admin.list_consumer_group_offsets(group)
        except Exception:  # no such group yet
            committed = {}
        return sum(end - (committed[tp].offset if tp in committed else 0)
                   for tp, end in ends.items())


async def _records(bootstrap: str, topic: str, partitions: int) -> int:
    async with started(KafkaConnection(bootstrap).consumer(group_id=None)) as consumer:
        every = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(every)
        starts = await consumer.beginning_offsets(every)
        return sum(ends[tp] - starts[tp] for tp in every)
