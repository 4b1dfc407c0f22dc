"""`cps sinks replay NAME`: send a sink's dead letters through its queue again."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import click
import orjson

from app.config.settings import Settings
from app.kafka.connection import KafkaConnection, records_to_end, started
from app.kafka.topics import Topics
from app.sinks.fanout import queue_topic


@click.group("sinks")
def command() -> None:
    """Operate notification sinks."""


@command.command("replay")
@click.argument("name")
@click.option("--since-ms", type=int, default=None,
              help="Only dead letters written at or after this time (epoch ms).")
@click.pass_obj
def replay(settings: Settings, name: str, since_ms: int | None) -> None:
    """Queue every dead letter of sink NAME again, in their order, for delivery.

    Replaying twice sends the events twice (receivers de-duplicate by the
    Idempotency-Key header); use --since-ms to replay only newer ones. Dead
    letters of a sink that does not exist (yet) stay where they are. Exits 1
    when nothing was queued.
    """
    requeued = asyncio.run(requeue_dead_letters(settings, lambda letter: (
        letter.get("sink_id") == name
        and (since_ms is None or letter.get("ts_ms", 0) >= since_ms))))
    click.echo(f"requeued {requeued.count} dead letters of sink {name!r}")
    requeued.report_waiting()
    if requeued.count == 0:
        sys.exit(1)


@dataclass
class Requeued:
    """What a requeue did: how many letters it queued, and which it left for want of their
    sink's queue (by sink id)."""

    count: int = 0
    no_sink: Counter[str] = field(default_factory=Counter)

    def report_waiting(self) -> None:
        for sink_id, count in sorted(self.no_sink.items()):
            click.echo(f"left {count} dead letters for sink {sink_id!r}, which has no queue: "
                       f"configure it (PUT /admin/sinks/{sink_id}) and run this again")


async def requeue_dead_letters(settings: Settings, wanted: Callable[[dict], bool]) -> Requeued:
    """Put the `wanted` sink dead letters (as written so far) back on their sinks' queues,
    in order, where the sink's queue exists (a worker made it for a configured sink)."""
    topics = Topics(settings.topic_prefix)
    connection = KafkaConnection.from_settings(settings)
    consumer = connection.consumer(topics.sinks_deadletter, group_id=None,
                                   isolation_level="read_committed",
                                   auto_offset_reset="earliest", enable_auto_commit=False)
    producer = connection.producer(acks="all", enable_idempotence=True)
    requeued = Requeued()
    async with started(consumer), started(producer):
        queues = await consumer.topics()
        async for message in records_to_end(consumer):
            letter = orjson.loads(message.value)
            if not wanted(letter):
                continue
            queue = queue_topic(settings.topic_prefix, letter["sink_id"])
            if queue not in queues:
                requeued.no_sink[letter["sink_id"]] += 1
                continue
            key = letter["key"].encode() if letter.get("key") else None
            await producer.send_and_wait(queue, orjson.dumps(letter["record"]), key=key)
            requeued.count += 1
    return requeued
