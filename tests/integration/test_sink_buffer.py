"""A sink slower than its queue, on the real broker: its delivery takes records as room
frees up and leaves no fetched data to the garbage collector, and a sink that takes
nothing (paused) still counts its whole queue.

aiokafka drops a paused partition's fetch that it has partly handed out, and the
dropped fetch (up to 1 MiB of records) lives on in a reference cycle until a
full collection, which a worker holding millions of objects runs seldom. A
delivery that paused its partitions whenever its buffer filled left one such
fetch per partition each time: 1 GiB in a 500,000-member plan (issue 17).
"""

from __future__ import annotations

import asyncio
import gc
import weakref

from aiokafka.consumer import fetcher
from conftest import create_topics

from app.domain.sinks import Sink
from app.kafka.connection import started
from app.sinks import delivery
from app.sinks.delivery import SinkDelivery
from app.sinks.fanout import queue_record
from app.sinks.plan_actions import PlanActionGate
from app.sinks.webhook_client import WebhookClient

PARTITIONS = 4
RECORDS = 3000
HELD = 100  # the delivery's buffer in this test, well under one fetch
PADDING = "x" * 300


def test_a_slow_sink_takes_records_as_room_frees_and_holds_one_fetch_per_partition(
        kafka, receivers, monkeypatch):
    receiver = receivers()
    receiver.respond = lambda n, event: (200, {}, 0.002)
    monkeypatch.setattr(delivery, "BUFFERED", HELD)
    fetches = _count_live_fetches(monkeypatch)
    queue = kafka.prefix + "sink.slow"
    asyncio.run(create_topics(kafka.bootstrap, [queue], PARTITIONS))
    kafka.produce("sink.slow", [
        (f"order-{n}", queue_record("commissions", f"event-{n}", {"padding": PADDING}, n))
        for n in range(RECORDS)])
    sink = Sink("slow", "webhook", frozenset({"commissions"}), url=receiver.url,
                rate_per_s=1_000_000, burst=1_000_000, max_in_flight=2)

    collecting = gc.isenabled()
    gc.disable()  # as in a worker holding millions of objects: full collections are rare
    try:
        held, live = asyncio.run(_deliver(kafka, queue, sink, fetches,
                                          lambda: len(receiver.requests) >= 1500))
    finally:
        if collecting:
            gc.enable()
    assert len(receiver.requests) >= 1500
    assert max(held) <= HELD + 500, max(held)  # the buffer plus one poll's worth
    assert max(live) <= PARTITIONS, live


def _count_live_fetches(monkeypatch) -> set[int]:
    """The ids of aiokafka's fetched partition records alive now."""
    live: set[int] = set()
    made = fetcher.PartitionRecords.__init__

    def counted(self, *args, **kwargs) -> None:
        made(self, *args, **kwargs)
        live.add(id(self))
        weakref.finalize(self, live.discard, id(self))

    monkeypatch.setattr(fetcher.PartitionRecords, "__init__", counted)
    return live


def test_a_paused_sink_counts_what_reaches_its_queue_meanwhile(kafka):
    queue = kafka.prefix + "sink.paused"
    asyncio.run(create_topics(kafka.bootstrap, [queue], 1))
    sink = Sink("paused", "webhook", frozenset({"commissions"}), url="http://127.0.0.1:9/",
                paused=True)
    depths = asyncio.run(_depth_while_queued(kafka, queue, sink, 5))
    # Before, the depth stayed at 1: the fetcher had fetched the first record, which a
    # paused delivery does not take, and fetches (and learns the end) no more until it does.
    assert depths[-1] == 5, depths


async def _depth_while_queued(kafka, queue: str, sink: Sink, count: int) -> list[int]:
    """The delivery's depth after each of `count` records reached its queue one by one."""
    depths = []
    async with started(kafka.connection.producer(acks="all")) as producer:
        sink_delivery = _delivery(kafka, queue, sink, producer)
        running = asyncio.ensure_future(sink_delivery.run())
        try:
            for n in range(count):
                await producer.send_and_wait(queue, queue_record("commissions", f"event-{n}",
                                                                 {}, n), key=b"order")
                for _ in range(30):  # the depth is refreshed every half second
                    await asyncio.sleep(0.1)
                    if sink_delivery.stats.depth == n + 1:
                        break
                depths.append(sink_delivery.stats.depth)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    return depths


def _delivery(kafka, queue: str, sink: Sink, producer) -> SinkDelivery:
    return SinkDelivery(
        sink_id=sink.sink_id, topic=queue, current=lambda: sink,
        connection=kafka.connection, group_id=f"{kafka.prefix}sink-{sink.sink_id}",
        deadletter_topic=kafka.prefix + "sinks.deadletter", webhooks=WebhookClient(),
        producer=producer, plan_actions=PlanActionGate(_NoPlans(), kafka.prefix + "records"))


async def _deliver(kafka, queue: str, sink: Sink, fetches: set[int],
                   enough) -> tuple[list[int], list[int]]:
    """Run the delivery until `enough()`; the records it held and the fetches alive,
    sampled meanwhile."""
    producer = kafka.connection.producer(acks="all")
    await producer.start()
    sink_delivery = _delivery(kafka, queue, sink, producer)
    running = asyncio.ensure_future(sink_delivery.run())
    held, live = [], []
    try:
        for _ in range(600):
            await asyncio.sleep(0.1)
            held.append(sum(p.undelivered for p in sink_delivery._progress.values()))
            live.append(len(fetches))
            if enough():
                break
        return held, live
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await producer.stop()


class _NoPlans:
    plans: dict = {}
