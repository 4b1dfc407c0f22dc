"""Transactional producers by id: the engine's transactions use Faust's producers.

Limit worked around: Faust keeps a transactional producer per transactional
id and a lock around each, but exposes neither, nor a way to replace a
fenced one; aiokafka exposes neither a producer's transaction state nor
whether its sender routine is still alive. transactions.py drives each
slot's transaction through these (see docs/exactly-once.md).

Upstream: no upstream issue found.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.producer.sender import Sender
from faust.transport.drivers.aiokafka import Producer as FaustProducer

from app.engine.faust.patching import Patch, PrivateAttribute


def transaction_producer(faust_producer: Any, transactional_id: str) -> tuple[Any, Any]:
    """Faust's producer of `transactional_id` and the lock Faust takes around it (or None)."""
    return (faust_producer._transaction_producers.get(transactional_id),
            faust_producer._trn_locks.get(transactional_id))


async def renew_transaction_producer(faust_producer: Any, transactional_id: str,
                                     timeout_s: float) -> Any:
    """A new, started producer of `transactional_id`, put where Faust keeps the old one."""
    fresh = faust_producer._new_producer(transactional_id=transactional_id)
    await asyncio.wait_for(fresh.start(), timeout_s)
    faust_producer._transaction_producers[transactional_id] = fresh
    return fresh


def transaction_state(producer: AIOKafkaProducer) -> Any:
    """aiokafka's `TransactionState` of the producer (exposed nowhere else)."""
    return producer._txn_manager.state


def sender_dead(producer: AIOKafkaProducer) -> bool:
    """Whether the producer's sender routine has ended (it then never sends again)."""
    task = producer._sender.sender_task
    return task is not None and task.done()


PATCHES: tuple[Patch, ...] = ()
PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = (
    (FaustProducer, "_transaction_producers"),
    (FaustProducer, "_trn_locks"),
    (FaustProducer, "_new_producer"),
    (AIOKafkaProducer, "_txn_manager"),
    (AIOKafkaProducer, "_sender"),
    (Sender, "sender_task"),
)
