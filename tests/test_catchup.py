"""Catch-up barriers without Kafka: tickets, end-offset requests, positions, hooks.

The broker's answers and the consumer's positions are set by each test; the
real path is covered by tests/integration/test_backlog.py.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka import AIOKafkaConsumer, TopicPartition

from app.engine.catchup import Barriers
from app.engine.faust.fetch_state import consumed_positions, fetched_ends
from app.kafka.connection import KafkaConnection

CLICKS, REKEYED = "clicks", "clicks-by-buyer"


class Broker:
    """End offsets the test sets; each request waits until the test answers it."""

    def __init__(self) -> None:
        self.ends: dict[tuple[str, int], int] = {}
        self.asked: list[list[tuple[str, int]]] = []
        self.answer = asyncio.Event()
        self.fail_next = False

    async def end_offsets(self, inputs):
        self.asked.append(list(inputs))
        await self.answer.wait()
        self.answer.clear()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("broker away")
        return {tp: self.ends.get(tp, 0) for tp in inputs}


class Setup:
    def __init__(self, *, runnable: bool = True) -> None:
        self.broker = Broker()
        self.runs: list[tuple[int, int]] = []
        self.runnable = runnable
        self.barriers = Barriers(KafkaConnection("unused"), run_in_partition=self.run,
                                 end_offsets=self.broker.end_offsets)
        self.catch_up = self.barriers.add((CLICKS, REKEYED), self.hook)

    def run(self, partition: int, action) -> bool:
        if self.runnable:
            action(SimpleNamespace(partition=partition))
        return self.runnable

    def hook(self, ctx, ticket: int) -> None:
        self.runs.append((ctx.partition, ticket))

    def request(self, partition: int, message=None) -> int:
        return self.catch_up.request(SimpleNamespace(partition=partition, message=message))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_ticket_is_reached_when_every_input_is_read_as_far_as_it_reached_after_the_ask():
    async def scenario():
        s = Setup()
        task = asyncio.ensure_future(Barriers._ask_loop(s.barriers))
        s.broker.ends = {(CLICKS, 0): 10, (REKEYED, 0): 3}
        ticket = s.request(0)
        assert s.request(0) == ticket  # asks before the request is sent share one ticket
        await settle()
        assert s.broker.asked == [[(CLICKS, 0), (REKEYED, 0)]]
        later = s.request(0)  # asked while the request is out: covered by the next one
        assert later == ticket + 1
        s.broker.answer.set()
        await settle()
        s.barriers.note_positions({(CLICKS, 0): 10, (REKEYED, 0): 2})
        assert s.runs == []  # the re-keyed clicks are not all read yet
        s.barriers.note_positions({(REKEYED, 0): 3})
        assert s.runs == [(0, ticket)]
        s.broker.ends = {(CLICKS, 0): 12, (REKEYED, 0): 3}
        s.broker.answer.set()
        await settle()
        assert s.runs == [(0, ticket)]
        s.barriers.note_positions({(CLICKS, 0): 12})
        assert s.runs == [(0, ticket), (0, later)]
        assert not s.barriers.watching
        assert (s.barriers.waits.total, s.barriers.requests) == (2, 2)
        task.cancel()

    asyncio.run(scenario())


def test_one_request_covers_every_partition_that_asked():
    async def scenario():
        s = Setup()
        task = asyncio.ensure_future(Barriers._ask_loop(s.barriers))
        tickets = {0: s.request(0), 3: s.request(3)}
        await settle()
        assert sorted(s.broker.asked[0]) == [(CLICKS, 0), (CLICKS, 3), (REKEYED, 0), (REKEYED, 3)]
        s.broker.answer.set()
        await settle()
        s.barriers.note_positions({tp: 0 for tp in s.barriers.watched()})
        assert sorted(s.runs) == sorted(tickets.items())
        task.cancel()

    asyncio.run(scenario())


def test_a_failed_request_is_sent_again_and_nothing_is_reached_meanwhile():
    async def scenario():
        s = Setup()
        s.broker.fail_next = True
        task = asyncio.ensure_future(Barriers._ask_loop(s.barriers))
        ticket = s.request(1)
        await settle()
        s.broker.answer.set()
        await settle()
        s.barriers.note_positions({(CLICKS, 1): 0, (REKEYED, 1): 0})
        assert s.runs == []
        await asyncio.sleep(0.15)  # the retry delay
        assert len(s.broker.asked) == 2
        s.broker.answer.set()
        await settle()
        assert s.runs == [(1, ticket)]
        task.cancel()

    asyncio.run(scenario())


def test_a_revoked_partition_forgets_its_tickets_and_ignores_a_late_answer():
    async def scenario():
        s = Setup()
        task = asyncio.ensure_future(Barriers._ask_loop(s.barriers))
        s.request(2)
        s.barriers.note_positions({(CLICKS, 2): 5, (REKEYED, 2): 5})
        await settle()
        s.barriers.forget([2])  # revoked while the request is out
        s.broker.answer.set()
        await settle()
        assert s.runs == [] and not s.barriers.watching
        # Positions noted before the rebalance do not count for the partition's new tickets.
        ticket = s.request(2)
        await settle()
        s.broker.answer.set()
        await settle()
        assert s.runs == []
        s.barriers.note_positions({(CLICKS, 2): 0, (REKEYED, 2): 0})
        assert s.runs == [(2, ticket)]
        task.cancel()

    asyncio.run(scenario())


def test_a_hook_the_partition_cannot_run_now_runs_at_a_later_check():
    async def scenario():
        s = Setup(runnable=False)
        task = asyncio.ensure_future(Barriers._ask_loop(s.barriers))
        ticket = s.request(0)
        await settle()
        s.broker.answer.set()
        await settle()
        s.barriers.note_positions({(CLICKS, 0): 0, (REKEYED, 0): 0})
        assert s.barriers.watching  # reached, but its hook has not run
        s.runnable = True
        s.barriers.note_positions({})
        assert s.runs == [(0, ticket)] and not s.barriers.watching
        task.cancel()

    asyncio.run(scenario())


def test_ends_a_fetch_reported_need_no_request_and_never_overtake_one():
    async def scenario():
        s = Setup()
        reported = {}
        s.barriers.read_fetched_ends = lambda source, inputs: reported.get(source)
        task = asyncio.ensure_future(Barriers._ask_loop(s.barriers))
        order = SimpleNamespace(topic="orders", partition=0)
        reported[("orders", 0)] = {(CLICKS, 0): 5, (REKEYED, 0): 1}
        first = s.request(0, order)
        assert s.request(0, order) == first  # the same ends: the same ticket
        reported[("orders", 0)] = {(CLICKS, 0): 7, (REKEYED, 0): 1}
        second = s.request(0, order)
        assert second > first
        await settle()
        assert s.broker.asked == [] and s.barriers.from_fetches == 3
        s.barriers.note_positions({(CLICKS, 0): 5, (REKEYED, 0): 1})
        assert s.runs == [(0, first)]
        # Not reported for this source (an input was not in its fetch): the broker is asked,
        # and a ticket from a fetch asked for meanwhile waits behind that one.
        asked = s.request(0, SimpleNamespace(topic="orders", partition=9))
        await settle()
        assert len(s.broker.asked) == 1
        reported[("orders", 0)] = {(CLICKS, 0): 1, (REKEYED, 0): 1}
        assert s.request(0, order) > asked  # a new open ticket, not one from the fetch
        s.broker.ends = {(CLICKS, 0): 9, (REKEYED, 0): 1}
        s.broker.answer.set()
        await settle()
        s.barriers.note_positions({(CLICKS, 0): 8})
        assert s.runs == [(0, first), (0, second)]
        task.cancel()

    asyncio.run(scenario())


def test_fetched_ends_are_used_only_when_as_recent_as_the_source_records_fetch():
    async def scenario():
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
        order, clicks, rekeyed = (TopicPartition("orders", 0), TopicPartition(CLICKS, 0),
                                  TopicPartition(REKEYED, 0))
        consumer._subscription.assign_from_user([order, clicks, rekeyed])
        faust_consumer = SimpleNamespace(_thread=SimpleNamespace(_consumer=consumer))
        state = consumer._subscription.subscription.assignment.state_value
        inputs = [(CLICKS, 0), (REKEYED, 0)]
        assert fetched_ends(faust_consumer, ("orders", 0), inputs) is None  # nothing fetched
        for tp, lso, at in ((order, 40, 1000), (clicks, 12, 1000), (rekeyed, 3, 999)):
            state(tp).lso, state(tp).timestamp = lso, at
        assert fetched_ends(faust_consumer, ("orders", 0), inputs) is None  # 999 is older
        state(rekeyed).timestamp = 1001
        assert fetched_ends(faust_consumer, ("orders", 0), inputs) == {(CLICKS, 0): 12,
                                                                        (REKEYED, 0): 3}

    asyncio.run(scenario())


def test_consumed_positions_reads_aiokafkas_position_including_skipped_markers():
    async def scenario():
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
        assigned, unassigned = TopicPartition(CLICKS, 0), TopicPartition(CLICKS, 1)
        consumer._subscription.assign_from_user([assigned])
        faust_consumer = SimpleNamespace(_thread=SimpleNamespace(_consumer=consumer))
        wanted = [(CLICKS, 0), (CLICKS, 1)]
        assert consumed_positions(faust_consumer, wanted) == {}  # no position yet
        # A transaction's last record at 41, its commit marker at 42: aiokafka moves past it.
        consumer._subscription.subscription.assignment.state_value(assigned).seek(43)
        assert consumed_positions(faust_consumer, wanted) == {(CLICKS, 0): 43}
        assert unassigned not in consumer._subscription.subscription.assignment.tps

    asyncio.run(scenario())
