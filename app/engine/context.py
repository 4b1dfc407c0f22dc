"""What a handler sees of its partition (`Context`, the engine's `HandlerContext`), and what
the partition did since its last commit (`PartitionWork`); checkpoint.py commits the work."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from app.engine.handler_context import Cached, HandlerContext, InputMessage, Table
from app.engine.partitioning import partition_for
from app.engine.runtime import PartitionRuntime
from app.engine.state import DELETED, Overlay
from app.engine.transactions import Record, compact
from app.records.outputs import dead_letter


class PartitionWork:
    """Everything one partition did since its last commit."""

    __slots__ = ("events", "forwarded", "offsets", "overlay", "records", "since")

    def __init__(self) -> None:
        self.overlay = Overlay()
        self.records: list[Record] = []
        self.offsets: dict[str, int] = {}
        self.events = 0
        self.since = 0.0  # monotonic time its first piece of work came in
        self.forwarded: list[asyncio.Future] = []  # the deliveries its offsets must wait for

    def __bool__(self) -> bool:
        return bool(self.records or self.offsets or self.overlay or self.forwarded)


class Context:
    """A handler's view of its partition: state, outputs, dead letters and the clock."""

    __slots__ = ("_runtime", "committing", "counted", "message", "now_ms", "partition", "work")

    def __init__(self, runtime: PartitionRuntime, partition: int, work: PartitionWork,
                 committing: PartitionWork | None) -> None:
        self._runtime = runtime
        # The partition's commit under way, if any; cleared once that is done.
        self.committing = committing
        self.counted = 0  # of the work's records, those the engine has counted as held
        self.partition = partition
        self.work = work
        self.message: InputMessage | None = None
        self.now_ms = 0

    def get(self, table: Table, key: bytes) -> Any:
        found, value = self.work.overlay.lookup(table, key)
        if found:
            return value
        return self._committed(table, key)

    def _committed(self, table: Table, key: bytes) -> Any:
        """The value as the partition's commits (the one under way included) leave it."""
        if self.committing is not None:
            found, value = self.committing.overlay.lookup(table, key)
            if found:
                return value
        return table.read(self.partition, key)

    def update(self, table: Table, key: bytes, copy: Callable[[Any], Any],
               change: Callable[[Any], None]) -> bool:
        """Apply `change` to the value in place (False: there is none). A value this work
        wrote already is changed as it is; a committed one is copied first. Saves a copy
        per event when many events of one commit change one value (a plan's progress)."""
        found, value = self.work.overlay.lookup(table, key)
        if not found:
            value = self._committed(table, key)
            if value is None:
                return False
            value = copy(value)
            self.work.overlay.put(table, key, value)
        elif value is None:
            return False
        change(value)
        return True

    def put(self, table: Table, key: bytes, value: Any) -> None:
        self.work.overlay.put(table, key, value)

    def delete(self, table: Table, key: bytes) -> None:
        overlay = self.work.overlay
        if overlay.holds(table, key) and self._committed(table, key) is None:
            overlay.drop(table, key)  # written and deleted before any commit: nothing to log
        else:
            overlay.put(table, key, DELETED)

    def backlogged(self) -> bool:
        """Whether the worker holds a commit's worth of output records not committed yet
        (`CPS_COMMIT_MAX_RECORDS`). A timer or hook that could produce much at once (a
        plan's pages, the orders a backlog's catch-up frees) stops there and leaves the
        rest for its next run, so memory and transactions stay bounded."""
        return self._runtime.holds_too_much(len(self.work.records) - self.counted)

    def owns(self, key: bytes) -> bool:
        """Whether `key` belongs to this partition (every topic of the engine is co-partitioned)."""
        return partition_for(key, self._runtime.partitions) == self.partition

    def route(self, key: bytes, topic: str, value: bytes, *, at_once: bool = False) -> bool:
        """True when `key` belongs to this partition, to be handled here; otherwise re-key
        `value` onto `topic` (the partition of `key` reads it) and return False.

        `at_once` forwards it outside the transaction (see `forward`), only for a
        topic whose handler treats a second copy of a record as a no-op.
        """
        if self.owns(key):
            return True
        if at_once:
            self.forward(topic, key, value)
        else:
            self.send(topic, key, value)
        return False

    def send(self, topic: str, key: bytes, value: bytes) -> int:
        """Queue a record for the transaction, placed by its key; returns its partition."""
        partition = partition_for(key, self._runtime.topology.partitions(topic))
        self.work.records.append(Record(topic, partition, key, compact(value)))
        return partition

    def forward(self, topic: str, key: bytes, value: bytes) -> None:
        """Send a record at once, outside the transaction (see forwarding.py): only to
        a topic whose handler treats a second copy of a record as a no-op."""
        partition = partition_for(key, self._runtime.topology.partitions(topic))
        delivered = self._runtime.forwarder.forward(Record(topic, partition, key, compact(value)))
        forwarded = self.work.forwarded
        if not forwarded or forwarded[-1] is not delivered:
            forwarded.append(delivered)

    def send_to(self, topic: str, partition: int, key: bytes | None, value: bytes) -> None:
        self.work.records.append(Record(topic, partition, key, compact(value)))

    def dead_letter(self, error: str, source: InputMessage | None = None) -> None:
        """Dead-letter the current message (or `source`, a message seen earlier) with a reason."""
        message: Any = source if source is not None else self.message
        runtime = self._runtime
        topic = runtime.deadletter_topic
        partition = message.partition % runtime.topology.partitions(topic)
        self.work.records.append(Record(topic, partition, message.key, compact(dead_letter(
            topic=message.topic, partition=message.partition, offset=message.offset,
            key=message.key, value=message.value, error=error, ts_ms=self.now_ms,
        ))))
        runtime.count_dead_letter(error)

    def cache(self, factory: Callable[[HandlerContext], Cached]) -> Cached:
        """A per-partition object derived from committed state, rebuilt after a rebalance."""
        return self._runtime.partition_cache(self, factory)
