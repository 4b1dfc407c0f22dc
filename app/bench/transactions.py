"""What one Kafka transaction costs: aiokafka as the engine drives it, against librdkafka.

Issue 17's third design: librdkafka's transactional producer (confluent-kafka)
for the engine's outputs, its network threads outside the interpreter lock.
Each commit here has the shape of an engine commit for one worker that owns
all 8 partitions: `records` records of 200 bytes over two output topics and
the 8 partitions of each, then the offsets of two input topics (8 partitions
each), then the commit. The aiokafka side uses the engine's own batching
(`send_batched`) and retry back-off; the librdkafka side produces every
record, flushes, sends the offsets with the consumer group's metadata and
commits. Both wait for every record's acknowledgement before the offsets.

CPU is read two ways: the whole process (librdkafka's threads included) and
the calling thread alone, which is what would compete with the engine's
handlers for the interpreter lock.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition

from app.engine.faust.transaction_pacing import paced_as_the_engine
from app.engine.transactions import Record, send_batched
from app.kafka.connection import PRODUCER_BATCH_BYTES, KafkaConnection
from app.kafka.topics import Role, TopicSpec
from app.kafka.topology import ensure_topics

PARTITIONS = 8
WARM_UP = 5  # commits left out of the figures: connections, metadata, first batches
VALUE = b"v" * 200
CLIENTS = ("aiokafka", "librdkafka")


@dataclass(frozen=True)
class Commits:
    """The figures of one client's run of commits."""

    client: str
    records: int
    commits: int
    wall_p50_ms: float
    wall_p90_ms: float
    cpu_ms: float          # per commit, every thread of the process
    thread_cpu_ms: float   # per commit, the calling thread alone
    round: int = 1


@dataclass(frozen=True)
class Shape:
    bootstrap: str
    commits: int
    records: int
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])  # names its topics

    @property
    def outputs(self) -> list[str]:
        return [f"cps-txn-bench.{self.run}.out", f"cps-txn-bench.{self.run}.changelog"]

    @property
    def inputs(self) -> list[str]:
        return [f"cps-txn-bench.{self.run}.in1", f"cps-txn-bench.{self.run}.in2"]

    def batch(self) -> list[tuple[str, int, bytes, bytes]]:
        outputs = self.outputs
        return [(outputs[n % 2], n % PARTITIONS, b"k%d" % n, VALUE) for n in range(self.records)]


def measure(client: str, bootstrap: str, *, commits: int, records: int,
            round_number: int = 1) -> Commits:
    """Run `commits` transactions of `records` records with `client` on fresh topics."""
    if client not in CLIENTS:
        raise ValueError(f"unknown client {client!r}; choose from {CLIENTS}")
    shape = Shape(bootstrap, commits + WARM_UP, records)
    asyncio.run(ensure_topics(KafkaConnection(shape.bootstrap),
                              [TopicSpec(topic, Role.OUTPUT)
                               for topic in shape.outputs + shape.inputs],
                              partitions=PARTITIONS, replication=1))
    run = _aiokafka_commits if client == "aiokafka" else _librdkafka_commits
    walls, cpus, thread_cpus = run(shape)
    walls, cpus, thread_cpus = walls[WARM_UP:], cpus[WARM_UP:], thread_cpus[WARM_UP:]
    return Commits(client, records, len(walls), _quantile(walls, 0.5), _quantile(walls, 0.9),
                   statistics.mean(cpus) * 1000, statistics.mean(thread_cpus) * 1000,
                   round_number)


def _timed(commit: Callable[[int], None], commits: int
           ) -> tuple[list[float], list[float], list[float]]:
    walls, cpus, thread_cpus = [], [], []
    for n in range(commits):
        wall, cpu, thread_cpu = time.perf_counter(), time.process_time(), time.thread_time()
        commit(n)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        thread_cpus.append(time.thread_time() - thread_cpu)
    return walls, cpus, thread_cpus


def _aiokafka_commits(shape: Shape) -> tuple[list[float], list[float], list[float]]:
    loop = asyncio.new_event_loop()

    async def start_producer() -> AIOKafkaProducer:  # made in the loop it runs in
        producer = AIOKafkaProducer(
            bootstrap_servers=shape.bootstrap, transactional_id=f"cps-txn-bench-{shape.run}",
            enable_idempotence=True, acks="all", linger_ms=0,
            max_batch_size=PRODUCER_BATCH_BYTES)
        await producer.start()
        return producer

    batch = [Record(*record) for record in shape.batch()]
    group = f"cps-txn-bench-{shape.run}"

    async def commit(n: int) -> None:
        await producer.begin_transaction()
        await send_batched(producer, batch)
        await producer.send_offsets_to_transaction(
            {TopicPartition(topic, partition): n + 1
             for topic in shape.inputs for partition in range(PARTITIONS)}, group)
        await producer.commit_transaction()

    with paced_as_the_engine():
        try:
            producer = loop.run_until_complete(start_producer())
            try:
                return _timed(lambda n: loop.run_until_complete(commit(n)), shape.commits)
            finally:
                loop.run_until_complete(producer.stop())
        finally:
            loop.close()


def _librdkafka_commits(shape: Shape) -> tuple[list[float], list[float], list[float]]:
    try:
        from confluent_kafka import Consumer, KafkaException, Producer
        from confluent_kafka import TopicPartition as RdTopicPartition
    except ImportError as exc:
        raise RuntimeError("librdkafka's client is a bench extra: pip install '.[bench]'"
                           ) from exc
    producer = Producer({"bootstrap.servers": shape.bootstrap, "linger.ms": 0, "acks": "all",
                         "transactional.id": f"cps-txn-bench-rd-{shape.run}"})
    consumer = Consumer({"bootstrap.servers": shape.bootstrap,
                         "group.id": f"cps-txn-bench-{shape.run}"})
    group = consumer.consumer_group_metadata()
    batch = shape.batch()
    failed: list[str] = []

    def acknowledged(error, _message) -> None:
        if error is not None:
            failed.append(str(error))

    def commit(n: int) -> None:
        producer.begin_transaction()
        for topic, partition, key, value in batch:
            producer.produce(topic, value, key, partition=partition, on_delivery=acknowledged)
        producer.flush(30)
        if failed:
            raise KafkaException(f"records not acknowledged: {failed[:3]}")
        producer.send_offsets_to_transaction(
            [RdTopicPartition(topic, partition, n + 1)
             for topic in shape.inputs for partition in range(PARTITIONS)], group, 30)
        producer.commit_transaction(30)

    try:
        producer.init_transactions(30)
        return _timed(commit, shape.commits)
    finally:
        consumer.close()


def _quantile(values: list[float], q: float) -> float:
    return sorted(values)[int(q * (len(values) - 1))] * 1000


def table(results: list[Commits]) -> str:
    """The results as a Markdown table."""
    lines = ["| client | records/commit | round | commits | wall p50 / p90 (ms) | CPU ms/commit, "
             "process | CPU ms/commit, calling thread |", "|---|---:|---:|---:|---|---:|---:|"]
    lines += [f"| {r.client} | {r.records:,} | {r.round} | {r.commits} | {r.wall_p50_ms:.1f} / "
              f"{r.wall_p90_ms:.1f} | {r.cpu_ms:.2f} | {r.thread_cpu_ms:.2f} |"
              for r in results]
    return "\n".join(lines)

