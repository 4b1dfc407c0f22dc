"""The two contexts every handler test runs on (conftest.py switches between them).

`MemoryContext` is the tests' fake, whose writes land in the tables at once.
`EngineContext` is the engine's own `Context` over `MemoryTable`s: writes go
to the real overlay (a value updated in place is copied first, a key written
and deleted before a commit leaves nothing), and each step (a delivered
message, a timer or hook run with `run`) commits on its own: what the test
did on the context directly before it first, then the step's work. A commit
applies the overlay to the tables through their codecs, as checkpoint.py
applies it to RocksDB. Both offer the same driving API: deliver, run, commit,
forget_caches, sent, sent_to, forwarded, dead_letters, max_uncommitted.
Tests make their context with `new_context`, which makes the one of the run.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Iterator
from typing import Any

import orjson

from app.engine.context import Context, PartitionWork
from app.engine.handler_context import Handler, Tick
from app.engine.memory import MemoryContext, Message, Sent, handle
from app.engine.runtime import PartitionRuntime
from app.engine.state import DELETED
from app.engine.transactions import Record

DEAD_LETTERS = "engine-test.deadletter"  # no handler under test sends there


class SameCountEverywhere:
    """Every topic with the engine's partition count (they are co-partitioned)."""

    def __init__(self, partitions: int) -> None:
        self.count = partitions

    def partitions(self, topic: str) -> int:
        return self.count


class KeptForwards:
    """Forwards kept for the test to read, each delivered at once."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def forward(self, record: Record) -> Any:
        self.records.append(record)
        delivered: concurrent.futures.Future = concurrent.futures.Future()
        delivered.set_result(None)
        return delivered


class EngineContext(Context):
    """The engine's `Context` of one partition of `partitions`, at `now_ms`, committing
    into `MemoryTable`s."""

    def __init__(self, *, partition: int = 0, partitions: int = 1, now_ms: int = 0,
                 max_uncommitted: int | None = None) -> None:
        self._forwards = KeptForwards()
        runtime = PartitionRuntime(partitions=partitions,
                                   topology=SameCountEverywhere(partitions),
                                   forwarder=self._forwards, deadletter_topic=DEAD_LETTERS,
                                   holds_too_much=self._holds_too_much)
        super().__init__(runtime, partition, PartitionWork(), None)
        self.now_ms = now_ms
        # Records sent since the last `commit()` at which `backlogged()` holds (None: never).
        self.max_uncommitted = max_uncommitted
        self._committed_records: list[Record] = []
        self._held_since_commit = 0  # records of the steps committed since `commit()`

    def _holds_too_much(self, uncounted: int) -> bool:
        held = self._held_since_commit + uncounted
        return self.max_uncommitted is not None and held >= self.max_uncommitted

    # -- driving handlers like the engine does ----------------------------------------

    def deliver(self, handler: Handler, topic: str, key: bytes | None, value: bytes | None,
                *, offset: int = 0) -> None:
        """Run `handler` on one message and commit; bad input is dead-lettered."""
        self._commit_step()
        handle(self, handler, Message(topic, self.partition, offset, key, value))
        self._commit_step()

    def run(self, action: Tick) -> None:
        """Run a timer or a barrier's hook in the partition and commit."""
        self._commit_step()
        self.message = None
        action(self)
        self._commit_step()

    def commit(self) -> None:
        """Commit, and what was sent is held no more (`backlogged()`)."""
        self._commit_step()
        self._held_since_commit = 0

    def _commit_step(self) -> None:
        work = self.work
        for table, writes in work.overlay.writes.items():
            for key, value in writes.items():
                table.write(self.partition, key, None if value is DELETED else value)
        self._committed_records += work.records
        self._held_since_commit += len(work.records)
        self.work = PartitionWork()

    def forget_caches(self) -> None:
        """What a rebalance does: per-partition caches are rebuilt from the tables."""
        self._runtime.forget_caches(self.partition)

    # -- what the handlers did ------------------------------------------------------------

    def _records(self) -> list[Record]:
        return self._committed_records + self.work.records

    @property
    def sent(self) -> list[Sent]:
        return [Sent(record.topic, record.key, record.value) for record in self._records()
                if record.topic != DEAD_LETTERS]

    def sent_to(self, topic: str) -> list[Sent]:
        return [sent for sent in self.sent if sent.topic == topic]

    @property
    def forwarded(self) -> list[Sent]:
        return [Sent(record.topic, record.key, record.value)
                for record in self._forwards.records]

    @property
    def dead_letters(self) -> list[str]:
        return [orjson.loads(record.value)["error"] for record in self._records()
                if record.topic == DEAD_LETTERS]


DrivenContext = MemoryContext | EngineContext
CONTEXTS: dict[str, type[DrivenContext]] = {"memory": MemoryContext, "engine": EngineContext}
_running: list[type[DrivenContext]] = [MemoryContext]


@contextlib.contextmanager
def running(kind: type[DrivenContext]) -> Iterator[None]:
    """Make `new_context` make `kind` for as long as the block runs."""
    _running.append(kind)
    try:
        yield
    finally:
        _running.pop()


def new_context(*, partition: int = 0, partitions: int = 1, now_ms: int = 0) -> DrivenContext:
    """The context of the running test's kind (see conftest.py)."""
    return _running[-1](partition=partition, partitions=partitions, now_ms=now_ms)

