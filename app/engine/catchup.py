"""Catch-up barriers: work that waits until a partition's inputs are read as far as Kafka had them.

Kafka Streams keeps the input partitions of a task in step: before it
processes a record it waits for any input partition that has data not yet
fetched (`max.task.idle.ms`), judging that by the consumer's position
against the end offset the last fetch response reported. The engine needs
the same for one kind of decision (an order must see every click of its
buyer that is already in Kafka, whichever topic the worker happens to read
first), and asks for it explicitly:

- a handler asks a `CatchUp` for a ticket in its partition (`request`);
- the engine then asks the broker for the end offsets of the barrier's
  input topics in that partition: one ListOffsets request, read_committed
  (so the last stable offset), covering every partition that asked since the
  previous request;
- the ticket is reached once the consumer's position in each of those
  partitions is at or past that end offset, that is, every record before it
  (and every transaction marker, which takes an offset but is never
  delivered) has gone through the handlers. The barrier's hook then runs in
  the partition with the newest ticket reached, as a timer would.

The end offsets come from a request sent after the ticket was asked for, not
from the last fetch response: a partition whose records sit fetched but not
yet handled (a paused or busy worker) reports the end it had when they were
fetched, which can be older than the order asking. docs/attribution.md says
what this means for attribution.

Tickets are numbered per barrier and never reused. Everything of a partition
(tickets, answers, positions) is forgotten when the partition is revoked or
assigned; the handlers rebuild what they wait for from their state and ask
again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from app.domain.metrics import Histogram

logger = logging.getLogger(__name__)

# (topic, partition) -> offset
Offsets = Mapping[tuple[str, int], int]
EndOffsets = Callable[[list[tuple[str, int]]], Awaitable[Offsets]]
# Runs an action in a partition as a timer would; False when the partition cannot run it now.
RunInPartition = Callable[[int, Callable[[Any], None]], bool]


class PartitionBarrier:
    """One barrier's tickets in one partition."""

    __slots__ = ("announced", "asked", "open", "opened_at", "reached", "targets")

    def __init__(self) -> None:
        self.open: int | None = None  # the ticket of requests no end-offset request covers yet
        self.opened_at = 0.0          # ... first asked for at this monotonic time
        self.asked = 0                # the newest ticket handed out
        # (ticket, end offset of each input, monotonic time the ticket was first asked for)
        self.targets: deque[tuple[int, dict[tuple[str, int], int], float]] = deque()
        self.reached = 0              # every ticket up to this one is reached
        self.announced = 0            # ... and the hook has run for up to this one

    @property
    def pending(self) -> bool:
        """A ticket is not reached yet, or its hook has not run yet."""
        return self.asked > self.announced


class CatchUp:
    """A barrier over some input topics, and the hook that runs when its tickets are reached."""

    def __init__(self, barriers: Barriers, topics: tuple[str, ...],
                 hook: Callable[[Any, int], None]) -> None:
        self._barriers = barriers
        self.topics = topics
        self.hook = hook
        self.partitions: dict[int, PartitionBarrier] = {}
        self._tickets = itertools.count(1)

    def request(self, ctx: Any) -> int:
        """A ticket of `ctx`'s partition; the hook gets `(ctx, ticket)` or a later one when every
        input of the barrier has been read as far as it reached after this call."""
        state = self.partitions.get(ctx.partition)
        if state is None:
            state = self.partitions[ctx.partition] = PartitionBarrier()
        if state.open is None:
            state.open = state.asked = next(self._tickets)
            state.opened_at = time.monotonic()
            self._barriers.asked.set()
        return state.open

    def inputs(self, partition: int) -> list[tuple[str, int]]:
        return [(topic, partition) for topic in self.topics]


class Barriers(Service):
    """The catch-up barriers of an engine: end-offset requests, consumer positions, hooks."""

    def __init__(self, *, bootstrap: str, run_in_partition: RunInPartition,
                 end_offsets: EndOffsets | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bootstrap = bootstrap
        self.run_in_partition = run_in_partition
        self.catch_ups: list[CatchUp] = []
        self.asked = asyncio.Event()
        self._positions: dict[tuple[str, int], int] = {}
        self.waits = Histogram()  # ms from a ticket's first ask until it was reached
        self.requests = 0         # end-offset requests sent
        self._asks_broker = end_offsets is None
        self._end_offsets = end_offsets or self._ask_broker
        self._consumer: AIOKafkaConsumer | None = None

    def add(self, topics: Iterable[str], hook: Callable[[Any, int], None]) -> CatchUp:
        catch_up = CatchUp(self, tuple(topics), hook)
        self.catch_ups.append(catch_up)
        return catch_up

    # -- what the consumer has handed out --------------------------------------

    @property
    def watching(self) -> bool:
        """Whether a ticket waits, so the consumer's positions are wanted."""
        return any(state.pending for catch_up in self.catch_ups
                   for state in catch_up.partitions.values())

    def watched(self) -> list[tuple[str, int]]:
        """The input partitions whose positions decide a waiting ticket."""
        return [tp for catch_up in self.catch_ups
                for partition, state in catch_up.partitions.items() if state.pending
                for tp in catch_up.inputs(partition)]

    def note_positions(self, positions: Offsets) -> None:
        """The consumer's positions at a moment when everything it handed out has been handled."""
        self._positions.update(positions)
        self.check()

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the tickets and positions of partitions revoked or assigned anew."""
        partitions = set(partitions)
        for catch_up in self.catch_ups:
            for partition in partitions:
                catch_up.partitions.pop(partition, None)
        for tp in [tp for tp in self._positions if tp[1] in partitions]:
            del self._positions[tp]

    # -- reaching tickets ------------------------------------------------------

    def check(self) -> None:
        """Mark the tickets whose end offsets the positions reached; run the hooks due."""
        positions = self._positions
        now = time.monotonic()
        for catch_up in self.catch_ups:
            for partition, state in list(catch_up.partitions.items()):
                targets = state.targets
                while targets and all(positions.get(tp, -1) >= end
                                      for tp, end in targets[0][1].items()):
                    state.reached, _ends, asked_at = targets.popleft()
                    self.waits.record(int((now - asked_at) * 1000))
                if state.reached > state.announced and self.run_in_partition(
                        partition, partial(_announce, catch_up.hook, state.reached)):
                    state.announced = state.reached

    # -- asking the broker -----------------------------------------------------

    @Service.task
    async def _ask_loop(self) -> None:
        delay = 0.1
        while not self.should_stop:
            await self.asked.wait()
            self.asked.clear()
            asked = [(catch_up, partition, state, state.open, state.opened_at)
                     for catch_up in self.catch_ups
                     for partition, state in catch_up.partitions.items()
                     if state.open is not None]
            for _catch_up, _partition, state, _ticket, _at in asked:
                state.open = None
            inputs = sorted({tp for catch_up, partition, *_rest in asked
                             for tp in catch_up.inputs(partition)})
            self.requests += 1
            try:
                ends = await self._end_offsets(inputs)
            except Exception as exc:
                # The tickets stay unreached: ask again (a newer ticket covers an older one).
                logger.warning("end offsets of %d input partitions not read (%r); "
                               "again in %.1fs", len(inputs), exc, delay)
                for _catch_up, _partition, state, ticket, asked_at in asked:
                    if state.open is None:
                        state.open, state.opened_at = ticket, asked_at
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                self.asked.set()
                continue
            delay = 0.1
            for catch_up, partition, state, ticket, asked_at in asked:
                if catch_up.partitions.get(partition) is state:  # not revoked meanwhile
                    state.targets.append(
                        (ticket, {tp: ends[tp] for tp in catch_up.inputs(partition)}, asked_at))
            self.check()

    async def on_start(self) -> None:
        if self._asks_broker:
            # No group: it only asks for end offsets, read_committed like the engine's consumer.
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                isolation_level="read_committed")
            await self._consumer.start()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def _ask_broker(self, inputs: list[tuple[str, int]]) -> Offsets:
        ends = await self._consumer.end_offsets([TopicPartition(*tp) for tp in inputs])
        return {(tp.topic, tp.partition): end for tp, end in ends.items()}


def _announce(hook: Callable[[Any, int], None], ticket: int, ctx: Any) -> None:
    hook(ctx, ticket)
