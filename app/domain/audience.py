"""Audience rules of operation plans (SPEC 13): which buyers a plan selects.

A rule is a JSON tree: `{"all": [rules]}`, `{"any": [rules]}`, `{"not": rule}`
or one predicate over the buyer's profile at the shop, the lists the buyer is
on and the buyer's own behaviour at the shop (from the engine's clicks and
orders). `parse` checks a tree once (a bad one is refused, naming the path
of the part at fault, e.g. `audience.all[1].level_gte`); `selects` evaluates
it for one buyer at one instant, with nothing else to look up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class RuleError(ValueError):
    """A malformed audience rule; `path` names the part at fault."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


@dataclass(frozen=True, slots=True)
class Member:
    """A buyer's profile at a shop (`cps.members`)."""

    level: int = 0
    tags: frozenset[str] = frozenset()
    follower: bool = False
    birthday: str | None = None   # "MM-DD"
    tz: str | None = None


@dataclass(frozen=True, slots=True)
class Behaviour:
    """A buyer's clicks and orders at a shop, as the engine saw them."""

    last_click_ms: int | None = None
    last_paid_ms: int | None = None
    paid_orders: int = 0
    paid_amount: int = 0
    unpaid_created_ms: tuple[int, ...] = ()  # when each order created and not paid was made


@dataclass(frozen=True, slots=True)
class Buyer:
    member: Member = field(default_factory=Member)
    lists: frozenset[str] = frozenset()
    behaviour: Behaviour = field(default_factory=Behaviour)


@dataclass(frozen=True, slots=True)
class Rule:
    op: str                      # all | any | not | a predicate's name
    value: Any = None            # the predicate's argument
    parts: tuple[Rule, ...] = ()


_COUNTS = ("level_gte", "clicked_within_ms", "no_paid_within_ms", "created_unpaid_for_ms",
           "paid_orders_gte", "paid_amount_gte")
_TEXTS = ("tag", "list")
BIRTHDAYS = ("today", "this_week", "this_month")
PREDICATES = (*_COUNTS, *_TEXTS, "follower", "birthday")


def parse(tree: Any, path: str = "audience") -> Rule:
    if not isinstance(tree, dict) or len(tree) != 1:
        raise RuleError(path, "must be an object with exactly one key: all, any, not or one "
                              f"of {', '.join(PREDICATES)}")
    (op, value), = tree.items()
    where = f"{path}.{op}"
    if op in ("all", "any"):
        if not isinstance(value, list) or not value:
            raise RuleError(where, "must be a non-empty list of rules")
        return Rule(op, parts=tuple(parse(part, f"{where}[{n}]")
                                    for n, part in enumerate(value)))
    if op == "not":
        return Rule(op, parts=(parse(value, where),))
    if op in _COUNTS:
        if type(value) is not int or value < 0:
            raise RuleError(where, "must be a non-negative integer")
    elif op in _TEXTS:
        if type(value) is not str or not value or len(value) > 128:
            raise RuleError(where, "must be a string of 1-128 characters")
    elif op == "follower":
        if type(value) is not bool:
            raise RuleError(where, "must be true or false")
    elif op == "birthday":
        if value not in BIRTHDAYS:
            raise RuleError(where, f"must be one of {', '.join(BIRTHDAYS)}")
    else:
        raise RuleError(where, f"unknown; use all, any, not or one of {', '.join(PREDICATES)}")
    return Rule(op, value)


def selects(rule: Rule, buyer: Buyer, now_ms: int, plan_tz: str) -> bool:
    op, value = rule.op, rule.value
    if op == "all":
        return all(selects(part, buyer, now_ms, plan_tz) for part in rule.parts)
    if op == "any":
        return any(selects(part, buyer, now_ms, plan_tz) for part in rule.parts)
    if op == "not":
        return not selects(rule.parts[0], buyer, now_ms, plan_tz)
    member, behaviour = buyer.member, buyer.behaviour
    if op == "level_gte":
        return member.level >= value
    if op == "tag":
        return value in member.tags
    if op == "follower":
        return member.follower is value
    if op == "list":
        return value in buyer.lists
    if op == "birthday":
        return _birthday(member, value, now_ms, plan_tz)
    if op == "clicked_within_ms":
        return behaviour.last_click_ms is not None and behaviour.last_click_ms >= now_ms - value
    if op == "no_paid_within_ms":
        return behaviour.last_paid_ms is None or behaviour.last_paid_ms < now_ms - value
    if op == "created_unpaid_for_ms":
        return any(created <= now_ms - value for created in behaviour.unpaid_created_ms)
    if op == "paid_orders_gte":
        return behaviour.paid_orders >= value
    return behaviour.paid_amount >= value  # paid_amount_gte


def _birthday(member: Member, when: str, now_ms: int, plan_tz: str) -> bool:
    if member.birthday is None:
        return False
    today = datetime.fromtimestamp(now_ms / 1000, _zone(member.tz, plan_tz)).date()
    if when == "today":
        return _birthday_in(member.birthday, today.year) == today
    if when == "this_month":
        return int(member.birthday[:2]) == today.month
    monday = today - timedelta(days=today.weekday())
    week = {monday + timedelta(days=n) for n in range(7)}
    return any(_birthday_in(member.birthday, year) in week
               for year in {monday.year, (monday + timedelta(days=6)).year})


def _birthday_in(birthday: str, year: int) -> date | None:
    """The birthday's date in `year`; 29 February is kept on the 28th in other years."""
    month, day = int(birthday[:2]), int(birthday[3:5])
    try:
        return date(year, month, day)
    except ValueError:
        return date(year, 2, 28) if (month, day) == (2, 29) else None


def _zone(buyer_tz: str | None, plan_tz: str) -> ZoneInfo:
    """The buyer's time zone, else the plan's (a buyer's unknown zone counts as absent)."""
    if buyer_tz:
        try:
            return ZoneInfo(buyer_tz)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(plan_tz)
