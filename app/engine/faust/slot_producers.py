"""Slot producers: the engine starts its slots' producers where Faust starts its own.

Limit worked around: in exactly-once mode Faust starts a transactional
producer per assigned partition on every assignment, before table recovery:
the moment a new owner must fence its partitions' earlier writers. It has
no hook there for anyone else, so `TransactionManager.on_rebalance` is
wrapped: after Faust's, the engine of the app (if any) starts the producers
of its larger slots in the same call (see slots.py, transactions.py).

Upstream: no upstream issue found.
"""

from __future__ import annotations

from typing import Any

from faust.transport.consumer import TransactionManager

from app.engine.faust.delivery import engine_of
from app.engine.faust.patching import Patch, PrivateAttribute

_faust_on_rebalance = TransactionManager.on_rebalance


async def _start_transactions(self: TransactionManager, assigned: Any, revoked: Any,
                              newly_assigned: Any) -> None:
    await _faust_on_rebalance(self, assigned, revoked, newly_assigned)
    engine = engine_of(self.app)
    if engine is not None:
        await engine.start_slot_producers(assigned)


PATCHES = (Patch(TransactionManager, "on_rebalance", _start_transactions),)
PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = ((TransactionManager, "on_rebalance"),)
