"""Per-partition transactions without Kafka: a producer whose sender died is replaced."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka.producer.transaction_manager import TransactionState

from app.engine.transactions import PartitionTransactions, Record


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
        return None

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
        transactions = PartitionTransactions(app, group_id="engine")
        await transactions.commit(3, "in", [Record("out", 3, b"k", b"v")], {"in": 8})
        assert created == [tid] and faust_producer._transaction_producers[tid] is fresh
        assert dead.stopped and dead.sent == [] and dead.committed == 0
        assert fresh.sent == [("out", 3)] and fresh.committed == 1
    asyncio.run(scenario())
