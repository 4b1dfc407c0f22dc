"""Every use of Faust's and aiokafka's private parts, in one place.

The engine needs a few things neither library exposes: the direct path from
the consumer's fetch loop to the engine's handlers, aiokafka's per-partition
fetch state (positions, last stable offsets, fetch times), Faust's
transactional producers by id, RocksDB by partition, and three fixes of
faust-streaming 0.15 behaviour that would lose events or stall recovery.
All of it is here, and `PRIVATE_ATTRIBUTES` lists every private name used;
`missing()` names those an upgrade removed (tests/test_internals.py fails on
any, and `require()` stops a worker at start instead of failing later).
Faust and aiokafka are capped below their next minor versions in
pyproject.toml for this reason; after an upgrade, run that test first.

## Direct delivery
Fetched messages go straight to the engine instead of through Faust's streams.

Faust hands every fetched message to its conductor, which wraps it in an
event, queues it on each subscribed channel and wakes the agent's stream,
which yields it back to the agent: several tasks and futures per message,
about half of the worker's CPU in `cps bench` (see BENCHMARKS.md). The
engine's handlers are synchronous, so the consumer's fetch loop can call
them itself. Agents still declare the topics the engine reads, which is
what makes Faust subscribe to them; a topic without an engine handler keeps
Faust's usual path. Offsets, the generation check and flow control stay as
Faust keeps them: `getmany` stops yielding when a rebalance begins, and the
engine drops what was fetched for an older generation.

Between two fetched batches, when everything the consumer handed out has
been handled, the loop tells the engine's catch-up barriers how far the
consumer has read the partitions they wait on; and the barriers read the
end offsets the consumer's fetches reported (see catchup.py).

## Slot producers and slot-aligned assignments
Faust starts a transactional producer per assigned partition when it
assigns, before table recovery; the engine starts the producers of its
larger slots (see slots.py) right after, in the same call. Faust's
assignor spreads partitions round robin (two workers get 0, 2, 4, 6 and 1,
3, 5, 7: no whole slot); the leader's assignor then lays each worker's
share out as contiguous ranges instead (`SlotAlignedAssignor`), so workers
commit in whole slots. Only without standby replicas: Faust places
standbys against its own layout of the actives.

## Fetch batching
Faust asks the broker to answer a fetch as soon as one byte is there. Live,
every fetch then carries a few records, and each costs the same Python
work for every assigned partition of every topic; `batch_fetches` lets the
broker gather up to 1 MiB for `CPS_FETCH_MAX_WAIT_MS` instead.

## Fetch sessions
aiokafka names every partition it reads from a broker in every fetch, and
parses an answer listing them all, about 40 times a second while live
(`CPS_FETCH_MAX_WAIT_MS`). `SessionFetcher` sends the same fetches as
incremental fetch sessions (fetch_session.py): each names only what changed
and the answer lists only partitions with something new. For a partition an
answer leaves out it notes, as aiokafka does for one listed with nothing new,
that it was fetched then: its ends are those of its last report.

## Transaction pacing
After a commit the broker writes the transaction's markers before it lets
the same producer add partitions again, and aiokafka waits a fixed 20 ms
(`BACKOFF_OVERRIDE`) before asking again. A slot commits back to back, so
nearly every transaction waited that long: `CONCURRENT_TRANSACTIONS_RETRY_S`
asks again sooner (BENCHMARKS.md, issue 17).

## RocksDB memory
Faust opens each table partition's RocksDB with a block cache and write
buffers of its own; `share_rocksdb_memory` gives them all one budget
(`CPS_ROCKSDB_MEMORY_MB`).

## One collection per rebalance
Faust's RocksDB store runs a full garbage collection after revoking a
table's partitions, even when there were none: 17 tables, about 70 ms each
in a worker with its state loaded, all inside the assignment callback,
during which aiokafka sends no heartbeat (a callback longer than the
session timeout costs the member its place and a second rebalance). The
stores drop their databases as before; one collection follows the tables'
rebalance, and only if a database was dropped.

## Fixes
Targeted fixes of faust-streaming 0.15 behaviour that would lose events.

Applied once per process (`apply_fixes`). Each fix names the symptom it
prevents; remove a fix when the pinned Faust version no longer needs it.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import time
import weakref
from functools import partial
from typing import Any

import rocksdict
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.consumer import consumer as aiokafka_consumer_module
from aiokafka.consumer.fetcher import Fetcher as AIOKafkaFetcher
from aiokafka.consumer.subscription_state import SubscriptionState, TopicPartitionState
from aiokafka.producer import sender as aiokafka_sender
from aiokafka.producer.sender import Sender
from aiokafka.protocol.fetch import FetchRequest
from faust.assignor import partition_assignor
from faust.assignor.copartitioned_assignor import CopartitionedAssignor
from faust.stores.rocksdb import RocksDBOptions
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import (
    CONSUMER_FETCHING,
    Consumer,
    Fetcher,
    ThreadDelegateConsumer,
    TransactionManager,
)
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Producer as FaustProducer

from app.engine.fetch_session import FetchSession
from app.engine.slots import aligned_assignment

logger = logging.getLogger(__name__)

YIELD_EVERY = 200  # messages between two turns of the event loop (commits, HTTP)
_POLL_S = 0.1
# Markers of a transaction over a few dozen partitions take a few milliseconds on a
# local broker; each early retry costs one small AddPartitionsToTxn request.
CONCURRENT_TRANSACTIONS_RETRY_S = 0.002
_WATCHERS: set[asyncio.Future] = set()

# (owner, name): every private method or attribute this module reads, calls or replaces.
PRIVATE_ATTRIBUTES: tuple[tuple[type, str], ...] = (
    (Consumer, "_drain_messages"),
    (TransactionManager, "on_rebalance"),
    (partition_assignor, "CopartitionedAssignor"),
    (CopartitionedAssignor, "_client_assignments"),
    (Consumer, "_stopped"),
    (Consumer, "_read_offset"),
    (Consumer, "_committed_offset"),
    (Consumer, "_is_changelog_tp"),
    (ThreadDelegateConsumer, "_thread"),
    (Fetcher, "_stopped"),
    (AIOKafkaConsumerThread, "_highwaters"),
    (AIOKafkaConsumerThread, "_ensure_consumer"),
    (AIOKafkaConsumerThread, "_consumer"),
    (AIOKafkaConsumerThread, "_create_worker_consumer"),
    (AIOKafkaConsumer, "_fetch_min_bytes"),
    (AIOKafkaConsumer, "_fetch_max_wait_ms"),
    (AIOKafkaConsumer, "_subscription"),
    (Recovery, "_set_recovery_ended"),
    (FaustProducer, "_transaction_producers"),
    (FaustProducer, "_trn_locks"),
    (FaustProducer, "_new_producer"),
    (FaustProducer, "_ensure_producer"),
    (AIOKafkaProducer, "_txn_manager"),
    (AIOKafkaProducer, "_sender"),
    (Sender, "sender_task"),
    (aiokafka_sender, "BACKOFF_OVERRIDE"),
    (RocksDBStore, "_db_for_partition"),
    (RocksDBStore, "_dbs"),
    (aiokafka_consumer_module, "Fetcher"),
    (AIOKafkaFetcher, "_get_actions_per_node"),
    (AIOKafkaFetcher, "_proc_fetch_request"),
    (AIOKafkaFetcher, "_client"),
    (AIOKafkaFetcher, "_fetch_max_wait_ms"),
    (AIOKafkaFetcher, "_fetch_min_bytes"),
    (AIOKafkaFetcher, "_fetch_max_bytes"),
    (AIOKafkaFetcher, "_isolation_level"),
    (AIOKafkaFetcher, "_client_rack"),
    (SubscriptionState, "subscription"),
    (TopicPartitionState, "timestamp"),
    (TopicPartitionState, "lso"),
    (TopicPartitionState, "has_valid_position"),
    (TopicPartitionState, "position"),
)


def missing() -> list[str]:
    """`Owner.name` of every private attribute the installed libraries no longer have."""
    return [f"{owner.__module__}.{owner.__qualname__}.{name}"
            for owner, name in PRIVATE_ATTRIBUTES if not _has(owner, name)]


def require() -> None:
    gone = missing()
    if gone:
        raise RuntimeError("this Faust/aiokafka version lacks what the engine relies on: "
                           + ", ".join(gone) + " (see app/engine/faust/internals.py)")


def _has(owner: type, name: str) -> bool:
    if hasattr(owner, name):
        return True
    # Attributes set on instances: look for the assignment in the class's own code.
    for klass in owner.__mro__:
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if f"self.{name} =" in source or f"self.{name}:" in source:
            return True
    return False


# -- direct delivery -------------------------------------------------------------------------

# Each app's engine; the consumer class is patched once for every app of the process.
_ENGINES: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def deliver_to(engine: Any) -> None:
    """Make the consumer of `engine.app` hand the engine's topics to `engine` directly,
    and start the engine's slot producers where Faust starts its transactional ones."""
    _ENGINES[engine.app] = engine
    if Consumer._drain_messages is not _drain:
        Consumer._drain_messages = _drain
    if TransactionManager.on_rebalance is not _start_transactions:
        TransactionManager.on_rebalance = _start_transactions
    partition_assignor.CopartitionedAssignor = SlotAlignedAssignor


_faust_on_rebalance = TransactionManager.on_rebalance


class SlotAlignedAssignor(CopartitionedAssignor):
    """Faust's assignment of a copartitioned group, each client's share made contiguous."""

    def get_assignment(self) -> Any:
        previous = {client: set(assignment.actives)
                    for client, assignment in self._client_assignments.items()}
        assignments = super().get_assignment()
        if self.replicas:
            return assignments
        counts = {client: len(assignment.actives) for client, assignment in assignments.items()}
        for client, actives in aligned_assignment(counts, previous,
                                                  self.num_partitions).items():
            assignments[client].actives = actives
        return assignments


async def _start_transactions(self: TransactionManager, assigned: Any, revoked: Any,
                              newly_assigned: Any) -> None:
    # Faust calls this on every assignment before table recovery: the moment a new
    # owner must fence its partitions' earlier writers (see slots.py).
    await _faust_on_rebalance(self, assigned, revoked, newly_assigned)
    engine = _ENGINES.get(self.app)
    if engine is not None:
        await engine.start_slot_producers(assigned)


def engine_of(app: Any) -> Any:
    """The engine whose handlers `app`'s consumer feeds."""
    return _ENGINES[app]


async def _drain(self: Consumer, fetcher: Any) -> None:
    engine = _ENGINES[self.app]
    handled = engine.handlers
    barriers = engine.barriers
    barriers.read_fetched_ends = partial(fetched_ends, self)
    getmany = self.getmany
    callback = self.callback
    consumer_stopped = self._stopped.is_set
    fetcher_stopped = fetcher._stopped.is_set
    read_offset = self._read_offset
    since_yield = 0
    try:
        while not (consumer_stopped() or fetcher_stopped()):
            self.diag.set_flag(CONSUMER_FETCHING)
            await self.sleep(0)
            if self.should_stop:
                continue
            async for tp, message in getmany(timeout=1.0):
                offset = message.offset
                seen = read_offset[tp]
                if seen is not None and offset < seen:
                    continue  # fetched again after a seek: already handled
                if message.topic in handled:
                    if not engine.may_deliver:
                        await engine.relieve()
                    if engine.deliver(message):
                        await engine.relieve()
                    since_yield += 1
                    if since_yield >= YIELD_EVERY:
                        since_yield = 0
                        await asyncio.sleep(0)
                else:
                    await self.wait_first(callback(message), self.suspend_flow.wait())
                read_offset[tp] = offset
            if barriers.watching and self.flow_active:
                barriers.note_positions(consumed_positions(self, barriers.watched()))
            self.diag.unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            return
        raise
    finally:
        self.diag.unset_flag(CONSUMER_FETCHING)


def consumed_positions(consumer: Consumer, partitions: list[tuple[str, int]]
                       ) -> dict[tuple[str, int], int]:
    """aiokafka's position in each assigned partition: the offset after the last record it
    handed out, and after any transaction marker or aborted record it skipped there.

    Asked between two `getmany` calls, when it stands still and every record
    before it has been handled. aiokafka's public `position()` is a coroutine
    of the consumer thread's event loop that returns this same value; reading
    it here costs no hop to that thread (aiokafka is pinned below 0.15 for it).
    """
    assignment = _assignment(consumer)
    if assignment is None:
        return {}
    positions = {}
    for topic, partition in partitions:
        state = assignment.state_value(TopicPartition(topic, partition))
        if state is not None and state.has_valid_position:
            positions[(topic, partition)] = state.position
    return positions


def fetched_ends(consumer: Consumer, source: tuple[str, int], inputs: list[tuple[str, int]]
                 ) -> dict[tuple[str, int], int] | None:
    """The end offset (last stable offset) of each of `inputs` as the fetch response that
    brought the records of `source` being handled, or a later one, reported it; None when an
    input's last report is older (it was not in that fetch) or missing.

    aiokafka notes, per partition and response, the ends and then the
    response's time in ms; `source`'s time is that of its last response, the
    one that brought the records being handled or a later one. The time is
    read before the end, so an end is never older than its time.
    """
    assignment = _assignment(consumer)
    if assignment is None:
        return None
    source_state = assignment.state_value(TopicPartition(*source))
    since = source_state.timestamp if source_state is not None else None
    if since is None:
        return None
    ends = {}
    for topic, partition in inputs:
        state = assignment.state_value(TopicPartition(topic, partition))
        if state is None:
            return None
        fetched_at = state.timestamp
        end = state.lso
        if fetched_at is None or fetched_at < since or end is None:
            return None
        ends[(topic, partition)] = end
    return ends


def _assignment(consumer: Consumer) -> Any:
    subscription = consumer._thread._consumer._subscription.subscription
    return subscription.assignment if subscription is not None else None


# -- fixes ---------------------------------------------------------------------------------


async def _perform_seek(self: Consumer) -> None:
    """Seek every assigned stream partition to where processing must resume.

    Faust drops messages fetched while a rebalance is in progress and relies
    on this seek to fetch them again. aiokafka's seek_to_committed skips
    partitions whose committed offset is missing or 0, so for a partition
    nobody ever committed, the dropped messages were never fetched again: an
    order produced while a worker started was silently lost. Such partitions
    start from the beginning here, which is what `auto_offset_reset=earliest`
    means for a group that has processed nothing of them.
    """
    committed = await self.seek_to_committed()
    self._read_offset.update({
        tp: offset if offset is not None and offset >= 0 else None
        for tp, offset in committed.items()
    })
    self._committed_offset.update({
        tp: offset for tp, offset in committed.items() if offset
    })
    unstarted = [tp for tp, offset in committed.items()
                 if not offset and not self._is_changelog_tp(tp)]
    if unstarted:
        # Offset 0, or the log start if retention removed it (auto_offset_reset).
        await self.seek_wait({tp: 0 for tp in unstarted})


async def _highwaters(self: AIOKafkaConsumerThread, partitions: Any) -> Any:
    """The end of each changelog partition, asked of the broker.

    In exactly-once mode Faust took the consumer's cached last stable
    offset, which is unknown (so: -1) for a partition not fetched since it
    was assigned; a worker that got back a partition it had owned before
    then crashed on "persisted offset higher than highwater", or, with the
    consistency check off, would have skipped the partition's new changes.
    A ListOffsets request with the consumer's read_committed isolation
    returns the true last stable offset.
    """
    return await self._ensure_consumer().end_offsets(partitions)


async def _end_recovery_at_transaction_markers(app: Any) -> None:
    """Finish table recovery as soon as only a transaction marker is left to read.

    Every transaction ends a changelog partition with a commit marker, which
    a consumer never receives, so Faust's recovery never sees the last offset
    it waits for; it notices only after two 5-second idle timeouts, which
    made every start and rebalance 10+ seconds slower. This watcher ends the
    recovery once Faust itself has applied every partition up to the offset
    just before its last one (the marker), judged from Faust's own progress.
    """
    recovery = app.tables.recovery
    generation = app.consumer_generation_id
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + 120.0
    while app.consumer_generation_id == generation and loop.time() < give_up_at:
        await asyncio.sleep(_POLL_S)
        if recovery.completed.is_set():
            return
        if not recovery.in_recovery or not _only_markers_left(recovery):
            continue
        offsets = recovery.active_offsets
        for tp, highwater in recovery.active_highwaters.items():
            offsets[tp] = max(offsets[tp], highwater)
        logger.info("table recovery reached the transaction markers; ending it")
        recovery.flush_buffers()
        recovery._set_recovery_ended()
        recovery.signal_recovery_end.set()
        return


def _only_markers_left(recovery: Any) -> bool:
    highwaters = recovery.active_highwaters
    offsets = recovery.active_offsets
    if not highwaters or any(offsets[tp] is None for tp in highwaters):
        return False  # Faust has not read its starting offsets yet
    behind = [tp for tp, highwater in highwaters.items()
              if highwater is not None and highwater >= 0 and offsets[tp] < highwater]
    return bool(behind) and all(offsets[tp] >= highwaters[tp] - 1 for tp in behind)


FETCH_MIN_BYTES = 1 << 20
_FETCH_WAIT_MS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_faust_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer


def batch_fetches(app: Any, max_wait_ms: int) -> None:
    """Let the broker hold `app`'s fetches up to `max_wait_ms` to gather 1 MiB (0: Faust's
    way, an answer as soon as any record is there)."""
    if max_wait_ms:
        _FETCH_WAIT_MS[app] = max_wait_ms
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer


def _create_worker_consumer(self: AIOKafkaConsumerThread, transport: Any) -> AIOKafkaConsumer:
    consumer = _faust_worker_consumer(self, transport)
    wait_ms = _FETCH_WAIT_MS.get(self.app)
    if wait_ms:
        # Read by the consumer when it starts its fetcher, after this.
        consumer._fetch_min_bytes = FETCH_MIN_BYTES
        consumer._fetch_max_wait_ms = wait_ms
    return consumer


# -- fetch sessions ------------------------------------------------------------------------


def fetch_in_sessions() -> None:
    """Make every aiokafka consumer this process starts from now on fetch in sessions."""
    aiokafka_consumer_module.Fetcher = SessionFetcher


class SessionFetchRequest(FetchRequest):
    """aiokafka's fetch request, sent as the next fetch of a session.

    It names only `fetch.send`; its `topics`, which aiokafka reads an answer
    against (the offset each partition was fetched at), are every partition the
    session covers, since an answer may list any of them.
    """

    def __init__(self, fetcher: AIOKafkaFetcher, session: FetchSession,
                 wanted: dict[tuple[str, int], tuple[int, int]]) -> None:
        self.session = session
        self.fetch = session.fetch(wanted)
        self.answer: Any = None
        super().__init__(fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes,
                         fetcher._fetch_max_bytes, fetcher._isolation_level,
                         _by_topic(self.fetch.send), rack_id=fetcher._client_rack or "")

    @property
    def topics(self) -> list[tuple[str, list[tuple[int, int, int]]]]:
        return _by_topic(self.fetch.covers)

    def build(self, request_struct_class: Any) -> Any:
        struct = super().build(request_struct_class)
        if request_struct_class.API_VERSION >= 7:
            struct.session_id = self.fetch.session_id
            struct.session_epoch = self.fetch.epoch
            forget: dict[str, list[int]] = {}
            for topic, partition in self.fetch.forget:
                forget.setdefault(topic, []).append(partition)
            struct.forgotten_topics_data = list(forget.items())
        return struct

    def answered(self, answer: Any) -> None:
        self.answer = answer
        if answer.API_VERSION >= 7:
            self.session.answered(answer.error_code, answer.session_id)
        else:
            self.session.reset()  # a broker without sessions: every fetch in full

    def unchanged(self) -> list[tuple[TopicPartition, int]]:
        """The covered partitions the answer left out, with the offset each was fetched at:
        nothing new there (no record, the same ends) as of the answer."""
        answer = self.answer
        if answer is None or answer.API_VERSION < 7 or answer.error_code:
            return []
        listed = {(topic, partition)
                  for topic, partitions in answer.topics for partition, *_ in partitions}
        return [(TopicPartition(topic, partition), offset)
                for (topic, partition), (offset, _) in self.fetch.covers.items()
                if (topic, partition) not in listed]


def _by_topic(positions: Any) -> list[tuple[str, list[tuple[int, int, int]]]]:
    topics: dict[str, list[tuple[int, int, int]]] = {}
    for (topic, partition), (offset, max_bytes) in positions.items():
        topics.setdefault(topic, []).append((partition, offset, max_bytes))
    return list(topics.items())


class _SessionClient:
    """The consumer's client as a `SessionFetcher` uses it: a session fetch's answer, or its
    failure, is noted in the session before aiokafka reads the answer (even one it then
    drops because the assignment changed: the broker has moved to the next epoch)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def send(self, node_id: int, request: Any, **kwargs: Any) -> Any:
        if not isinstance(request, SessionFetchRequest):
            return await self._client.send(node_id, request, **kwargs)
        try:
            answer = await self._client.send(node_id, request, **kwargs)
        except BaseException:
            request.session.reset()
            raise
        request.answered(answer)
        return answer


class SessionFetcher(AIOKafkaFetcher):
    """aiokafka's fetcher, its fetches from each broker in one session (fetch_session.py)."""

    def __init__(self, client: Any, subscriptions: Any, **options: Any) -> None:
        self._sessions: dict[int, FetchSession] = {}
        super().__init__(_SessionClient(client), subscriptions, **options)

    def _get_actions_per_node(self, assignment: Any) -> Any:
        requests, *others = super()._get_actions_per_node(assignment)
        return ([(node_id, self._session_request(node_id, request))
                 for node_id, request in requests], *others)

    def _session_request(self, node_id: int, request: FetchRequest) -> SessionFetchRequest:
        wanted = {(topic, partition): (offset, max_bytes)
                  for topic, partitions in request.topics
                  for partition, offset, max_bytes in partitions}
        return SessionFetchRequest(self, self._sessions.setdefault(node_id, FetchSession()),
                                   wanted)

    async def _proc_fetch_request(self, assignment: Any, node_id: int, request: Any) -> bool:
        fetched = await super()._proc_fetch_request(assignment, node_id, request)
        if isinstance(request, SessionFetchRequest) and assignment.active:
            # As aiokafka notes a partition listed with nothing new: fetched now, the same ends.
            now_ms = int(1000 * time.time())
            for tp, offset in request.unchanged():
                state = assignment.state_value(tp)
                if state is not None and state.has_valid_position and state.position == offset:
                    state.timestamp = now_ms
        return fetched


_faust_tables_on_rebalance = TableManager.on_rebalance
_dropped_databases = False


def _revoke_partitions(self: RocksDBStore, table: Any, tps: Any) -> None:
    """Faust's, leaving the collection that closes dropped databases to the tables' end."""
    global _dropped_databases
    for tp in tps:
        if (tp.topic in table.changelog_topic.topics
                and self._dbs.pop(tp.partition, None) is not None):
            logger.info("closing db %s partition %s", tp.topic, tp.partition)
            _dropped_databases = True


async def _tables_on_rebalance(self: TableManager, *args: Any, **kwargs: Any) -> None:
    global _dropped_databases
    await _faust_tables_on_rebalance(self, *args, **kwargs)
    if _dropped_databases:
        _dropped_databases = False
        gc.collect()


def apply_fixes(app: Any) -> None:
    """The fixes above, for `app` (the class patches once per process)."""
    aiokafka_sender.BACKOFF_OVERRIDE = CONCURRENT_TRANSACTIONS_RETRY_S
    RocksDBStore.revoke_partitions = _revoke_partitions
    TableManager.on_rebalance = _tables_on_rebalance
    Consumer.perform_seek = _perform_seek
    AIOKafkaConsumerThread._highwaters = _highwaters

    @app.on_partitions_assigned.connect
    async def _watch_recovery(sender: Any, assigned: Any, **_: Any) -> None:
        task = asyncio.ensure_future(_end_recovery_at_transaction_markers(sender))
        _WATCHERS.add(task)
        task.add_done_callback(_WATCHERS.discard)


# -- transactional producers and RocksDB --------------------------------------------------


async def route_tables(app: Any, changelogs: list[str]) -> None:
    """Let Faust's table router (views of a key's owner) hash keys for the changelogs.

    The router places a key with the partitioner of Faust's producer, which knows
    a topic's partitions only from its metadata; Faust put the changelogs there
    when it declared them, and the engine creates its topics itself.
    """
    producer = app.producer._ensure_producer()
    for topic in changelogs:
        await producer.client.add_topic(topic)


def transaction_producer(faust_producer: Any, transactional_id: str) -> tuple[Any, Any]:
    """Faust's producer of `transactional_id` and the lock Faust takes around it (or None)."""
    return (faust_producer._transaction_producers.get(transactional_id),
            faust_producer._trn_locks.get(transactional_id))


async def renew_transaction_producer(faust_producer: Any, transactional_id: str,
                                     timeout_s: float) -> Any:
    """A new, started producer of `transactional_id`, put where Faust keeps the old one."""
    fresh = faust_producer._new_producer(transactional_id=transactional_id)
    await asyncio.wait_for(fresh.start(), timeout_s)
    faust_producer._transaction_producers[transactional_id] = fresh
    return fresh


def transaction_state(producer: AIOKafkaProducer) -> Any:
    """aiokafka's `TransactionState` of the producer (exposed nowhere else)."""
    return producer._txn_manager.state


def sender_dead(producer: AIOKafkaProducer) -> bool:
    """Whether the producer's sender routine has ended (it then never sends again)."""
    task = producer._sender.sender_task
    return task is not None and task.done()


def share_rocksdb_memory(budget_bytes: int) -> rocksdict.Cache:
    """Make every RocksDB that Faust opens in this process share one memory budget; the
    shared cache, whose usage is what they hold.

    Faust gives each table partition a block cache and write buffers of its
    own, so a worker's RocksDB memory could grow with tables times
    partitions (17 x 8 here: up to 136 x (16 MiB + 2 x 8 MiB), 4.3 GiB). One
    LRU cache of `budget_bytes` holds the blocks of all of them, and a write
    buffer manager counts their memtables in that cache, flushing the largest
    once they pass half of it.
    """
    cache = rocksdict.Cache(budget_bytes)
    write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
        budget_bytes // 2, False, cache)

    def as_options(self: RocksDBOptions) -> rocksdict.Options:
        options = _faust_rocksdb_options(self)
        # rocksdict cannot swap the cache of a table factory already set, so Faust's
        # factory (bloom filter, index) is set again around the shared cache.
        blocks = rocksdict.BlockBasedOptions()
        blocks.set_bloom_filter(self.bloom_filter_size, block_based=True)
        blocks.set_block_cache(cache)
        blocks.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(blocks)
        options.set_write_buffer_manager(write_buffers)
        return options

    RocksDBOptions.as_options = as_options
    return cache


_faust_rocksdb_options = RocksDBOptions.as_options


def rocksdb_of(table: Any, partition: int) -> Any:
    """The RocksDB (rocksdict) Faust opened for one partition of `table`."""
    return table.data._db_for_partition(partition)
