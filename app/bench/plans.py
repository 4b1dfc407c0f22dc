"""`cps bench`'s plan phase: a `now` plan over many members on one worker (SPEC 13).

The members' profiles are written before the engine starts; once it has read
them (its lag on `members` is 0) a webhook sink with no rate limit of its own
pointing at a receiver in this process and a `now` plan selecting every
member are written to their topics. Measured: the time from writing the plan
to the last action received, actions per second, the time the engine took to
decide and emit every action (from the progress changelog), the worker's peak
RSS, and whether every member got exactly one action.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
from aiohttp import web
from aiokafka.structs import TopicPartition

from app.bench.live import lag, start_engine
from app.bench.runner import Implementation
from app.bench.workload import Shape, Workload
from app.connection import KafkaConnection, started
from app.local_http import serve
from app.settings import Settings

SHOP = "plan-shop"
PLAN_ID = "bench-plan"


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
                       timeout_s: float) -> dict:
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
    finally:
        await receiver.stop()
        await started.feeder.__aexit__(None, None, None)
        usage = await asyncio.to_thread(launched.stop)
    result["peak_rss_mb"] = round(usage.peak_rss_mb)
    return result


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
