"""Topic barriers (app/engine/handled.py): a ticket is met only once the group committed at
or past every partition's end offset as of the ask; hooks run in the ticket's partition."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka import TopicPartition

from app.engine.handled import TopicBarriers


class Offsets:
    """End offsets and the group's committed offsets, as the broker would answer."""

    def __init__(self, ends: dict[int, int]) -> None:
        self.ends = dict(ends)
        self.committed: dict[int, int] = {}
        self.fetches = 0

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict:
        return {tp: self.ends[tp.partition] for tp in partitions}

    async def list_consumer_group_offsets(self, group_id: str, partitions: list) -> dict:
        self.fetches += 1
        return {tp: SimpleNamespace(offset=self.committed.get(tp.partition, -1))
                for tp in partitions if tp.partition in self.committed}


def barriers(offsets: Offsets, runs: list, *, accept=lambda partition: True) -> tuple:
    def run_in_partition(partition: int, action) -> bool:
        if not accept(partition):
            return False
        action(SimpleNamespace(partition=partition))
        return True

    service = TopicBarriers(None, group_id="g", partitions=3,
                            run_in_partition=run_in_partition)
    barrier = service.add("orders", lambda ctx, ticket: runs.append((ctx.partition, ticket)))
    service._consumer = service._admin = offsets
    return service, barrier


def test_a_ticket_is_met_once_every_partition_is_committed_to_its_end_at_the_ask():
    offsets, runs = Offsets({0: 5, 1: 0, 2: 9}), []
    service, barrier = barriers(offsets, runs)
    first = barrier.request(SimpleNamespace(partition=1))
    assert barrier.request(SimpleNamespace(partition=1)) == first  # one open ticket
    asyncio.run(service._step())  # the ends are read
    assert runs == []
    offsets.ends = {0: 50, 1: 50, 2: 50}  # produced after they were read: not waited for
    offsets.committed = {0: 5, 2: 8}
    asyncio.run(service._step())
    assert runs == []  # partition 2 is one short; partition 1 was empty at the ask
    offsets.committed[2] = 9
    asyncio.run(service._step())
    assert runs == [(1, first)]
    assert not barrier.pending
    asyncio.run(service._step())
    assert runs == [(1, first)]


def test_a_partition_that_cannot_run_the_hook_now_gets_it_later_and_a_forgotten_one_never():
    offsets, runs = Offsets({0: 1, 1: 1, 2: 1}), []
    busy = {0}
    service, barrier = barriers(offsets, runs, accept=lambda p: p not in busy)
    zero = barrier.request(SimpleNamespace(partition=0))
    two = barrier.request(SimpleNamespace(partition=2))
    offsets.committed = {0: 1, 1: 1, 2: 1}
    asyncio.run(service._step())
    assert runs == [(2, two)]
    busy.clear()
    asyncio.run(service._step())
    assert runs == [(2, two), (0, zero)]
    barrier.request(SimpleNamespace(partition=1))
    service.forget({1})
    asyncio.run(service._step())
    assert len(runs) == 2 and not barrier.pending
