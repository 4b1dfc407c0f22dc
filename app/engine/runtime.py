"""What a partition's `Context` uses of the worker around it (`PartitionRuntime`).

The engine makes one for all its partitions and hands it to every Context;
the context does not know the engine. Tests build one with fakes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from app.engine.handler_context import Cached, HandlerContext
from app.engine.transactions import Record


class Forwarding(Protocol):
    def forward(self, record: Record) -> asyncio.Future:
        """Send `record` outside any transaction; the future settles once it is written."""


class PartitionSizes(Protocol):
    def partitions(self, topic: str) -> int:
        """How many partitions `topic` has."""


class PartitionRuntime:
    """The worker's topics, forwarder, dead-letter counts, backlog bound and per-partition
    caches, shared by the contexts of all its partitions."""

    __slots__ = ("caches", "dead_letter_reasons", "dead_letters", "deadletter_topic",
                 "forwarder", "holds_too_much", "partitions", "topology")

    def __init__(self, *, partitions: int, topology: PartitionSizes, forwarder: Forwarding,
                 deadletter_topic: str, holds_too_much: Callable[[int], bool]) -> None:
        self.partitions = partitions  # of every topic the engine reads (co-partitioned)
        self.topology = topology
        self.forwarder = forwarder
        self.deadletter_topic = deadletter_topic
        # Whether the worker holds a commit's worth of output records, counting so many more.
        self.holds_too_much = holds_too_much
        self.dead_letters = 0
        self.dead_letter_reasons: Counter[str] = Counter()
        self.caches: dict[int, dict[Callable, Any]] = {}

    def count_dead_letter(self, error: str) -> None:
        self.dead_letters += 1
        self.dead_letter_reasons[error.split(":", 1)[0][:60]] += 1

    def partition_cache(self, context: HandlerContext,
                        factory: Callable[[HandlerContext], Cached]) -> Cached:
        """`factory(context)`, made once per partition until `forget_caches` of it."""
        caches = self.caches.setdefault(context.partition, {})
        value = caches.get(factory)
        if value is None:
            value = caches[factory] = factory(context)
        return value

    def forget_caches(self, partition: int) -> None:
        self.caches.pop(partition, None)
