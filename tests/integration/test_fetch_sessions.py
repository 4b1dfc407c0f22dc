"""Fetch sessions against the real broker: nothing lost or repeated, fetches name only
what moved, partitions left out of an answer are noted as fetched, and a broken session
is replaced."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.consumer import consumer as aiokafka_consumer_module
from conftest import create_topics

from app.engine.faust import fetch_sessions
from app.kafka.connection import started

TOPICS = 6
PARTITIONS = 4


@pytest.fixture
def fetches(monkeypatch) -> list[tuple[int, int, int]]:
    """(epoch, partitions named, partitions forgotten) of every session fetch sent."""
    sent: list[tuple[int, int, int]] = []
    build = fetch_sessions.SessionFetchRequest.build

    def noted(self, request_struct_class):
        struct = build(self, request_struct_class)
        sent.append((struct.session_epoch, sum(len(p) for _, p in struct.topics),
                     sum(len(p) for _, p in struct.forgotten_topics_data)))
        return struct

    monkeypatch.setattr(fetch_sessions.SessionFetchRequest, "build", noted)
    monkeypatch.setattr(aiokafka_consumer_module, "Fetcher", fetch_sessions.SessionFetcher)
    return sent


class Reader:
    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.values: dict[TopicPartition, list[bytes]] = {}

    async def read_until(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.total() < count:
            assert time.monotonic() < deadline, f"read {self.total()} of {count}"
            for tp, records in (await self.consumer.getmany(timeout_ms=100)).items():
                self.values.setdefault(tp, []).extend(record.value for record in records)

    def total(self) -> int:
        return sum(len(values) for values in self.values.values())


async def _exercise(bootstrap: str, prefix: str, fetches: list) -> None:
    names = [f"{prefix}sessions-{i}" for i in range(TOPICS)]
    await create_topics(bootstrap, names, PARTITIONS)
    partitions = [TopicPartition(name, p) for name in names for p in range(PARTITIONS)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                fetch_max_wait_ms=20, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=prefix + "txn")
    async with started(consumer), started(producer):
        consumer.assign(partitions)
        reader = Reader(consumer)
        expected: dict[TopicPartition, list[bytes]] = {}

        async def write(tp: TopicPartition, count: int, *, abort: bool = False) -> None:
            async with producer.transaction():
                for i in range(count):
                    value = f"{tp.topic}/{tp.partition}/{len(expected.get(tp, []))}/{i}".encode()
                    await producer.send(tp.topic, value, partition=tp.partition)
                    if not abort:
                        expected.setdefault(tp, []).append(value)
                if abort:
                    raise _Abort
        # Every partition, then one at a time while the consumer keeps up.
        for tp in partitions:
            await write(tp, 5)
        with pytest.raises(_Abort):
            await write(partitions[3], 4, abort=True)
        await reader.read_until(5 * len(partitions))
        await asyncio.sleep(0.3)  # every partition back in the session
        before = len(fetches)
        for tp in partitions[:8]:
            await write(tp, 3)
            await reader.read_until(sum(map(len, expected.values())))
        assert fetches[0][0] == 0 and fetches[0][1] == len(partitions)  # the full fetch
        named = [count for _, count, _ in fetches[before:]]
        assert named and max(named) <= 3, named  # only what moved, never all 24

        # Partitions the answers leave out are noted as fetched, with their true ends.
        await asyncio.sleep(0.5)
        now_ms = int(time.time() * 1000)
        ends = await consumer.end_offsets(partitions)
        assignment = consumer._subscription.subscription.assignment
        for tp in partitions:
            state = assignment.state_value(tp)
            assert now_ms - state.timestamp < 300, (tp, now_ms - state.timestamp)
            assert state.lso == ends[tp] == state.position

        # A paused partition is forgotten, and fetched again from where it was.
        before = len(fetches)
        consumer.pause(partitions[0])
        await write(partitions[0], 2)
        await asyncio.sleep(0.3)
        assert [forgotten for _, _, forgotten in fetches[before:] if forgotten] == [1]
        consumer.resume(partitions[0])
        await reader.read_until(sum(map(len, expected.values())))

        # A session the broker no longer accepts is replaced by a full fetch.
        full_fetches = sum(1 for epoch, _, _ in fetches if epoch == 0)
        for session in consumer._fetcher._sessions.values():
            session._epoch += 1000
        await asyncio.sleep(0.3)
        await write(partitions[5], 2)
        await reader.read_until(sum(map(len, expected.values())))
        assert sum(1 for epoch, _, _ in fetches if epoch == 0) > full_fetches

        assert reader.values == expected  # each record once, in order; none aborted


class _Abort(Exception):
    pass


def test_fetch_sessions_read_everything_once_and_name_only_what_moved(bootstrap, prefix,
                                                                       fetches):
    asyncio.run(_exercise(bootstrap, prefix, fetches))
