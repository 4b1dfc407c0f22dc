"""An account's balance: what its settlement events froze, settled and clawed back.

A balance is `Balance(frozen, settled, clawed_back)` in minor units. Each
settlement event of one (order, participant) carries a sequence number; an
event at or below the last one applied for that payee changes nothing, so
a replayed event is harmless.
"""

from __future__ import annotations

from typing import NamedTuple


class Balance(NamedTuple):
    frozen: int = 0
    settled: int = 0
    clawed_back: int = 0

    @property
    def commissions(self) -> int:
        return self.frozen + self.settled + self.clawed_back


def apply_settlement(balance: Balance, state: str, amount: int) -> Balance:
    """The balance after one settlement event (`frozen`, `adjusted`, `settled`, `clawback`)."""
    if state == "settled":
        return balance._replace(frozen=balance.frozen - amount,
                                settled=balance.settled + amount)
    if state == "clawback":
        return balance._replace(clawed_back=balance.clawed_back + amount)
    return balance._replace(frozen=balance.frozen + amount)  # frozen, adjusted


def is_new(seq: int, last_applied: int | None) -> bool:
    """Whether a payee's settlement event `seq` comes after the last one applied."""
    return seq > (last_applied or 0)
