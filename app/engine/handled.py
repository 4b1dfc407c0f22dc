"""Topic barriers: work that waits until every partition of a topic has been handled, by
whichever worker owns it, as far as the topic reached when the work asked.

A catch-up barrier (catchup.py) waits for this worker's own reading of one
partition's inputs. Some work needs more: a buyer's conversion must see every
order of the buyer already in Kafka, and orders are keyed by order id, so they
sit in any partition of cps.orders until their owner re-keys them to the
buyer's partition. Such work asks a `TopicBarrier` for a ticket; the ticket
gets the end offset of every partition of the topic (read_committed, one
ListOffsets request for all tickets asked since the previous one), and is
reached once the engine's consumer group has committed an offset at or past
each of those ends. The engine commits a partition's offsets only with the
outputs of the records before them, and after the broker acknowledged what
they forwarded (forwarding.py), so by then every one of those records has
been re-keyed. The hook then runs in the ticket's partition, where the work
usually asks a catch-up barrier over the re-keyed topic next.

The committed offsets are polled (one OffsetFetch request per poll) only
while a ticket waits. A partition whose last records are a transaction's
marker, or records of an aborted transaction, is committed only up to the
last record the engine handled, below its end: a ticket waiting for it is
reached when the partition's next record is handled.

Tickets are numbered per barrier and never reused; a partition's are
forgotten when it is revoked or assigned, and the work asks again from its
state.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from functools import partial
from typing import Any

from aiokafka import TopicPartition
from mode import Service

from app.domain.metrics import Histogram
from app.engine.catchup import RunInPartition
from app.engine.handler_context import HandlerContext, Hook
from app.kafka.connection import KafkaConnection

logger = logging.getLogger(__name__)

POLL_S = 0.1


class TopicBarrier:
    """One topic's barrier and the hook its reached tickets run."""

    def __init__(self, barriers: TopicBarriers, topic: str,
                 hook: Hook) -> None:
        self._barriers = barriers
        self.topic = topic
        self.hook = hook
        self.open: dict[int, int] = {}  # partition -> ticket no end offsets were read for yet
        # (partition, ticket, end offset of each partition of the topic, loop time asked)
        self.targets: list[tuple[int, int, dict[int, int], float]] = []
        self.reached: dict[int, int] = {}  # partition -> newest ticket reached, hook not run
        self._tickets = itertools.count(1)

    def request(self, ctx: HandlerContext) -> int:
        """A ticket of `ctx`'s partition: the hook gets `(ctx, ticket)` (or a later ticket)
        once every partition of the topic is handled as far as it reached after this call."""
        ticket = self.open.get(ctx.partition)
        if ticket is None:
            ticket = self.open[ctx.partition] = next(self._tickets)
            self._barriers.asked.set()
        return ticket

    @property
    def pending(self) -> bool:
        return bool(self.open or self.targets or self.reached)

    def forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.open.pop(partition, None)
            self.reached.pop(partition, None)
        self.targets = [target for target in self.targets if target[0] not in partitions]


class TopicBarriers(Service):
    """The topic barriers of an engine: end offsets asked, committed offsets polled."""

    def __init__(self, connection: KafkaConnection, *, group_id: str, partitions: int,
                 run_in_partition: RunInPartition, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connection = connection
        self.group_id = group_id
        self.partitions = partitions
        self.run_in_partition = run_in_partition
        self.barriers: list[TopicBarrier] = []
        self.asked = asyncio.Event()
        self.waits = Histogram()  # ms from a ticket's ask until it was reached
        self._consumer: Any = None
        self._admin: Any = None

    def add(self, topic: str, hook: Hook) -> TopicBarrier:
        barrier = TopicBarrier(self, topic, hook)
        self.barriers.append(barrier)
        return barrier

    def forget(self, partitions: set[int]) -> None:
        for barrier in self.barriers:
            barrier.forget(partitions)

    async def on_start(self) -> None:
        if not self.barriers:
            return
        self._consumer = self.connection.consumer(
            group_id=None, enable_auto_commit=False, isolation_level="read_committed")
        self._admin = self.connection.admin()
        await self._consumer.start()
        await self._admin.start()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    @Service.task
    async def _follow_offsets(self) -> None:
        if not self.barriers:
            return
        delay = POLL_S
        while not self.should_stop:
            if not any(barrier.pending for barrier in self.barriers):
                await self.asked.wait()
            self.asked.clear()
            try:
                await self._step()
                delay = POLL_S
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the tickets wait: asked again after a pause
                logger.warning("topic barrier offsets not read (%r); again in %.1fs",
                               exc, delay)
                delay = min(delay * 2, 5.0)
            await asyncio.sleep(delay)

    async def _step(self) -> None:
        """Read the ends for new tickets, mark the tickets the committed offsets reached,
        run their hooks."""
        loop = asyncio.get_running_loop()
        asking = [barrier for barrier in self.barriers if barrier.open]
        if asking:
            ends = await self._end_offsets({barrier.topic for barrier in asking})
            for barrier in asking:
                opened, barrier.open = barrier.open, {}
                for partition, ticket in opened.items():
                    barrier.targets.append((partition, ticket, ends[barrier.topic],
                                            loop.time()))
        waiting = [barrier for barrier in self.barriers if barrier.targets]
        if waiting:
            committed = await self._committed({barrier.topic for barrier in waiting})
            for barrier in waiting:
                self._reach(barrier, committed[barrier.topic], loop.time())
        for barrier in self.barriers:
            for partition, ticket in list(barrier.reached.items()):
                if self.run_in_partition(partition, partial(_announce, barrier.hook, ticket)):
                    del barrier.reached[partition]

    def _reach(self, barrier: TopicBarrier, committed: dict[int, int], now: float) -> None:
        left = []
        for partition, ticket, ends, asked_at in barrier.targets:
            if all(committed.get(source, -1) >= end for source, end in ends.items() if end):
                barrier.reached[partition] = max(ticket, barrier.reached.get(partition, 0))
                self.waits.record(int((now - asked_at) * 1000))
            else:
                left.append((partition, ticket, ends, asked_at))
        barrier.targets = left

    async def _end_offsets(self, topics: set[str]) -> dict[str, dict[int, int]]:
        ends = await self._consumer.end_offsets(self._partitions_of(topics))
        return _by_topic(topics, {tp: offset for tp, offset in ends.items()})

    async def _committed(self, topics: set[str]) -> dict[str, dict[int, int]]:
        found = await self._admin.list_consumer_group_offsets(
            self.group_id, partitions=self._partitions_of(topics))
        return _by_topic(topics, {tp: meta.offset for tp, meta in found.items()})

    def _partitions_of(self, topics: set[str]) -> list[TopicPartition]:
        return [TopicPartition(topic, partition) for topic in sorted(topics)
                for partition in range(self.partitions)]


def _by_topic(topics: set[str], offsets: dict[TopicPartition, int]) -> dict[str, dict[int, int]]:
    found: dict[str, dict[int, int]] = {topic: {} for topic in topics}
    for tp, offset in offsets.items():
        found[tp.topic][tp.partition] = offset
    return found


def _announce(hook: Hook, ticket: int, ctx: HandlerContext) -> None:
    hook(ctx, ticket)
