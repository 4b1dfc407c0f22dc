"""Slot transactions without Kafka: ids, slot producers, a producer whose sender died."""

from __future__ import annotations

import asyncio
import tracemalloc
from types import SimpleNamespace

import orjson
from aiokafka.producer.transaction_manager import TransactionState

from app.engine.transactions import Record, SlotTransactions, compact


class FakeProducer:
    """Just what a transaction uses; `dead` stands for aiokafka's sender routine having died."""

    def __init__(self, *, dead: bool = False) -> None:
        self.sent: list[tuple[str, int]] = []
        self.committed = 0
        self.stopped = False
        task = asyncio.get_running_loop().create_future()
        if dead:
            task.set_result(None)
        self._sender = SimpleNamespace(sender_task=task)
        self._txn_manager = SimpleNamespace(state=TransactionState.READY)
        self.client = SimpleNamespace(add_topic=self._known)

    async def _known(self, topic: str) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    async def begin_transaction(self) -> None:
        self._txn_manager.state = TransactionState.IN_TRANSACTION

    def create_batch(self):
        return SimpleNamespace(append=lambda **record: record)

    async def send_batch(self, batch, topic, *, partition):
        self.sent.append((topic, partition))
        done = asyncio.get_running_loop().create_future()
        done.set_result(SimpleNamespace(offset=0))
        return done

    async def send_offsets_to_transaction(self, offsets, group_id) -> None:
        self.offsets = dict(offsets)

    async def commit_transaction(self) -> None:
        self.committed += 1
        self._txn_manager.state = TransactionState.READY


def test_a_producer_whose_sender_died_is_replaced_by_one_of_the_same_id():
    async def scenario():
        tid = "engine-0-3"
        dead, fresh = FakeProducer(dead=True), FakeProducer()
        created: list[str] = []

        def new_producer(*, transactional_id: str) -> FakeProducer:
            created.append(transactional_id)
            return fresh

        faust_producer = SimpleNamespace(
            _transaction_producers={tid: dead}, _trn_locks={tid: asyncio.Lock()},
            _new_producer=new_producer)
        app = SimpleNamespace(producer=faust_producer, conf=SimpleNamespace(id="engine"),
                              assignor=SimpleNamespace(group_for_topic=lambda topic: 0))
        transactions = SlotTransactions(app, group_id="engine")
        await transactions.commit((3, 4), "in", [Record("out", 3, b"k", b"v")],
                                  {("in", 3): 8})
        assert created == [tid] and faust_producer._transaction_producers[tid] is fresh
        assert dead.stopped and dead.sent == [] and dead.committed == 0
        assert fresh.sent == [("out", 3)] and fresh.committed == 1
    asyncio.run(scenario())


class FaustProducer:
    """Faust's producer as the slots use it: transactional producers started and stopped by id."""

    def __init__(self) -> None:
        self._transaction_producers: dict[str, FakeProducer] = {}
        self._trn_locks: dict[str, asyncio.Lock] = {}
        self.stopped: list[str] = []

    async def maybe_begin_transaction(self, tid: str) -> None:
        producer = self._transaction_producers[tid] = FakeProducer()
        self._trn_locks[tid] = asyncio.Lock()
        await producer.begin_transaction()

    async def stop_transaction(self, tid: str) -> None:
        self.stopped.append(tid)
        self._transaction_producers.pop(tid)


def slot_transactions() -> tuple[SlotTransactions, FaustProducer]:
    faust_producer = FaustProducer()
    app = SimpleNamespace(producer=faust_producer, conf=SimpleNamespace(id="cps"),
                          assignor=SimpleNamespace(group_for_topic=lambda topic: 0))
    return SlotTransactions(app, group_id="cps"), faust_producer


def test_slots_keep_faust_s_id_for_one_partition_and_name_their_range_otherwise():
    async def scenario():
        transactions, _ = slot_transactions()
        assert transactions.transactional_id((5, 6), "in") == "cps-0-5"
        assert transactions.transactional_id((4, 8), "in") == "cps-0-4to7"
    asyncio.run(scenario())


def test_every_assignment_renews_the_producers_of_the_larger_slots_around_the_owned():
    async def scenario():
        transactions, faust_producer = slot_transactions()
        await transactions.start_slot_producers({0, 1, 2, 3}, 8, "in")
        first = dict(faust_producer._transaction_producers)
        assert sorted(first) == ["cps-0-0to1", "cps-0-0to3", "cps-0-0to7", "cps-0-2to3"]
        # Another worker fenced them meanwhile: each is started anew, the stale ones stopped.
        await transactions.start_slot_producers({2, 3, 4}, 8, "in")
        assert sorted(faust_producer.stopped) == sorted(first)
        renewed = faust_producer._transaction_producers
        assert sorted(renewed) == ["cps-0-0to3", "cps-0-0to7", "cps-0-2to3", "cps-0-4to5",
                                   "cps-0-4to7"]
        assert all(renewed[tid] is not first.get(tid) for tid in renewed)
    asyncio.run(scenario())


def test_a_slot_commits_the_offsets_of_all_its_partitions_in_one_transaction():
    async def scenario():
        transactions, faust_producer = slot_transactions()
        await transactions.start_slot_producers({0, 1}, 2, "in")
        records = [Record("out", 1, b"a", b"1"), Record("changes", 0, b"b", b"2")]
        written = await transactions.commit((0, 2), "in", records,
                                            {("in", 0): 5, ("in", 1): 9, ("clicks", 1): 3})
        producer = faust_producer._transaction_producers["cps-0-0to1"]
        assert written == [0, 0] and producer.committed == 1
        assert sorted(producer.sent) == [("changes", 0), ("out", 1)]
        assert {(tp.topic, tp.partition): offset for tp, offset in producer.offsets.items()} == {
            ("in", 0): 5, ("in", 1): 9, ("clicks", 1): 3}
    asyncio.run(scenario())


def test_a_held_record_value_takes_only_its_own_size():
    event = {"action_id": "plan@1:buyer-0000001", "payload": {"coupon": "c"}}
    tracemalloc.start()
    try:
        held = [compact(orjson.dumps(event)) for _ in range(1000)]
        size, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held[0] == orjson.dumps(event)
    assert size < 1000 * (len(held[0]) + 200), size  # orjson's own buffer: 4 KiB each
    assert compact(None) is None
