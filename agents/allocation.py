"""Operator allocation in a shop's partition (SPEC 14): the buyers `assign` plans selected,
given to the shop's operators under caps that hold whatever the number of workers.

Buyers are partitioned by buyer, but an operator's caps count every buyer of the
shop. So the buyer partitions only decide whom an occurrence selects (recall, in
agents/plans.py) and send each selected buyer, and the end of their task, on
internal.assign-requests keyed by shop. One partition, the shop's, keeps the
shop's operators' counts and allocates: each allocation, the counts it changes,
the assignment and the operation record are one transaction of that partition,
and the transactional fencing of its slot lets no second owner commit beside
it. So no operator goes above a cap, however many workers run, die or join.

A fire time's requests wait until every buyer partition reported its task of
each of the shop's `assign` plans firing then done (or until the lateness
limit passed), so the plans are allocated by priority, highest first, then by
plan id and buyer id, whatever arrived first. An event plan's requests are
allocated as they come. A request seen again (a replay) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import orjson

from app.domain.allocation import NO_LOAD, Operator, allocate
from app.domain.operations import record_id
from app.domain.periods import time_zone
from app.domain.plans import EVENT, PAUSED, Plan, fire_times
from app.domain.plans import STOPPED as PLAN_STOPPED
from app.domain.triggers import occurrence_id
from app.engine.handler_context import HandlerContext
from app.records.allocation import (
    END,
    AssignRequest,
    assignment,
    decode_assign_request,
    decode_assignment,
)
from app.records.operations import OperationRecord
from app.sinks.fanout import SinkRegistry, fan_out
from tables import every_table
from tables.allocation import AllocationTables

if TYPE_CHECKING:
    from app.config.settings import Settings
    from app.engine.processor import Engine
    from app.kafka.topics import Topics
    from app.services.catalog import Catalog


SEP = b"\x1f"
NO_OPERATOR = "no operator under the caps"
ASSIGNED_TODAY = "assigned today by a plan of the shop"
GROUPS_PER_TICK = 200   # (fire time, plan) groups of a partition looked at per tick
KEPT_MS = 8 * 86_400_000  # how long allocations are remembered against replays
PRIORITY_OFFSET = 10**17  # keys sort by priority (any JSON-safe integer), highest first


class AllocationCatalog(Protocol):
    plans: dict[str, Plan]

    def operators_of(self, shop_id: str) -> list[Operator]: ...


@dataclass(frozen=True, slots=True)
class AllocationTopics:
    assignments: str
    operation_records: str


@dataclass(frozen=True, slots=True)
class AllocationRules:
    default_tz: str
    max_lateness_ms: int
    partitions: int
    page: int = 500  # requests one partition allocates per tick


class Allocator:
    """The allocation handlers of the engine, one instance per worker."""

    def __init__(self, *, topics: AllocationTopics, tables: AllocationTables,
                 rules: AllocationRules, catalog: AllocationCatalog,
                 sinks: SinkRegistry) -> None:
        self.topics = topics
        self.tables = tables
        self.rules = rules
        self.catalog = catalog
        self.sinks = sinks
        self._fires: dict[tuple[str, int], tuple[Plan, bool]] = {}

    # -- requests and task ends, in the shop's partition -----------------------------

    def on_request(self, ctx: HandlerContext, key: bytes | None, value: bytes | None) -> None:
        request = decode_assign_request(key, value, self.rules.partitions)
        if request.kind == END:
            ends_key = _key(_ms(request.fire_ms), request.shop_id, request.occurrence_id)
            ends = ctx.get(self.tables.assign_ends, ends_key) or ()
            if request.partition not in ends:
                ctx.put(self.tables.assign_ends, ends_key,
                        tuple(sorted((*ends, request.partition))))
            return
        assert request.buyer_id is not None
        if ctx.get(self.tables.allocations, self._allocation_key(request)) is not None:
            return  # allocated already: a replay
        plan = self.catalog.plans.get(request.plan_id)
        priority = plan.assignment.priority if plan is not None and plan.assignment else 0
        ctx.put(self.tables.assign_queue, _key(
            request.shop_id, _ms(request.fire_ms), b"%020d" % (PRIORITY_OFFSET - priority),
            request.plan_id, request.buyer_id, request.occurrence_id), request)

    def on_assignment(self, ctx: HandlerContext, key: bytes | None, value: bytes | None) -> None:
        """An assignment in its operator's partition: kept for the operator's view, once."""
        found = decode_assignment(key, value)
        stored = _key(found["operator_id"], _ms(found["ts_ms"]), found["assignment_id"])
        if ctx.get(self.tables.operator_assignments, stored) is None:
            ctx.put(self.tables.operator_assignments, stored, found)

    # -- the timer: allocate what is ready ----------------------------------------------

    def allocate_ready(self, ctx: HandlerContext) -> None:
        """Allocate the ready requests of the partition's shops, a page per tick: a
        group (fire time, priority, plan) after another in key order; a paused plan's
        and a fire time still waiting for its tasks are passed over."""
        budget, after = self.rules.page, None
        for _group in range(GROUPS_PER_TICK):
            if budget <= 0 or ctx.backlogged():
                return
            first = self.tables.assign_queue.keys_with_prefix(ctx.partition, b"",
                                                             after=after, limit=1)
            if not first:
                break
            group = first[0].rsplit(SEP, 2)[0] + SEP  # shop, fire, priority, plan
            after = group[:-1] + b"\xff"
            budget -= self._allocate_group(ctx, group, budget)
        self._forget_old(ctx)

    def _allocate_group(self, ctx: HandlerContext, group: bytes, budget: int) -> int:
        shop, fire, _priority, plan_id = (part.decode() for part in group[:-1].split(SEP))
        fire_ms = int(fire)
        plan = self.catalog.plans.get(plan_id)
        if plan is not None and plan.state == PAUSED:
            return 0  # its requests wait, unread, for the resume
        keys = self.tables.assign_queue.keys_with_prefix(ctx.partition, group, limit=budget)
        if plan is None or plan.state == PLAN_STOPPED:
            for key in keys:  # a stopped plan allocates nothing more
                ctx.delete(self.tables.assign_queue, key)
            return len(keys)
        if not self._ready(ctx, shop, fire_ms):
            return 0
        for key in keys:
            request = ctx.get(self.tables.assign_queue, key)
            ctx.delete(self.tables.assign_queue, key)
            if request is not None:
                self._allocate_one(ctx, plan, request)
        return len(keys)

    def _ready(self, ctx: HandlerContext, shop_id: str, fire_ms: int) -> bool:
        """Every buyer partition finished its task of each active `assign` plan of the shop
        firing at `fire_ms`, or the fire time is older than the lateness limit."""
        if ctx.now_ms - fire_ms > self.rules.max_lateness_ms:
            return True
        for plan in self.catalog.plans.values():
            if plan.shop_id != shop_id or plan.action.kind != "assign" \
                    or plan.trigger.kind == EVENT or plan.state == PAUSED \
                    or not self._fires_at(plan, fire_ms):
                continue
            ends = ctx.get(self.tables.assign_ends, _key(
                _ms(fire_ms), shop_id, occurrence_id(plan.plan_id, fire_ms))) or ()
            if len(ends) < self.rules.partitions:
                return False
        return True

    def _fires_at(self, plan: Plan, fire_ms: int) -> bool:
        known = self._fires.get((plan.plan_id, fire_ms))
        if known is not None and known[0] is plan:
            return known[1]
        fires = next(iter(fire_times(plan, fire_ms - 1, self.rules.default_tz)), None) == fire_ms
        if len(self._fires) > 10_000:
            self._fires.clear()
        self._fires[plan.plan_id, fire_ms] = (plan, fires)
        return fires

    def _allocate_one(self, ctx: HandlerContext, plan: Plan, request: AssignRequest) -> None:
        tables, buyer_id, shop_id = self.tables, request.buyer_id, request.shop_id
        assert buyer_id is not None
        done_key = self._allocation_key(request)
        if ctx.get(tables.allocations, done_key) is not None:
            return
        day = _day(request.fire_ms, plan.zone(self.rules.default_tz))
        today_key = _key(day, shop_id, buyer_id)
        if ctx.get(tables.assigned_today, today_key) is not None:
            self._record(ctx, request, "capped", ASSIGNED_TODAY)
            ctx.put(tables.allocations, done_key, "")
            return
        operators = self.catalog.operators_of(shop_id)
        loads = {operator.operator_id: ctx.get(tables.operator_loads, _key(
            shop_id, operator.operator_id)) or NO_LOAD for operator in operators}
        requires = plan.assignment.requires if plan.assignment else frozenset()
        chosen, after = allocate(operators, requires, loads, day)
        if chosen is None:
            self._record(ctx, request, "capped", NO_OPERATOR)
            ctx.put(tables.allocations, done_key, "")
            return
        operator_id = chosen.operator_id
        ctx.put(tables.operator_loads, _key(shop_id, operator_id), after[operator_id])
        ctx.put(tables.assigned_today, today_key, operator_id)
        ctx.put(tables.allocations, done_key, operator_id)
        given = assignment(plan_id=plan.plan_id, occurrence_id=request.occurrence_id,
                           buyer_id=buyer_id, operator_id=operator_id, shop_id=shop_id,
                           ts_ms=ctx.now_ms)
        ctx.send(self.topics.assignments, operator_id.encode(), orjson.dumps(given))
        fan_out(ctx, self.sinks, "assignments", operator_id, given["assignment_id"], given,
                {"shop_id": shop_id, "plan_id": plan.plan_id, "operator_id": operator_id},
                to=plan.action.sink if self.sinks.configured(plan.action.sink) else None)
        self._record(ctx, request, "sent", operator_id)

    def _record(self, ctx: HandlerContext, request: AssignRequest, kind: str, ref: str) -> None:
        assert request.buyer_id is not None
        record = OperationRecord(record_id(request.occurrence_id, request.buyer_id, kind),
                                 request.plan_id, request.occurrence_id, request.buyer_id,
                                 request.shop_id, request.variant, kind, ref, ctx.now_ms)
        ctx.send(self.topics.operation_records, request.buyer_id.encode(), record.encode())

    def _forget_old(self, ctx: HandlerContext) -> None:
        """Allocations, task ends and days' assignments older than `KEPT_MS`, a page a tick
        (their keys begin with the fire time or the day)."""
        oldest = _ms(ctx.now_ms - KEPT_MS)
        for table in (self.tables.allocations, self.tables.assign_ends):
            for key in table.keys_with_prefix(ctx.partition, b"", limit=self.rules.page):
                if key[:16] >= oldest:
                    break
                ctx.delete(table, key)
        oldest_day = _day(ctx.now_ms - KEPT_MS, "UTC").encode()
        for key in self.tables.assigned_today.keys_with_prefix(ctx.partition, b"",
                                                                limit=self.rules.page):
            if key[:10] >= oldest_day:
                break
            ctx.delete(self.tables.assigned_today, key)

    @staticmethod
    def _allocation_key(request: AssignRequest) -> bytes:
        assert request.buyer_id is not None
        return _key(_ms(request.fire_ms), request.occurrence_id, request.buyer_id)


def _key(*parts: str | bytes) -> bytes:
    return SEP.join(part if isinstance(part, bytes) else part.encode() for part in parts)


def _ms(ms: int) -> bytes:
    return b"%016d" % max(ms, 0)


def _day(at_ms: int, zone: str) -> str:
    return datetime.fromtimestamp(at_ms / 1000, time_zone(zone)).date().isoformat()


def create(*, engine: Engine, topics: Topics, settings: Settings, catalog: Catalog,
           sink_registry: SinkRegistry, allocation_tables: AllocationTables) -> Allocator:
    return Allocator(
        topics=AllocationTopics(topics.assignments, topics.operation_records),
        tables=allocation_tables,
        rules=AllocationRules(default_tz=settings.plan_tz,
                              max_lateness_ms=settings.plan_max_lateness_ms,
                              partitions=engine.partitions),
        catalog=catalog, sinks=sink_registry)


def register(*, engine: Engine, topics: Topics, sink_registry: SinkRegistry,
             allocation_tables: AllocationTables, allocator: Allocator) -> None:
    """Read the assign requests (by shop) and the assignments (by operator); allocate on
    the engine's timer."""
    engine.pipeline("allocation", {
        topics.assign_requests: allocator.on_request,
        topics.assignments: allocator.on_assignment,
    }, ticks=[allocator.allocate_ready],
        outputs=(topics.assignments, topics.operation_records, *sink_registry.fan_out_topics),
        tables=every_table(allocation_tables))

