"""A producer writing to a topic created after it started keeps sending to the others."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from conftest import create_topics

from app.kafka.connection import started
from app.kafka.topology import track_topics


async def _send_to_known_and_new_topic(bootstrap: str, prefix: str, *, track: bool) -> None:
    known, new = f"{prefix}known", f"{prefix}new"
    await create_topics(bootstrap, [known], 2)
    # Lingering keeps the first record queued while the second narrows the metadata.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=300)
    async with started(producer):
        # A full metadata fetch, as aiokafka makes every metadata_max_age_ms or
        # after a lost connection: `known` is now known without being tracked.
        await producer.client.force_metadata_update()
        await create_topics(bootstrap, [new], 2)  # like a sink's queue made while the engine runs
        if track:
            await track_topics(producer, (known, new))
        first = await producer.send(known, b"1", partition=0)
        second = await producer.send(new, b"2", partition=0)
        await asyncio.wait_for(asyncio.gather(first, second), timeout=15)


def test_tracked_topics_stay_in_the_metadata_when_a_new_topic_appears(bootstrap, prefix):
    asyncio.run(_send_to_known_and_new_topic(bootstrap, prefix, track=True))
