"""The engine: runs handlers over partitioned events and commits each partition exactly once.

Agents hand their streams to `Engine.consume`; for every event the engine
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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka.errors import KafkaError
from mode import Service

from app.domain.metrics import Histogram
from app.engine.catchup import Barriers, CatchUp
from app.engine.context import Context, PartitionWork
from app.engine.forwarding import Forwarder
from app.engine.handled import TopicBarrier, TopicBarriers
from app.engine.pipelines import Pipeline
from app.engine.slots import Slot, commit_slots
from app.engine.state import DELETED, StateTable
from app.engine.transactions import PartitionLost, Record, SlotTransactions, compact
from app.kafka.connection import KafkaConnection
from app.kafka.topology import Topology
from app.records.fields import InvalidEvent

logger = logging.getLogger(__name__)

Handler = Callable[["Context", bytes | None, bytes | None], None]
Tick = Callable[["Context"], None]


class Engine(Service):
    """Partitioned, transactional processing shared by all agents of a worker."""

    def __init__(self, app, *, connection: KafkaConnection, topology: Topology,
                 partitions: int, deadletter_topic: str, commit_linger_ms: int,
                 commit_max_events: int, commit_max_records: int,
                 rocksdb_options: dict[str, int],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.forwarder = Forwarder(connection, client_id=app.conf.id)
        self.add_dependency(self.forwarder)
        self.barriers = Barriers(connection, run_in_partition=self._run_in_partition)
        self.add_dependency(self.barriers)
        self.topic_barriers = TopicBarriers(connection, group_id=app.conf.id,
                                            partitions=partitions,
                                            run_in_partition=self._run_in_partition)
        self.add_dependency(self.topic_barriers)
        self.topology = topology
        self.partitions = partitions
        self.rocksdb_options = rocksdb_options
        self.deadletter_topic = deadletter_topic
        self.linger_s = commit_linger_ms / 1000
        self.max_events = commit_max_events
        self.max_records = commit_max_records
        self.transactions = SlotTransactions(app, group_id=app.conf.id)
        self.handlers: dict[str, Handler] = {}
        self.pipelines: dict[str, Pipeline] = {}
        self.anchor_topic: str | None = None
        self.ticks: list[Tick] = []
        self.tick_interval_s = 0.25
        self._assigned_cache: tuple[Any, set[int], dict[int, Slot]] | None = None
        self.stop_commit_timeout_s = 15.0
        self.gates: list[Callable[[], bool]] = []
        self._opened = False
        self.tables: list[StateTable] = []
        self.dead_letters = 0
        self.dead_letter_reasons: Counter[str] = Counter()
        self.events_processed = 0
        self.largest_commit = 0  # records (outputs and changelog) in one transaction, at most
        self.records_committed = 0
        self.commit_times = Histogram()  # ms from a transaction's start to its commit
        self._pending: dict[int, PartitionWork] = {}
        self._contexts: dict[int, Context] = {}
        self._committing: dict[int, PartitionWork] = {}
        self._caches: dict[int, dict[Callable, Any]] = {}
        self._lost: set[int] = set()
        self._crash: asyncio.Future | None = None
        # Why this worker must restart from committed state; the command running the
        # worker ends the process on it (`on_failure`).
        self.failure: BaseException | None = None
        self.on_failure: Callable[[BaseException], None] | None = None
        self._pending_events = 0
        # Output records held in memory: of the work not committing yet, and of the commits
        # under way. Billing makes about 20 per event, and a timer or hook can make
        # thousands in one run, so events alone do not bound them.
        self._pending_records = 0
        self._committing_records = 0
        self._inflight: dict[int, asyncio.Task] = {}  # partition -> its slot's commit
        self._commits_due = asyncio.Event()
        self.running = asyncio.Event()
        self.running.set()
        app.on_partitions_revoked.connect(self._on_partitions_revoked)
        app.on_partitions_assigned.connect(self._on_partitions_assigned)

    # -- wiring (before the worker starts) ------------------------------------

    def state_table(self, name: str, *, encode: Callable[[Any], bytes],
                    decode: Callable[[bytes], Any]) -> StateTable:
        table = self.app.Table(name, partitions=self.partitions, key_type=bytes,
                               value_type=bytes, options=self.rocksdb_options,
                               help=f"engine state: {name}")
        # Faust would pick json for bytes; the changelog carries our own encoding.
        table.key_serializer = table.value_serializer = "raw"
        state = StateTable(name, table, encode, decode)
        self.tables.append(state)
        return state

    def pipeline(self, name: str, handlers: dict[str, Handler], ticks: Iterable[Tick] = (),
                 *, outputs: Iterable[str] = (), tables: Iterable[StateTable] = ()) -> None:
        """Run `handlers` (topic -> handler) on the engine and `ticks` every tick;
        `outputs` (the topics they send to) and `tables` are kept in `pipelines`.

        A Faust agent named `name` declares the topics, which is what makes Faust
        subscribe to them; its messages come to `deliver` (see internals.py). The
        topics are read as raw bytes with `acks=False`, which keeps Faust from
        committing their offsets: the engine commits them inside each
        partition's transaction.
        """
        for topic, handler in handlers.items():
            if topic in self.handlers:
                raise ValueError(f"{topic} has a handler already; one pipeline per topic")
            self.handlers[topic] = handler
            self.anchor_topic = self.anchor_topic or topic
        self.ticks.extend(ticks)
        self.pipelines[name] = Pipeline(name, tuple(handlers), tuple(outputs),
                                        tuple(table.name for table in tables))
        source = self.app.topic(*handlers, key_type=bytes, value_type=bytes,
                                key_serializer="raw", value_serializer="raw", acks=False)

        async def consume(stream) -> None:
            await self.wait_until_stopped()

        self.app.agent(source, name=name)(consume)

    def catch_up(self, topics: Iterable[str], hook: Callable[[Context, int], None]) -> CatchUp:
        """A barrier over `topics`: handlers ask it for tickets; `hook(ctx, ticket)` runs in
        the partition once each of those topics is read as far as it reached after the ask."""
        return self.barriers.add(topics, hook)

    def after_handled(self, topic: str, hook: Callable[[Context, int], None]) -> TopicBarrier:
        """A barrier over every partition of `topic`: handlers ask it for tickets;
        `hook(ctx, ticket)` runs in the partition once the engine's group has handled each
        partition of the topic as far as it reached after the ask (handled.py)."""
        return self.topic_barriers.add(topic, hook)

    def gate(self, is_open: Callable[[], bool]) -> None:
        """Hold processing until `is_open()` (e.g. configuration caught up); gates stay open."""
        self.gates.append(is_open)

    @property
    def ready(self) -> bool:
        # Asked before every message: once open, the gates are not asked again.
        if not self._opened:
            self._opened = self.started and all(is_open() for is_open in self.gates)
        return self._opened

    # -- processing -------------------------------------------------------

    @property
    def may_deliver(self) -> bool:
        return self.running.is_set() and self.ready

    def deliver(self, message) -> bool:
        """Run one fetched message through its topic's handler (only while `may_deliver`).

        True when so much is uncommitted that the caller must `await relieve()`.
        """
        partition = message.partition
        if message.generation_id != self.app.consumer_generation_id or partition in self._lost:
            return False  # fetched before a rebalance; whoever owns it now reprocesses it
        context = self._context(partition)
        context.message = message
        context.now_ms = int(time.time() * 1000)
        try:
            self.handlers[message.topic](context, message.key, message.value)
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
        self._pending_events += 1
        self._count_records(context)
        self._work_added(work)
        if self._commit_urgent:
            self._commits_due.set()
            return self._overloaded
        return False

    async def relieve(self) -> None:
        """Wait until processing may go on: resumed, ready, uncommitted work bounded."""
        while not self.ready:
            await asyncio.sleep(0.05)
        await self.running.wait()  # paused by an operator: the backlog waits in Kafka
        if self._overloaded:
            await self.commit_all()

    @property
    def _commit_urgent(self) -> bool:
        return (self._pending_events >= self.max_events
                or self._pending_records + self._committing_records >= self.max_records)

    @property
    def _overloaded(self) -> bool:
        """So much is uncommitted that reading stops until it is committed."""
        return (self._pending_events >= 3 * self.max_events
                or self._pending_records + self._committing_records >= 3 * self.max_records)

    def holds_too_much(self, uncounted: int) -> bool:
        """Whether the worker holds `max_records` output records not committed yet (those
        of commits under way and `uncounted` more of the running handler included): a
        timer or hook that could produce much at once stops there and leaves the rest for
        its next run."""
        held = self._pending_records + self._committing_records + uncounted
        return held >= self.max_records

    def _count_records(self, context: Context) -> None:
        records = len(context.work.records)
        self._pending_records += records - context.counted
        context.counted = records

    def _context(self, partition: int) -> Context:
        context = self._contexts.get(partition)
        if context is None:
            work = self._pending[partition] = PartitionWork()
            context = self._contexts[partition] = Context(
                self, partition, work, self._committing.get(partition))
        return context

    def partition_cache(self, context: Context, factory: Callable[[Context], Any]) -> Any:
        caches = self._caches.setdefault(context.partition, {})
        value = caches.get(factory)
        if value is None:
            value = caches[factory] = factory(context)
        return value

    # -- committing ---------------------------------------------------------

    def _work_added(self, work: PartitionWork) -> None:
        if not work.since:
            work.since = time.monotonic()
            self._commits_due.set()

    @Service.task
    async def _commit_loop(self) -> None:
        """Commit each slot on its own as soon as its work is due and its last commit done.

        Work is due when its oldest part has lingered `linger_s` or when the
        worker holds `max_events` uncommitted events or `max_records` uncommitted
        output records. A slot never waits for
        another's transaction, so one slow commit delays only its own
        partitions' results.
        """
        while not self.should_stop:
            await self._commits_due.wait()
            self._commits_due.clear()
            wait = self._start_due_commits()
            if wait is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._commits_due.wait(), wait)
                self._commits_due.set()

    def _start_due_commits(self) -> float | None:
        """Start the commits that are due; seconds until the next one is (None: none waits)."""
        now = time.monotonic()
        urgent = self._commit_urgent
        next_due: float | None = None
        for partition, work in list(self._pending.items()):
            if not work:
                continue
            slot = self._slot_of(partition)
            if self._committing_now(slot):
                continue  # including the slot whose commit this loop just started
            due = work.since + self.linger_s
            if urgent or due <= now:
                self._start_commit(slot)
            elif next_due is None or due < next_due:
                next_due = due
        return None if next_due is None else max(next_due - now, 0.0)

    def _committing_now(self, slot: Slot) -> bool:
        inflight = self._inflight
        for partition in range(*slot):
            task = inflight.get(partition)
            if task is not None and not task.done():
                return True
        return False

    def _start_commit(self, slot: Slot) -> None:
        works: dict[int, PartitionWork] = {}
        for partition in range(*slot):
            work = self._pending.get(partition)
            if not work:
                continue
            del self._pending[partition]
            self._contexts.pop(partition, None)
            self._pending_events -= work.events
            self._pending_records -= len(work.records)
            self._committing_records += len(work.records)
            self._committing[partition] = works[partition] = work
        task = asyncio.ensure_future(self._commit_slot(slot, works))
        for partition in works:
            self._inflight[partition] = task
        task.add_done_callback(self._commit_done)

    def _commit_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("commit failed unexpectedly; restarting the worker",
                         exc_info=task.exception())
            self._fail(task.exception())
        self._commits_due.set()  # its slot's next work may be due already

    async def commit_all(self) -> None:
        """Commit the work of every partition; returns when all of it is durable (or lost)."""
        # The second round commits what waited for a commit running at the first.
        for _round in range(2):
            for slot in {self._slot_of(p) for p, work in self._pending.items() if work}:
                if not self._committing_now(slot):
                    self._start_commit(slot)
            running = {task for task in self._inflight.values() if not task.done()}
            if running:
                await asyncio.wait(running)

    async def _commit_slot(self, slot: Slot, works: dict[int, PartitionWork]) -> None:
        # Encoded once: the same bytes go to the changelog and, after the commit, to RocksDB.
        records: list[Record] = []
        changelogs: list[tuple[int, StateTable, list, int]] = []  # rows and where they start
        offsets: dict[tuple[str, int], int] = {}
        forwarded: list[asyncio.Future] = []
        for partition, work in works.items():
            records += work.records
            for table, writes in work.overlay.writes.items():
                rows = [(key, None if value is DELETED else compact(table.encode(value)))
                        for key, value in writes.items()]
                changelogs.append((partition, table, rows, len(records)))
                topic = table.changelog_topic
                records += [Record(topic, partition, key, raw) for key, raw in rows]
            for topic, offset in work.offsets.items():
                offsets[topic, partition] = offset
            forwarded += work.forwarded
        self.largest_commit = max(self.largest_commit, len(records))
        try:
            await asyncio.gather(*forwarded)
        except Exception as exc:  # the forwarder failed: its records may be lost
            self._lose(works, exc)
            return
        delay = 0.1
        started = time.monotonic()
        while True:
            try:
                written = await self.transactions.commit(
                    slot, self.anchor_topic or "", records, offsets)
                break
            except PartitionLost as exc:
                self._lose(works, exc)
                return
            except KafkaError as exc:
                if not self._assigned_partitions().issuperset(works):
                    self._lose(works, exc)
                    return
                logger.warning("commit of partitions %s failed (%r); retrying in %.1fs",
                               sorted(works), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.commit_times.record(int((time.monotonic() - started) * 1000))
        self.records_committed += len(records)
        for partition, table, rows, start in changelogs:
            table.apply(partition, rows, max(written[start:start + len(rows)]))
        for partition, work in works.items():
            if self._committing.get(partition) is work:
                del self._committing[partition]
                self._committing_records -= len(work.records)
            context = self._contexts.get(partition)
            if context is not None and context.committing is work:
                context.committing = None  # its records no longer count as held back

    def _lose(self, works: dict[int, PartitionWork], cause: BaseException) -> None:
        """Forget all uncommitted work of partitions this worker may no longer write."""
        assigned = self._assigned_partitions()
        for partition in works:
            self._forget(partition)
        still_owned = sorted(set(works) & assigned)
        if still_owned:
            logger.error("partitions %s lost while still assigned (%r); restarting the worker "
                         "so it recovers from committed state", still_owned, cause)
            self._lost.update(still_owned)
            self._fail(cause)
        else:
            logger.info("dropped uncommitted work of revoked partitions %s", sorted(works))

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

    # -- rebalancing --------------------------------------------------------

    def owned_share(self) -> float:
        """This worker's part of the partitions (0 to 1), e.g. for its share of a rate."""
        return len(self._assigned_partitions()) / self.partitions

    def _assigned_partitions(self) -> set[int]:
        return self._assignment()[1]

    def _slot_of(self, partition: int) -> Slot:
        """The slot `partition` commits in (itself alone once it is not assigned here)."""
        return self._assignment()[2].get(partition) or (partition, partition + 1)

    def _assignment(self) -> tuple[Any, set[int], dict[int, Slot]]:
        # Asked per partition and tick: Faust builds the whole assignment (every topic's
        # partitions) for each question, so the answer is kept until it assigns anew.
        assignor = self.app.assignor
        assignment = getattr(assignor, "_assignment", None)
        cached = self._assigned_cache
        if cached is not None and assignment is not None and cached[0] is assignment:
            return cached
        anchor = self.anchor_topic
        partitions = {tp.partition for tp in assignor.assigned_actives() if tp.topic == anchor}
        self._assigned_cache = (assignment, partitions, commit_slots(partitions, self.partitions))
        return self._assigned_cache

    async def start_slot_producers(self, assigned: Iterable) -> None:
        """Fence and start the slots of the partitions just assigned (before table recovery)."""
        if self.anchor_topic is not None:
            owned = {tp.partition for tp in assigned if tp.topic == self.anchor_topic}
            await self.transactions.start_slot_producers(owned, self.partitions,
                                                         self.anchor_topic)

    async def _on_partitions_revoked(self, sender: Any, revoked: Iterable, **_: Any) -> None:
        # Commit what is done so the next owner does not redo it, then forget the rest.
        with contextlib.suppress(Exception):
            await self.commit_all()
        for partition in {tp.partition for tp in revoked if tp.topic == self.anchor_topic}:
            self._forget(partition)

    def _forget(self, partition: int) -> None:
        work = self._pending.pop(partition, None)
        if work is not None:
            self._pending_events -= work.events
            self._pending_records -= len(work.records)
        self._contexts.pop(partition, None)
        committing = self._committing.pop(partition, None)
        if committing is not None:
            self._committing_records -= len(committing.records)
        self._caches.pop(partition, None)
        self.barriers.forget([partition])
        self.topic_barriers.forget({partition})

    async def _on_partitions_assigned(self, sender: Any, assigned: Iterable, **_: Any) -> None:
        partitions = {tp.partition for tp in assigned if tp.topic == self.anchor_topic}
        self._lost -= partitions
        for partition in partitions:
            self._caches.pop(partition, None)
        self.barriers.forget(partitions)
        self.topic_barriers.forget(partitions)

    # -- timers -----------------------------------------------------------------

    @Service.task
    async def _tick_loop(self) -> None:
        while not self.should_stop:
            await asyncio.sleep(self.tick_interval_s)
            if not self.ticks or not self._may_tick():
                continue
            for partition in sorted(self._assigned_partitions() - self._lost):
                for tick in self.ticks:
                    self._run_in_partition(partition, tick)

    def _run_in_partition(self, partition: int, action: Tick) -> bool:
        """Run a timer or a barrier's hook in `partition`, its work committed like an event's;
        False when the partition cannot run it now (not ready, rebalancing, not owned)."""
        if (not self._may_tick() or partition in self._lost
                or partition not in self._assigned_partitions()):
            return False
        context = self._context(partition)
        context.message = None
        context.now_ms = int(time.time() * 1000)
        try:
            action(context)
        except Exception:
            logger.exception("timer or hook %s of partition %s failed",
                             getattr(action, "__name__", action), partition)
        self._count_records(context)
        work = context.work
        if work:
            self._work_added(work)
            if self._commit_urgent:
                self._commits_due.set()
        return True

    def _may_tick(self) -> bool:
        app = self.app
        return (self.ready and not app.rebalancing and app.flow_control.is_active()
                and app.tables.recovery.completed.is_set())

    async def on_stop(self) -> None:
        # A commit that keeps failing (broker gone) would retry for ever and the
        # worker would never stop; what is left uncommitted is handled again from
        # the committed offsets by whoever owns the partition next.
        try:
            await asyncio.wait_for(self.commit_all(), self.stop_commit_timeout_s)
        except TimeoutError:
            logger.warning("stopping with uncommitted work after %.0fs of commit attempts; "
                           "it will be processed again from the committed offsets",
                           self.stop_commit_timeout_s)
            for task in self._inflight.values():
                task.cancel()  # an open transaction is aborted by the broker or the next owner
        except Exception:
            logger.exception("last commit before stopping failed")
