"""The engine's handler interface in memory, for unit tests of handlers without Kafka.

`MemoryContext` is a `HandlerContext` (handler_context.py), like the
engine's `Context`, over `MemoryTable`s, whose every write counts as
committed at once. What a handler sends, forwards and dead-letters is kept in lists for
the test to read. `MemoryTables` stands in for the engine when a table
module defines its tables (`tables.<name>.define(MemoryTables())`), so the
tables keep their real encodings: a value that does not survive its codec
fails the test as it would fail a worker.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any, NamedTuple

from app.engine.handler_context import Cached, Handler, HandlerContext, InputMessage, Tick
from app.engine.partitioning import partition_for
from app.records.fields import InvalidEvent


class Sent(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes


class Message(NamedTuple):
    """The message being handled, as much of it as handlers read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class MemoryTable:
    """One table, every partition in a sorted dict of encoded rows."""

    def __init__(self, name: str, *, encode: Callable[[Any], bytes] = lambda v: v,
                 decode: Callable[[bytes], Any] = lambda raw: raw) -> None:
        self.name = name
        self.encode = encode
        self.decode = decode
        self.rows: dict[int, dict[bytes, bytes]] = {}

    def read(self, partition: int, key: bytes) -> Any:
        raw = self.rows.get(partition, {}).get(key)
        return None if raw is None else self.decode(raw)

    def scan(self, partition: int):
        return [(key, self.decode(raw)) for key, raw in sorted(self.rows.get(partition, {})
                                                                 .items())]

    def keys_up_to(self, partition: int, last: bytes, limit: int) -> list[bytes]:
        keys = sorted(self.rows.get(partition, {}))
        return keys[:bisect.bisect_right(keys, last)][:limit]

    def scan_prefix(self, partition: int, prefix: bytes, *, after: bytes | None = None,
                    limit: int) -> list[tuple[bytes, Any]]:
        rows = [(key, value) for key, value in self.scan(partition)
                if key.startswith(prefix) and (after is None or key > after)]
        return rows[:limit]

    def keys_with_prefix(self, partition: int, prefix: bytes, *, after: bytes | None = None,
                         limit: int) -> list[bytes]:
        return [key for key, _value in self.scan_prefix(partition, prefix, after=after,
                                                        limit=limit)]

    def write(self, partition: int, key: bytes, value: Any) -> None:
        rows = self.rows.setdefault(partition, {})
        if value is None:
            rows.pop(key, None)
        else:
            rows[key] = self.encode(value)


class MemoryTables:
    """Makes `MemoryTable`s where a table module asks the engine for state tables."""

    def state_table(self, name: str, *, encode: Callable[[Any], bytes],
                    decode: Callable[[bytes], Any]) -> MemoryTable:
        return MemoryTable(name, encode=encode, decode=decode)


class MemoryContext:
    """One partition of `partitions`, at `now_ms` (tests move the clock)."""

    def __init__(self, *, partition: int = 0, partitions: int = 1, now_ms: int = 0,
                 max_uncommitted: int | None = None) -> None:
        self.partition = partition
        # Records sent since the last `commit()` at which `backlogged()` holds (None: never).
        self.max_uncommitted = max_uncommitted
        self._sent_at_commit = 0
        self.partitions = partitions
        self.now_ms = now_ms
        self.message: InputMessage | None = None
        self.sent: list[Sent] = []
        self.forwarded: list[Sent] = []
        self.dead_letters: list[str] = []
        self._caches: dict[Callable, Any] = {}

    # -- the handler interface ------------------------------------------------------

    def get(self, table: MemoryTable, key: bytes) -> Any:
        return table.read(self.partition, key)

    def update(self, table: MemoryTable, key: bytes, copy: Callable[[Any], Any],
               change: Callable[[Any], None]) -> bool:
        value = table.read(self.partition, key)  # decoded: a copy already
        if value is None:
            return False
        change(value)
        table.write(self.partition, key, value)
        return True

    def put(self, table: MemoryTable, key: bytes, value: Any) -> None:
        table.write(self.partition, key, value)

    def delete(self, table: MemoryTable, key: bytes) -> None:
        table.write(self.partition, key, None)

    def backlogged(self) -> bool:
        held = len(self.sent) - self._sent_at_commit
        return self.max_uncommitted is not None and held >= self.max_uncommitted

    def owns(self, key: bytes) -> bool:
        return partition_for(key, self.partitions) == self.partition

    def route(self, key: bytes, topic: str, value: bytes, *, at_once: bool = False) -> bool:
        if self.owns(key):
            return True
        (self.forward if at_once else self.send)(topic, key, value)
        return False

    def send(self, topic: str, key: bytes, value: bytes) -> int:
        self.sent.append(Sent(topic, key, value))
        return partition_for(key, self.partitions)  # every topic co-partitioned here

    def send_to(self, topic: str, partition: int, key: bytes | None, value: bytes) -> None:
        self.sent.append(Sent(topic, key, value))

    def forward(self, topic: str, key: bytes, value: bytes) -> None:
        self.forwarded.append(Sent(topic, key, value))

    def dead_letter(self, error: str, source: InputMessage | None = None) -> None:
        self.dead_letters.append(error)

    def cache(self, factory: Callable[[HandlerContext], Cached]) -> Cached:
        if factory not in self._caches:
            self._caches[factory] = factory(self)
        return self._caches[factory]

    # -- driving handlers like the engine does ----------------------------------------

    def deliver(self, handler: Handler, topic: str, key: bytes | None, value: bytes | None,
                *, offset: int = 0) -> None:
        """Run `handler` on one message; bad input is dead-lettered, as the engine does."""
        handle(self, handler, Message(topic, self.partition, offset, key, value))

    def run(self, action: Tick) -> None:
        """Run a timer or a barrier's hook in the partition."""
        self.message = None
        action(self)

    def commit(self) -> None:
        """What the engine's commit does for `backlogged()`: what was sent is held no more."""
        self._sent_at_commit = len(self.sent)

    def forget_caches(self) -> None:
        """What a rebalance does: per-partition caches are rebuilt from the tables."""
        self._caches.clear()

    def sent_to(self, topic: str) -> list[Sent]:
        return [sent for sent in self.sent if sent.topic == topic]


def handle(ctx: HandlerContext, handler: Handler, message: Message) -> None:
    """Run `handler` on `message` in `ctx` as the engine does: bad input is dead-lettered."""
    ctx.message = message
    try:
        handler(ctx, message.key, message.value)
    except InvalidEvent as exc:
        ctx.dead_letter(str(exc))
    finally:
        ctx.message = None
