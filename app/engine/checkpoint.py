"""The commit path (`Checkpoint`): each partition's work since its last commit, and the
commits that make it durable, one Kafka transaction per slot.

Work is due when its oldest part has lingered `linger_s`, or at once when the
worker holds `max_events` uncommitted events or `max_records` uncommitted
output records. A slot commits on its own as soon as its work is due and its
last commit is done: a slot never waits for another's transaction, so one
slow commit delays only its own partitions' results. `_commit_slot` is the
path itself, step by step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka.errors import KafkaError

from app.domain.metrics import Histogram
from app.engine.assignment import Assignment
from app.engine.context import Context, PartitionWork
from app.engine.registration import Registry
from app.engine.runtime import PartitionRuntime
from app.engine.slots import Slot
from app.engine.state import DELETED, StateTable
from app.engine.transactions import PartitionLost, Record, SlotTransactions, compact

logger = logging.getLogger(__name__)


@dataclass
class SlotBatch:
    """What one slot's transaction writes, gathered from its partitions' work."""

    records: list[Record] = field(default_factory=list)  # outputs, then changelog rows
    # (partition, table, its encoded rows, where they start in `records`): encoded once,
    # the same bytes go to the changelog and, after the commit, to RocksDB.
    changelogs: list[tuple[int, StateTable, list[tuple[bytes, bytes | None]], int]] = field(
        default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # input offsets
    forwarded: list[asyncio.Future] = field(default_factory=list)  # deliveries to wait for


class Checkpoint:
    """Every partition's uncommitted work, its contexts, and the commits under way."""

    def __init__(self, *, registry: Registry, assignment: Assignment,
                 runtime: PartitionRuntime, transactions: SlotTransactions,
                 commit_linger_ms: int, commit_max_events: int, commit_max_records: int,
                 forgotten: Callable[[int], None], fail: Callable[[BaseException], None]
                 ) -> None:
        self.registry = registry
        self.assignment = assignment
        self.runtime = runtime
        self.transactions = transactions
        self.linger_s = commit_linger_ms / 1000
        self.max_events = commit_max_events
        self.max_records = commit_max_records
        self.forgotten = forgotten  # told of each partition whose work is forgotten
        self.fail = fail  # the worker must restart from committed state
        self.largest_commit = 0  # records (outputs and changelog) in one transaction, at most
        self.records_committed = 0
        self.commit_times = Histogram()  # ms from a transaction's start to its commit
        self.pending: dict[int, PartitionWork] = {}
        self.contexts: dict[int, Context] = {}
        self.committing: dict[int, PartitionWork] = {}
        self.lost: set[int] = set()  # still assigned, but their work was lost: ignored
        self.pending_events = 0
        # Output records held in memory: of the work not committing yet, and of the commits
        # under way. Billing makes about 20 per event, and a timer or hook can make
        # thousands in one run, so events alone do not bound them.
        self.pending_records = 0
        self.committing_records = 0
        self.inflight: dict[int, asyncio.Task] = {}  # partition -> its slot's commit
        self.commits_due = asyncio.Event()

    # -- work coming in ------------------------------------------------------------

    def context(self, partition: int) -> Context:
        context = self.contexts.get(partition)
        if context is None:
            work = self.pending[partition] = PartitionWork()
            context = self.contexts[partition] = Context(
                self.runtime, partition, work, self.committing.get(partition))
        return context

    def count_records(self, context: Context) -> None:
        records = len(context.work.records)
        self.pending_records += records - context.counted
        context.counted = records

    def work_added(self, work: PartitionWork) -> None:
        if not work.since:
            work.since = time.monotonic()
            self.commits_due.set()

    @property
    def urgent(self) -> bool:
        """So much is uncommitted that every slot with work commits now."""
        return (self.pending_events >= self.max_events
                or self.pending_records + self.committing_records >= self.max_records)

    @property
    def overloaded(self) -> bool:
        """So much is uncommitted that reading stops until it is committed."""
        return (self.pending_events >= 3 * self.max_events
                or self.pending_records + self.committing_records >= 3 * self.max_records)

    def holds_too_much(self, uncounted: int) -> bool:
        """Whether the worker holds `max_records` output records not committed yet (those
        of commits under way and `uncounted` more of the running handler included): a
        timer or hook that could produce much at once stops there and leaves the rest for
        its next run."""
        held = self.pending_records + self.committing_records + uncounted
        return held >= self.max_records

    # -- starting commits ------------------------------------------------------------

    async def run(self, should_stop: Callable[[], bool]) -> None:
        """Start each slot's commit as soon as its work is due and its last commit done."""
        while not should_stop():
            await self.commits_due.wait()
            self.commits_due.clear()
            wait = self.start_due_commits()
            if wait is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.commits_due.wait(), wait)
                self.commits_due.set()

    def start_due_commits(self) -> float | None:
        """Start the commits that are due; seconds until the next one is (None: none waits)."""
        now = time.monotonic()
        urgent = self.urgent
        next_due: float | None = None
        for partition, work in list(self.pending.items()):
            if not work:
                continue
            slot = self.assignment.slot_of(partition)
            if self._committing_now(slot):
                continue  # including the slot whose commit this loop just started
            due = work.since + self.linger_s
            if urgent or due <= now:
                self._start_commit(slot)
            elif next_due is None or due < next_due:
                next_due = due
        return None if next_due is None else max(next_due - now, 0.0)

    async def commit_all(self) -> None:
        """Commit the work of every partition; returns when all of it is durable (or lost)."""
        # The second round commits what waited for a commit running at the first.
        for _round in range(2):
            for slot in {self.assignment.slot_of(p) for p, work in self.pending.items() if work}:
                if not self._committing_now(slot):
                    self._start_commit(slot)
            running = {task for task in self.inflight.values() if not task.done()}
            if running:
                await asyncio.wait(running)

    def cancel_commits(self) -> None:
        """Stop waiting for the commits under way (their transactions are aborted by the
        broker or the partition's next owner)."""
        for task in self.inflight.values():
            task.cancel()

    def _committing_now(self, slot: Slot) -> bool:
        inflight = self.inflight
        for partition in range(*slot):
            task = inflight.get(partition)
            if task is not None and not task.done():
                return True
        return False

    def _start_commit(self, slot: Slot) -> None:
        works: dict[int, PartitionWork] = {}
        for partition in range(*slot):
            work = self.pending.get(partition)
            if not work:
                continue
            del self.pending[partition]
            self.contexts.pop(partition, None)
            self.pending_events -= work.events
            self.pending_records -= len(work.records)
            self.committing_records += len(work.records)
            self.committing[partition] = works[partition] = work
        task = asyncio.ensure_future(self._commit_slot(slot, works))
        for partition in works:
            self.inflight[partition] = task
        task.add_done_callback(self._commit_done)

    def _commit_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("commit failed unexpectedly; restarting the worker",
                         exc_info=task.exception())
            self.fail(task.exception())
        self.commits_due.set()  # its slot's next work may be due already

    # -- the commit path ----------------------------------------------------------------

    async def _commit_slot(self, slot: Slot, works: dict[int, PartitionWork]) -> None:
        """Make the work of a slot's partitions durable, in five steps:

        1. gather it: output records, each table's writes encoded as changelog
           rows, the input offsets reached, the forwards made;
        2. wait until the forwards are written: the offsets say their inputs are
           done (a forward that failed loses the work);
        3. commit records, changelog rows and offsets in the slot's transaction,
           retried while the partitions stay assigned here;
        4. write the changelog rows to RocksDB with the changelog offsets reached;
        5. let go of the work: it is neither committing nor held any more.
        """
        batch = self._gather(works)
        if not await self._forwards_written(batch, works):
            return
        written = await self._transact(slot, batch, works)
        if written is None:
            return
        for partition, table, rows, start in batch.changelogs:
            table.apply(partition, rows, max(written[start:start + len(rows)]))
        self._release(works)

    def _gather(self, works: dict[int, PartitionWork]) -> SlotBatch:
        batch = SlotBatch()
        records = batch.records
        for partition, work in works.items():
            records += work.records
            for table, writes in work.overlay.writes.items():
                rows = [(key, None if value is DELETED else compact(table.encode(value)))
                        for key, value in writes.items()]
                batch.changelogs.append((partition, table, rows, len(records)))
                topic = table.changelog_topic
                records += [Record(topic, partition, key, raw) for key, raw in rows]
            for topic, offset in work.offsets.items():
                batch.offsets[topic, partition] = offset
            batch.forwarded += work.forwarded
        self.largest_commit = max(self.largest_commit, len(records))
        return batch

    async def _forwards_written(self, batch: SlotBatch, works: dict[int, PartitionWork]
                                ) -> bool:
        try:
            await asyncio.gather(*batch.forwarded)
        except Exception as exc:  # the forwarder failed: its records may be lost
            self.lose(works, exc)
            return False
        return True

    async def _transact(self, slot: Slot, batch: SlotBatch, works: dict[int, PartitionWork]
                        ) -> list[int] | None:
        """The offsets the slot's transaction wrote its records at (None: work lost)."""
        delay = 0.1
        started = time.monotonic()
        while True:
            try:
                written = await self.transactions.commit(
                    slot, self.registry.anchor_topic or "", batch.records, batch.offsets)
                break
            except PartitionLost as exc:
                self.lose(works, exc)
                return None
            except KafkaError as exc:
                if not self.assignment.owned().issuperset(works):
                    self.lose(works, exc)
                    return None
                logger.warning("commit of partitions %s failed (%r); retrying in %.1fs",
                               sorted(works), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.commit_times.record(int((time.monotonic() - started) * 1000))
        self.records_committed += len(batch.records)
        return written

    def _release(self, works: dict[int, PartitionWork]) -> None:
        for partition, work in works.items():
            if self.committing.get(partition) is work:
                del self.committing[partition]
                self.committing_records -= len(work.records)
            context = self.contexts.get(partition)
            if context is not None and context.committing is work:
                context.committing = None  # its records no longer count as held back

    # -- losing work ----------------------------------------------------------------------

    def lose(self, works: dict[int, PartitionWork], cause: BaseException) -> None:
        """Forget all uncommitted work of partitions this worker may no longer write."""
        assigned = self.assignment.owned()
        for partition in works:
            self.forget(partition)
        still_owned = sorted(set(works) & assigned)
        if still_owned:
            logger.error("partitions %s lost while still assigned (%r); restarting the worker "
                         "so it recovers from committed state", still_owned, cause)
            self.lost.update(still_owned)
            self.fail(cause)
        else:
            logger.info("dropped uncommitted work of revoked partitions %s", sorted(works))

    def forget(self, partition: int) -> None:
        work = self.pending.pop(partition, None)
        if work is not None:
            self.pending_events -= work.events
            self.pending_records -= len(work.records)
        self.contexts.pop(partition, None)
        committing = self.committing.pop(partition, None)
        if committing is not None:
            self.committing_records -= len(committing.records)
        self.forgotten(partition)
