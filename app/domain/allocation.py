"""Operator allocation (SPEC 14, seed 004): to which operator a selected buyer is given.

Pure: the shop's operators, how many buyers each was given on each day and in
total, and what a plan requires. Whoever holds a shop's counts applies one
allocation after another with `allocate`, so caps hold exactly as long as
one owner decides for the shop at a time (docs/plans.md, "Operator
allocation").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DAYS_KEPT = 7  # daily counts kept per operator (a plan's "today" is in its own zone)


@dataclass(frozen=True, slots=True)
class Operator:
    operator_id: str
    shop_id: str
    qualifications: frozenset[str]
    daily_cap: int
    total_cap: int
    active: bool = True


@dataclass(frozen=True, slots=True)
class Load:
    """An operator's assignments: per day (ISO date, newest last) and in total."""

    days: tuple[tuple[str, int], ...] = ()
    total: int = 0

    def on(self, day: str) -> int:
        return next((count for known, count in self.days if known == day), 0)

    def plus_one(self, day: str) -> Load:
        days = dict(self.days)
        days[day] = days.get(day, 0) + 1
        return Load(tuple(sorted(days.items()))[-DAYS_KEPT:], self.total + 1)


NO_LOAD = Load()


def candidate(operator: Operator, requires: frozenset[str], load: Load, day: str) -> bool:
    """Active, qualified for everything the plan requires, and under both caps."""
    return (operator.active and requires <= operator.qualifications
            and load.on(day) < operator.daily_cap and load.total < operator.total_cap)


def match(operators: Iterable[Operator], requires: frozenset[str], loads: Mapping[str, Load],
          day: str) -> Operator | None:
    """The candidate with the fewest assignments today, then in total, then the smallest
    id; None when nobody is left under the caps."""
    best: tuple[int, int, str] | None = None
    chosen = None
    for operator in operators:
        load = loads.get(operator.operator_id, NO_LOAD)
        if not candidate(operator, requires, load, day):
            continue
        rank = (load.on(day), load.total, operator.operator_id)
        if best is None or rank < best:
            best, chosen = rank, operator
    return chosen


def allocate(operators: Iterable[Operator], requires: frozenset[str],
             loads: Mapping[str, Load], day: str) -> tuple[Operator | None, dict[str, Load]]:
    """One buyer's allocation: the operator (None: capped) and the loads after it."""
    operators = tuple(operators)
    chosen = match(operators, requires, loads, day)
    if chosen is None:
        return None, dict(loads)
    after = dict(loads)
    after[chosen.operator_id] = after.get(chosen.operator_id, NO_LOAD).plus_one(day)
    return chosen, after

