"""Operation plans for the integration tests: members, a plan body, its sink, and what
the receiver got."""

from __future__ import annotations

import asyncio
import time

import orjson
from sink_setup import setup, sink

from app.kafka.connection import started


def members(kafka, count: int, *, shop: str = "s1", tag: str = "m") -> dict[str, dict]:
    """`count` member profiles at `shop` (levels 0-4, tags by residue), produced keyed
    "<shop>/<buyer>"; returns them by buyer id."""
    profiles = {}
    for n in range(count):
        buyer = f"{tag}{n:05d}"
        profiles[buyer] = {"shop_id": shop, "buyer_id": buyer, "level": n % 5,
                           "tags": ["vip"] if n % 7 == 0 else (["new"] if n % 3 == 0 else []),
                           "follower": n % 2 == 0, "birthday": None, "tz": None}
    produce_all(kafka, "members", [(f"{shop}/{buyer}", profile)
                                   for buyer, profile in profiles.items()])
    return profiles


def produce_all(kafka, topic: str, records: list[tuple[str, dict]]) -> None:
    """Like `kafka.produce`, but every record is sent before any is awaited (thousands of
    profiles in a second, not one round trip each)."""
    async def send() -> None:
        async with started(kafka.connection.producer(acks="all")) as producer:
            sent = [await producer.send(kafka.prefix + topic, orjson.dumps(value),
                                        key=key.encode()) for key, value in records]
            await asyncio.gather(*sent)
    asyncio.run(send())


def plan_body(**fields) -> dict:
    body = {"shop_id": "s1", "name": "test plan", "audience": {"level_gte": 1},
            "trigger": {"kind": "now"}, "rate_per_s": 100_000, "burst": 100_000,
            "action": {"kind": "grant", "sink": "rights", "payload": {"coupon": "c-5"}}}
    return {**body, **fields}


def rights_sink(worker, receiver, **extra) -> None:
    """A webhook sink `rights` that takes plan actions as fast as they come."""
    setup(worker, rights=sink(receiver.url, streams=["commissions"], rate_per_s=100_000,
                              burst=10_000, max_in_flight=64, **extra))


def wait_loaded(worker, topics: tuple[str, ...] = ("members",), timeout: float = 90) -> None:
    """Until the worker's /lag shows nothing left to read on `topics` (inputs others write:
    the engine's own topics end in transaction markers). What the worker re-keyed from
    them is in Kafka by then, and an occurrence waits until its partition read it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = worker.get("/lag?format=json")
        if status == 200:
            rows = [row for row in orjson.loads(body)["partitions"]
                    if any(row["topic"].endswith(topic) for topic in topics)]
            if rows and all(row["lag"] == 0 for row in rows):
                return
        time.sleep(0.5)
    raise AssertionError(f"inputs not read in {timeout}s: {worker.get('/lag?format=json')}")


def delivered_actions(receiver, plan_id: str) -> list[dict]:
    return [r["event"]["event"] for r in receiver.requests
            if r["status"] == 200 and r["event"].get("stream") == "plan_actions"
            and r["event"]["event"]["plan_id"] == plan_id]
