"""`cps sinks replay NAME`: send a sink's dead letters through its queue again."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import click
import orjson

from app.connection import KafkaConnection, started
from app.settings import Settings
from app.topics import Topics


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
    Idempotency-Key header); use --since-ms to replay only newer ones.
    """
    count = asyncio.run(requeue_dead_letters(settings, lambda letter: (
        letter.get("sink_id") == name
        and (since_ms is None or letter.get("ts_ms", 0) >= since_ms))))
    click.echo(f"requeued {count} dead letters of sink {name!r}")
    if count == 0:
        sys.exit(1)


async def requeue_dead_letters(settings: Settings, wanted: Callable[[dict], bool]) -> int:
    """Put the `wanted` sink dead letters (as written so far) back on their sinks' queues,
    in order; returns how many."""
    topics = Topics(settings.topic_prefix)
    connection = KafkaConnection.from_settings(settings)
    consumer = connection.consumer(topics.sinks_deadletter, group_id=None,
                                   isolation_level="read_committed",
                                   auto_offset_reset="earliest", enable_auto_commit=False)
    producer = connection.producer(acks="all", enable_idempotence=True)
    count = 0
    async with started(consumer), started(producer):
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        ends = await consumer.end_offsets(list(consumer.assignment()))
        done = {tp for tp, end in ends.items() if end == 0}
        while len(done) < len(ends):
            for tp, messages in (await consumer.getmany(timeout_ms=1000)).items():
                for message in messages:
                    if message.offset >= ends[tp]:
                        continue
                    letter = orjson.loads(message.value)
                    if not wanted(letter):
                        continue
                    key = letter["key"].encode() if letter.get("key") else None
                    queue = f"{settings.topic_prefix}sink.{letter['sink_id']}"
                    await producer.send_and_wait(queue, orjson.dumps(letter["record"]), key=key)
                    count += 1
            for tp, end in ends.items():
                if await consumer.position(tp) >= end:
                    done.add(tp)
    return count
