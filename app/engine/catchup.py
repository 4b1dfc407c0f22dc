"""Catch-up barriers: work that waits until a partition's inputs are read as far as Kafka had them.

Kafka Streams keeps the input partitions of a task in step: before it
processes a record it waits for any input partition that has data not yet
fetched, judging that by the consumer's position against the end offset
the last fetch response reported. The engine needs the same for one kind
of decision (an order must see every click of its buyer that is already in
Kafka, whichever topic the worker happens to read first), and asks for it
explicitly:

- a handler asks a `CatchUp` for a ticket in its partition (`request`);
- the ticket gets the end offset of each of the barrier's input topics in
  that partition (read_committed, so the last stable offset), as of a
  moment after the record being handled was in Kafka;
- the ticket is reached once the consumer's position in each of those
  partitions is at or past that end offset, that is, every record before it
  (and every transaction marker, which takes an offset but is never
  delivered) has gone through the handlers. The barrier's hook then runs in
  the partition with the newest ticket reached, as a timer would.

The end offsets come from one of two places. If every input partition was
in the fetch response that brought the record being handled, or in a later
one, the ends that response reported are used: nothing to ask, and the
ticket is usually reached as soon as the batch is handled (the live case).
Otherwise (an input whose records sit fetched but not yet handled was not
fetched again, so the end it last reported may be older than the record,
as with a paused or lagging worker; or no record is being handled: a timer)
the engine asks the broker: one ListOffsets request after the ticket was
asked for, covering every partition that asked since the previous one.
docs/attribution.md says what this means for attribution.

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
from app.engine.handler_context import HandlerContext, Hook, Tick
from app.kafka.connection import KafkaConnection

logger = logging.getLogger(__name__)

# (topic, partition) -> offset
Offsets = Mapping[tuple[str, int], int]
EndOffsets = Callable[[list[tuple[str, int]]], Awaitable[Offsets]]
# Runs an action in a partition as a timer would; False when the partition cannot run it now.
RunInPartition = Callable[[int, Tick], bool]
# (source, inputs): the ends of `inputs` reported by the fetch that brought the records of
# the `source` partition being handled, or by a later one; None when some input's are older.
FetchedEnds = Callable[[tuple[str, int], list[tuple[str, int]]], dict[tuple[str, int], int] | None]


class PartitionBarrier:
    """One barrier's tickets in one partition."""

    __slots__ = ("announced", "asked", "open", "opened_at", "probing", "reached", "targets")

    def __init__(self) -> None:
        self.open: int | None = None  # the ticket of requests no end-offset request covers yet
        self.opened_at = 0.0          # ... first asked for at this monotonic time
        self.probing: int | None = None  # the ticket of the end-offset request under way
        self.asked = 0                # the newest ticket handed out
        # (ticket, end offset of each input, monotonic time the ticket was first asked for)
        self.targets: deque[tuple[int, dict[tuple[str, int], int], float]] = deque()
        self.reached = 0              # every ticket up to this one is reached
        self.announced = 0            # ... and the hook has run for up to this one

    @property
    def pending(self) -> bool:
        """A ticket is not reached yet, or its hook has not run yet."""
        return self.asked > self.announced

    def expect(self, ends: dict[tuple[str, int], int], new_ticket: Callable[[], int]) -> int:
        """A ticket for `ends` known already: the newest one if it waits for as much."""
        if self.targets:
            ticket, last_ends, _at = self.targets[-1]
            if all(last_ends[tp] >= end for tp, end in ends.items()):
                return ticket
        ticket = self.asked = new_ticket()
        self.targets.append((ticket, ends, time.monotonic()))
        return ticket


class CatchUp:
    """A barrier over some input topics, and the hook that runs when its tickets are reached."""

    def __init__(self, barriers: Barriers, topics: tuple[str, ...],
                 hook: Hook) -> None:
        self._barriers = barriers
        self.topics = topics
        self.hook = hook
        self.partitions: dict[int, PartitionBarrier] = {}
        self._tickets = itertools.count(1)

    def request(self, ctx: HandlerContext) -> int:
        """A ticket of `ctx`'s partition; the hook gets `(ctx, ticket)` or a later one when every
        input of the barrier has been read as far as it reached when the record being handled
        was fetched (or, when that is not known, after this call)."""
        state = self.partitions.get(ctx.partition)
        if state is None:
            state = self.partitions[ctx.partition] = PartitionBarrier()
        # A ticket with ends from a fetch must not overtake one whose ends are still asked for.
        if state.open is None and state.probing is None and ctx.message is not None:
            ends = self._barriers.fetched_ends(ctx.message, self.inputs(ctx.partition))
            if ends is not None:
                return state.expect(ends, self._tickets.__next__)
        if state.open is None:
            state.open = state.asked = next(self._tickets)
            state.opened_at = time.monotonic()
            self._barriers.asked.set()
        return state.open

    def inputs(self, partition: int) -> list[tuple[str, int]]:
        return [(topic, partition) for topic in self.topics]


class Barriers(Service):
    """The catch-up barriers of an engine: end-offset requests, consumer positions, hooks."""

    def __init__(self, connection: KafkaConnection, *, run_in_partition: RunInPartition,
                 end_offsets: EndOffsets | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connection = connection
        self.run_in_partition = run_in_partition
        self.catch_ups: list[CatchUp] = []
        self.asked = asyncio.Event()
        self._positions: dict[tuple[str, int], int] = {}
        self.waits = Histogram()  # ms from a ticket's first ask until it was reached
        self.requests = 0         # end-offset requests sent
        self.from_fetches = 0     # tickets whose ends a fetch response had reported
        # Set by the consumer's loop (faust/delivery.py) once it runs.
        self.read_fetched_ends: FetchedEnds | None = None
        self._asks_broker = end_offsets is None
        self._end_offsets = end_offsets or self._ask_broker
        self._consumer: AIOKafkaConsumer | None = None

    def add(self, topics: Iterable[str], hook: Hook) -> CatchUp:
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

    def fetched_ends(self, message: Any, inputs: list[tuple[str, int]]
                     ) -> dict[tuple[str, int], int] | None:
        if self.read_fetched_ends is None:
            return None
        ends = self.read_fetched_ends((message.topic, message.partition), inputs)
        if ends is not None:
            self.from_fetches += 1
        return ends

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
            for _catch_up, _partition, state, ticket, _at in asked:
                state.open, state.probing = None, ticket
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
                    state.probing = None
                    if state.open is None:
                        state.open, state.opened_at = ticket, asked_at
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                self.asked.set()
                continue
            delay = 0.1
            for catch_up, partition, state, ticket, asked_at in asked:
                state.probing = None
                if catch_up.partitions.get(partition) is state:  # not revoked meanwhile
                    state.targets.append(
                        (ticket, {tp: ends[tp] for tp in catch_up.inputs(partition)}, asked_at))
            self.check()

    async def on_start(self) -> None:
        if self._asks_broker:
            # No group: it only asks for end offsets, read_committed like the engine's consumer.
            self._consumer = self.connection.consumer(
                group_id=None, enable_auto_commit=False,
                isolation_level="read_committed")
            await self._consumer.start()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def _ask_broker(self, inputs: list[tuple[str, int]]) -> Offsets:
        ends = await self._consumer.end_offsets([TopicPartition(*tp) for tp in inputs])
        return {(tp.topic, tp.partition): end for tp, end in ends.items()}


def _announce(hook: Hook, ticket: int, ctx: HandlerContext) -> None:
    hook(ctx, ticket)
