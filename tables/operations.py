"""State of operation plans, partitioned by buyer (like the clicks and cps.plan_actions).

- members: "<shop_id>\\x1f<buyer_id>" -> Member (cps.members, re-keyed by buyer)
- list_entries: "<list_id>\\x1f<buyer_id>" -> True (cps.lists)
- behaviour: "<shop_id>\\x1f<buyer_id>" -> Facts, from the engine's own clicks and orders
- action_history: "<shop_id>\\x1f<buyer_id>" -> when the buyer's latest actions at the shop
  were decided (at most MAX_CAP), for frequency caps over all plans of the shop
- plan_fired: plan_id -> the last fire time this partition started (schedule, now)
- plan_progress: occurrence_id -> Progress of its task in this partition (event plans:
  one row "<plan_id>@events"; a run of fire times too late to start: one `missed` row;
  a plan whose work failed here: "<plan_id>@failed")
- plan_timers: agents.plans.timer_key (the plan id, length-prefixed, then the due ms) ->
  Timer: event triggers waiting for their delay, deferred buyers waiting for quiet hours
  to end; a plan's timers together, so a paused plan's hold back no other plan's
- member_records: "<buyer_id>\\x1f<record_id>" -> OperationRecord, each record once
- watches: "<shop_id>\\x1f<buyer_id>" -> Watch: the buyer's exposures to plans at the shop
  (actions, holdout decisions) and the orders traced for the rights granted, for the
  used, replenished and converted records
- outcome_waits: "<shop_id>\\x1f<buyer_id>" -> (shop_id, buyer_id): the buyer's watch is
  to be settled once every order event already in Kafka is read (agents/plans.py)
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import Any

import orjson

from app.domain.behaviour import Facts
from app.domain.execution import Progress
from app.domain.outcomes import Exposure, TracedOrder, Watch
from app.engine.processor import Engine
from app.records.operations import (
    OperationRecord,
    decode_stored_member,
    encode_member,
)


@dataclass(frozen=True, slots=True)
class Timer:
    plan_id: str
    occurrence_id: str
    buyer_id: str
    fire_ms: int
    cause: str             # "event" (a trigger's delay) or "deferred" (quiet hours)
    ref: str | None = None  # the triggering order id or click time


@dataclass(frozen=True, slots=True)
class OperationTables:
    # StateTable in a worker, any object with the same `read`/`scan` in tests.
    members: Any
    list_entries: Any
    behaviour: Any
    action_history: Any
    plan_fired: Any
    plan_progress: Any
    plan_timers: Any
    member_records: Any
    watches: Any
    outcome_waits: Any


def encode_facts(facts: Facts) -> bytes:
    return orjson.dumps([facts.last_click_ms, facts.last_paid_ms, facts.last_created_ms,
                         facts.paid, facts.unpaid, facts.closed])


def decode_facts(raw: bytes) -> Facts:
    # Rows written before closed orders were kept have five fields, and before paid times
    # were kept, paid orders have two (their time unknown: they convert nothing).
    last_click, last_paid, last_created, paid, unpaid, closed = [*orjson.loads(raw), ()][:6]
    return Facts(last_click, last_paid, last_created,
                 tuple((order, amount, at) for order, amount, at, *_ in
                       ([*entry, None] for entry in paid)),
                 tuple(map(tuple, unpaid)), tuple(closed))


def encode_watch(watch: Watch) -> bytes:
    return orjson.dumps([[astuple(exposure) for exposure in watch.exposures],
                         [astuple(order) for order in watch.orders]])


def decode_watch(raw: bytes) -> Watch:
    exposures, orders = orjson.loads(raw)
    return Watch(tuple(Exposure(*row) for row in exposures), tuple(
        TracedOrder(order_id, tuple(coupons), paid_ms, _pairs(paid_lines),
                    _pairs(created_lines), tuple(map(tuple, refunds)), closed_ms, completed_ms)
        for order_id, coupons, paid_ms, paid_lines, created_lines, refunds, closed_ms,
        completed_ms in orders))


def _pairs(rows: list) -> tuple:
    return tuple(map(tuple, rows))


def define(engine: Engine) -> OperationTables:
    def json_table(name: str, decode=lambda value: value, encode=lambda value: value):
        return engine.state_table(name, encode=lambda value: orjson.dumps(encode(value)),
                                  decode=lambda raw: decode(orjson.loads(raw)))

    return OperationTables(
        members=engine.state_table("members", encode=encode_member,
                                   decode=decode_stored_member),
        list_entries=engine.state_table("list_entries", encode=lambda _on: b"1",
                                        decode=lambda _raw: True),
        behaviour=engine.state_table("behaviour", encode=encode_facts, decode=decode_facts),
        action_history=json_table("action_history", decode=tuple),
        plan_fired=engine.state_table("plan_fired", encode=lambda ms: b"%d" % ms,
                                      decode=int),
        plan_progress=json_table("plan_progress", decode=Progress.decode,
                                 encode=Progress.encode),
        plan_timers=json_table("plan_timers", decode=lambda row: Timer(*row),
                               encode=astuple),
        member_records=json_table("member_records",
                                  decode=lambda row: OperationRecord(**row)),
        watches=engine.state_table("watches", encode=encode_watch, decode=decode_watch),
        outcome_waits=json_table("outcome_waits", decode=tuple),
    )
