"""The engine: runs handlers over partitioned events and commits each partition exactly once.

Agents register their handlers with `Engine.pipeline`; for every event the engine
calls the handler registered for its topic with a `Context` bound to the
event's partition. Handlers are plain synchronous functions: they read and
write state through the context, send records and dead letters, and never
await. A background committer gathers the work of each partition for a few
milliseconds and commits it in one Kafka transaction (records, changelog and
input offsets), then writes the state to RocksDB (see `state.py`). The
partitions of a slot (a fixed block of them this worker owns wholly, see
`slots.py`) commit together in one transaction; each slot commits on its
own, while the others go on. Records re-keyed for
another partition can be forwarded at once instead (see `forwarding.py`). Timers
(`every_tick`) and the hooks of catch-up barriers (`catch_up`, see `catchup.py`)
run per partition under the same rules, so a timeout decided by the wall
clock is committed exactly like an event.

Faust commits no offsets for the engine's topics (they are declared with
`acks=False`); the engine commits them inside its transactions.

The Engine puts together parts with one job each: what agents register
(registration.py), which partitions are assigned here (assignment.py), the
commit path (checkpoint.py) and the timers (timers.py); it delivers messages
to handlers and follows Faust's rebalances.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from mode import Service

from app.domain.metrics import Histogram
from app.engine.assignment import Assignment
from app.engine.catchup import Barriers, CatchUp
from app.engine.checkpoint import Checkpoint
from app.engine.forwarding import Forwarder
from app.engine.handled import TopicBarrier, TopicBarriers
from app.engine.handler_context import Handler, Hook, Tick
from app.engine.pipelines import Pipeline
from app.engine.registration import Registry
from app.engine.runtime import PartitionRuntime
from app.engine.state import StateTable
from app.engine.timers import Timers
from app.engine.transactions import SlotTransactions
from app.kafka.connection import KafkaConnection
from app.kafka.topology import Topology
from app.records.fields import InvalidEvent

logger = logging.getLogger(__name__)


class Engine(Service):
    """Partitioned, transactional processing shared by all agents of a worker."""

    def __init__(self, app, *, connection: KafkaConnection, topology: Topology,
                 partitions: int, deadletter_topic: str, commit_linger_ms: int,
                 commit_max_events: int, commit_max_records: int,
                 rocksdb_options: dict[str, Any],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.partitions = partitions
        self.registry = Registry(app, partitions=partitions, rocksdb_options=rocksdb_options,
                                 until_stopped=self.wait_until_stopped)
        self.assignment = Assignment(app, self.registry, partitions)
        forwarder = Forwarder(connection, client_id=app.conf.id)
        self.add_dependency(forwarder)
        self.runtime = PartitionRuntime(partitions=partitions, topology=topology,
                                        forwarder=forwarder, deadletter_topic=deadletter_topic,
                                        holds_too_much=self._holds_too_much)
        self.checkpoint = Checkpoint(
            registry=self.registry, assignment=self.assignment, runtime=self.runtime,
            transactions=SlotTransactions(app, group_id=app.conf.id),
            commit_linger_ms=commit_linger_ms, commit_max_events=commit_max_events,
            commit_max_records=commit_max_records, forgotten=self._forgotten,
            fail=self._fail)
        self.timers = Timers(app, registry=self.registry, assignment=self.assignment,
                             checkpoint=self.checkpoint, ready=lambda: self.ready)
        self.barriers = Barriers(connection, run_in_partition=self.timers.run_in_partition)
        self.add_dependency(self.barriers)
        self.topic_barriers = TopicBarriers(connection, group_id=app.conf.id,
                                            partitions=partitions,
                                            run_in_partition=self.timers.run_in_partition)
        self.add_dependency(self.topic_barriers)
        self.stop_commit_timeout_s = 15.0
        self.events_processed = 0
        self._crash: asyncio.Future | None = None
        # Why this worker must restart from committed state; the command running the
        # worker ends the process on it (`on_failure`).
        self.failure: BaseException | None = None
        self.on_failure: Callable[[BaseException], None] | None = None
        self.running = asyncio.Event()
        self.running.set()
        app.on_partitions_revoked.connect(self._on_partitions_revoked)
        app.on_partitions_assigned.connect(self._on_partitions_assigned)

    # -- wiring (before the worker starts): registration.py -------------------------

    def state_table(self, name: str, *, encode: Callable[[Any], bytes],
                    decode: Callable[[bytes], Any]) -> StateTable:
        return self.registry.state_table(name, encode=encode, decode=decode)

    def pipeline(self, name: str, handlers: dict[str, Handler], ticks: Iterable[Tick] = (),
                 *, outputs: Iterable[str] = (), tables: Iterable[StateTable] = ()) -> None:
        """Run `handlers` (topic -> handler) on the engine and `ticks` every tick;
        `outputs` (the topics they send to) and `tables` are kept in `pipelines`."""
        self.registry.pipeline(name, handlers, ticks, outputs=outputs, tables=tables)

    def catch_up(self, topics: Iterable[str], hook: Hook) -> CatchUp:
        """A barrier over `topics`: handlers ask it for tickets; `hook(ctx, ticket)` runs in
        the partition once each of those topics is read as far as it reached after the ask."""
        return self.barriers.add(topics, hook)

    def after_handled(self, topic: str, hook: Hook) -> TopicBarrier:
        """A barrier over every partition of `topic`: handlers ask it for tickets;
        `hook(ctx, ticket)` runs in the partition once the engine's group has handled each
        partition of the topic as far as it reached after the ask (handled.py)."""
        return self.topic_barriers.add(topic, hook)

    def gate(self, is_open: Callable[[], bool]) -> None:
        """Hold processing until `is_open()` (e.g. configuration caught up); gates stay open."""
        self.registry.gate(is_open)

    @property
    def handlers(self) -> dict[str, Handler]:
        return self.registry.handlers

    @property
    def tables(self) -> list[StateTable]:
        return self.registry.tables

    @property
    def pipelines(self) -> dict[str, Pipeline]:
        """What each pipeline reads, writes and keeps, as registered."""
        return self.registry.pipelines

    @property
    def ready(self) -> bool:
        return self.registry.ready(self.started)

    @property
    def tick_interval_s(self) -> float:
        return self.timers.tick_interval_s

    # -- processing -------------------------------------------------------

    @property
    def may_deliver(self) -> bool:
        return self.running.is_set() and self.ready

    def deliver(self, message) -> bool:
        """Run one fetched message through its topic's handler (only while `may_deliver`).

        True when so much is uncommitted that the caller must `await relieve()`.
        """
        checkpoint = self.checkpoint
        partition = message.partition
        if (message.generation_id != self.app.consumer_generation_id
                or partition in checkpoint.lost):
            return False  # fetched before a rebalance; whoever owns it now reprocesses it
        context = checkpoint.context(partition)
        context.message = message
        context.now_ms = int(time.time() * 1000)
        try:
            self.registry.handlers[message.topic](context, message.key, message.value)
        except InvalidEvent as exc:
            context.dead_letter(str(exc))
        except Exception as exc:
            logger.exception("handler for %s failed at %s:%s", message.topic, partition,
                             message.offset)
            context.dead_letter(f"internal error: {exc!r}")
        work = context.work
        work.offsets[message.topic] = message.offset + 1
        work.events += 1
        self.events_processed += 1
        checkpoint.pending_events += 1
        checkpoint.count_records(context)
        checkpoint.work_added(work)
        if checkpoint.urgent:
            checkpoint.commits_due.set()
            return checkpoint.overloaded
        return False

    async def relieve(self) -> None:
        """Wait until processing may go on: resumed, ready, uncommitted work bounded."""
        while not self.ready:
            await asyncio.sleep(0.05)
        await self.running.wait()  # paused by an operator: the backlog waits in Kafka
        if self.checkpoint.overloaded:
            await self.checkpoint.commit_all()

    def _holds_too_much(self, uncounted: int) -> bool:
        return self.checkpoint.holds_too_much(uncounted)

    # -- committing: checkpoint.py -------------------------------------------------------

    @Service.task
    async def _commit_loop(self) -> None:
        await self.checkpoint.run(lambda: self.should_stop)

    async def commit_all(self) -> None:
        """Commit the work of every partition; returns when all of it is durable (or lost)."""
        await self.checkpoint.commit_all()

    @property
    def largest_commit(self) -> int:
        """Records (outputs and changelog) in one transaction, at most."""
        return self.checkpoint.largest_commit

    @property
    def records_committed(self) -> int:
        return self.checkpoint.records_committed

    @property
    def commit_times(self) -> Histogram:
        """Ms from a transaction's start to its commit."""
        return self.checkpoint.commit_times

    @property
    def deadletter_topic(self) -> str:
        return self.runtime.deadletter_topic

    @property
    def dead_letters(self) -> int:
        return self.runtime.dead_letters

    @property
    def dead_letter_reasons(self) -> Counter[str]:
        return self.runtime.dead_letter_reasons

    def _fail(self, cause: BaseException) -> None:
        """Crash the app and hand `cause` to `on_failure`, once.

        Faust's crash only marks its services crashed: the process goes on
        running, holding its partitions without processing them
        (robinhood/faust#301). So whoever runs the worker ends the process.
        """
        if self.failure is not None:
            return
        self.failure = cause
        self._crash = asyncio.ensure_future(self.app.crash(cause))
        if self.on_failure is not None:
            self.on_failure(cause)

    # -- rebalancing: assignment.py ---------------------------------------------------

    def owned_share(self) -> float:
        """This worker's part of the partitions (0 to 1), e.g. for its share of a rate."""
        return self.assignment.owned_share()

    async def start_slot_producers(self, assigned: Iterable) -> None:
        """Fence and start the slots of the partitions just assigned (before table recovery)."""
        anchor = self.registry.anchor_topic
        if anchor is not None:
            owned = {tp.partition for tp in assigned if tp.topic == anchor}
            await self.checkpoint.transactions.start_slot_producers(owned, self.partitions,
                                                                    anchor)

    async def _on_partitions_revoked(self, sender: Any, revoked: Iterable, **_: Any) -> None:
        # Commit what is done so the next owner does not redo it, then forget the rest.
        with contextlib.suppress(Exception):
            await self.checkpoint.commit_all()
        anchor = self.registry.anchor_topic
        for partition in {tp.partition for tp in revoked if tp.topic == anchor}:
            self.checkpoint.forget(partition)

    def _forgotten(self, partition: int) -> None:
        """A partition's uncommitted work is gone: so are its caches and barrier tickets."""
        self.runtime.forget_caches(partition)
        self.barriers.forget([partition])
        self.topic_barriers.forget({partition})

    async def _on_partitions_assigned(self, sender: Any, assigned: Iterable, **_: Any) -> None:
        anchor = self.registry.anchor_topic
        partitions = {tp.partition for tp in assigned if tp.topic == anchor}
        self.checkpoint.lost -= partitions
        for partition in partitions:
            self.runtime.forget_caches(partition)
        self.barriers.forget(partitions)
        self.topic_barriers.forget(partitions)

    # -- timers: timers.py ---------------------------------------------------------------

    @Service.task
    async def _tick_loop(self) -> None:
        await self.timers.run(lambda: self.should_stop)

    async def on_stop(self) -> None:
        # A commit that keeps failing (broker gone) would retry for ever and the
        # worker would never stop; what is left uncommitted is handled again from
        # the committed offsets by whoever owns the partition next.
        try:
            await asyncio.wait_for(self.checkpoint.commit_all(), self.stop_commit_timeout_s)
        except TimeoutError:
            logger.warning("stopping with uncommitted work after %.0fs of commit attempts; "
                           "it will be processed again from the committed offsets",
                           self.stop_commit_timeout_s)
            self.checkpoint.cancel_commits()
        except Exception:
            logger.exception("last commit before stopping failed")
