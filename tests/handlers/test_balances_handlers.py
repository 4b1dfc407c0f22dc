"""The balances pipeline: each account's balance follows its settlement events once each."""

from __future__ import annotations

import orjson

import tables.balances
from agents.balances import Balances
from app.domain.balances import Balance
from app.engine.memory import MemoryTables
from app.engine.partitioning import partition_for
from tests.handlers.contexts import new_context

PARTITIONS = 4
T = 1_700_000_000_000


def settlement(state: str, amount: int, seq: int, *, account_id: str = "p1",
               participant: str = "promoter", order_id: str = "o1") -> bytes:
    return orjson.dumps({
        "event_id": f"{order_id}-{participant}-{seq}", "order_id": order_id,
        "account_id": account_id, "participant": participant, "state": state,
        "amount": amount, "due_ms": None, "ts_ms": T, "cause": "paid", "seq": seq})


class Accounts:
    """The balances handler on the partition of account p1."""

    def __init__(self) -> None:
        self.partition = partition_for(b"p1", PARTITIONS)
        self.ctx = new_context(partition=self.partition, partitions=PARTITIONS, now_ms=T)
        self.tables = tables.balances.define(MemoryTables())
        self.balances = Balances(self.tables)

    def deliver(self, value: bytes) -> None:
        self.ctx.deliver(self.balances.on_settlement, "settlements", None, value)

    def balance(self, account_id: str = "p1") -> Balance | None:
        return self.ctx.get(self.tables.balances, account_id.encode())


def test_frozen_then_settled_then_clawed_back():
    accounts = Accounts()

    accounts.deliver(settlement("frozen", 1097, seq=1))
    assert accounts.balance() == Balance(frozen=1097)
    accounts.deliver(settlement("adjusted", -247, seq=2))
    assert accounts.balance() == Balance(frozen=850)
    accounts.deliver(settlement("settled", 850, seq=3))
    assert accounts.balance() == Balance(settled=850)
    accounts.deliver(settlement("clawback", -850, seq=4))
    assert accounts.balance() == Balance(settled=850, clawed_back=-850)
    assert accounts.balance().commissions == 0
    assert accounts.ctx.dead_letters == []


def test_a_replayed_or_older_settlement_changes_nothing():
    accounts = Accounts()
    accounts.deliver(settlement("frozen", 1097, seq=1))
    accounts.deliver(settlement("settled", 1097, seq=2))

    accounts.deliver(settlement("settled", 1097, seq=2))
    accounts.deliver(settlement("frozen", 1097, seq=1))

    assert accounts.balance() == Balance(settled=1097)


def test_sequence_numbers_count_per_order_and_participant():
    accounts = Accounts()
    accounts.deliver(settlement("frozen", 100, seq=1))
    accounts.deliver(settlement("frozen", 20, seq=1, order_id="o2"))
    accounts.deliver(settlement("frozen", 3, seq=1, participant="group_leader"))

    assert accounts.balance() == Balance(frozen=123)


def test_a_settlement_of_another_partitions_account_is_dead_lettered():
    accounts = Accounts()
    elsewhere = next(account for n in range(1000) if partition_for(
        (account := f"a{n}").encode(), PARTITIONS) != accounts.partition)

    accounts.deliver(settlement("frozen", 100, seq=1, account_id=elsewhere))

    assert accounts.ctx.dead_letters == ["settlement not keyed by its account_id"]
    assert accounts.balance(elsewhere) is None
    assert accounts.tables.balance_seen.scan(accounts.partition) == []


def test_an_invalid_settlement_is_dead_lettered_with_its_reason():
    accounts = Accounts()
    invalid = orjson.loads(settlement("frozen", 100, seq=1))
    invalid["state"] = "paid_out"

    accounts.deliver(orjson.dumps(invalid))

    (reason,) = accounts.ctx.dead_letters
    assert reason.startswith("state: must be one of")
    assert accounts.balance() is None
