"""Operator allocation (SPEC 14) on the in-memory context: assign plans' buyers sent to the
shop's partition and given to operators under the caps, by priority, once a day."""

from __future__ import annotations

import orjson

import tables.allocation
import tables.operations
from agents.allocation import AllocationRules, AllocationTopics, Allocator
from agents.plans import Operations, PlanRules, PlanTopics
from app.domain.allocation import Operator
from app.domain.plans import parse_plan
from app.domain.sinks import Sink
from app.engine.memory import MemoryTables
from app.kafka.topics import Topics
from app.sinks.fanout import SinkRegistry
from tests.handlers.contexts import new_context

TOPICS = Topics("cps.")
T0 = 1_767_254_400_000  # 2026-01-01 08:00 UTC
DAY_MS = 86_400_000
CRM = Sink(sink_id="crm", kind="webhook", url="http://127.0.0.1:1/crm",
           streams=frozenset({"assignments"}))


def assign_plan(plan_id: str, priority: int, audience: dict, exclude: dict | None = None,
                **fields) -> object:
    return parse_plan({
        "plan_id": plan_id, "shop_id": "s1", "audience": audience, "created_ms": T0 - 1,
        "trigger": {"kind": "schedule", "cron": "0 9 * * *"}, "rate_per_s": 10_000,
        "burst": 10_000, "action": {"kind": "assign", "sink": "crm", "payload": {
            "requires": ["sales"], "priority": priority, "exclude": exclude}}, **fields})


class Catalog:
    def __init__(self, plans, operators) -> None:
        self.plans = {p.plan_id: p for p in plans}
        self.operators = {op.operator_id: op for op in operators}
        self.records_read = 0
        self.sinks = {"crm": CRM}
        self.channels = {}

    def operators_of(self, shop_id: str) -> list[Operator]:
        return sorted((op for op in self.operators.values() if op.shop_id == shop_id),
                      key=lambda op: op.operator_id)


class World:
    def __init__(self, plans, operators) -> None:
        self.catalog = Catalog(plans, operators)
        registry = SinkRegistry(self.catalog, "cps.", TOPICS.live)
        registry.ready_topics.add(registry.topic("crm"))
        memory = MemoryTables()
        self.hooks: list = []
        self.ops = Operations(
            topics=PlanTopics(TOPICS.profiles_by_buyer, TOPICS.plan_actions,
                              TOPICS.operation_records, TOPICS.sinks_deadletter,
                              inputs=(TOPICS.members,), assign_requests=TOPICS.assign_requests),
            tables=tables.operations.define(memory), rules=PlanRules("UTC", 3_600_000, 4),
            catalog=self.catalog, sinks=registry, share=lambda: 1.0,
            catch_up=self._at_once, after_handled=self._at_once)
        self.allocator = Allocator(
            topics=AllocationTopics(TOPICS.assignments, TOPICS.operation_records),
            tables=tables.allocation.define(memory),
            rules=AllocationRules("UTC", 3_600_000, partitions=1), catalog=self.catalog,
            sinks=registry)
        self.ctx = new_context(now_ms=T0, partitions=1)
        self.delivered = 0  # requests handed to the allocator so far

    def _at_once(self, _topics, hook):
        world = self

        class Barrier:
            tickets = 0

            def request(self, ctx) -> int:
                self.tickets += 1
                world.hooks.append((hook, self.tickets))
                return self.tickets
        return Barrier()

    def member(self, buyer: str, **profile) -> None:
        value = {"shop_id": "s1", "buyer_id": buyer, "level": 1, **profile}
        self.ctx.deliver(self.ops.on_member, TOPICS.members, f"s1/{buyer}".encode(),
                         orjson.dumps(value))

    def on_list(self, list_id: str, buyer: str) -> None:
        self.ctx.deliver(self.ops.on_list_entry, TOPICS.lists, f"{list_id}/{buyer}".encode(),
                         b"{}")

    def run(self, at_ms: int, ticks: int = 6) -> None:
        self.ctx.now_ms = at_ms
        for _ in range(ticks):
            self.ctx.run(self.ops.execute)
            while self.hooks:
                hook, ticket = self.hooks.pop(0)
                self.ctx.run(lambda ctx, hook=hook, ticket=ticket: hook(ctx, ticket))
            self.deliver_requests()
            self.ctx.run(self.allocator.allocate_ready)

    def deliver_requests(self) -> None:
        sent = [s for s in self.ctx.sent if s.topic == TOPICS.assign_requests]
        for request in sent[self.delivered:]:
            self.ctx.deliver(self.allocator.on_request, TOPICS.assign_requests, request.key,
                             request.value)
        self.delivered = len(sent)

    def assignments(self) -> list[dict]:
        return [orjson.loads(s.value) for s in self.ctx.sent if s.topic == TOPICS.assignments]

    def records(self, kind: str) -> list[dict]:
        return [r for r in (orjson.loads(s.value) for s in self.ctx.sent
                            if s.topic == TOPICS.operation_records) if r["kind"] == kind]


def operator(name: str, *, daily: int = 100, total: int = 1000, quals=("sales",),
             active: bool = True) -> Operator:
    return Operator(name, "s1", frozenset(quals), daily, total, active)


def by_spec_14(requests: list[tuple[str, str]], operators: list[Operator]
               ) -> tuple[dict[tuple[str, str], str | None], dict[str, int]]:
    """SPEC 14 by hand: requests (plan, buyer) in allocation order, one day; each buyer at
    most once; the candidate with the fewest so far, then the smallest id."""
    given: dict[str, int] = {op.operator_id: 0 for op in operators}
    result: dict[tuple[str, str], str | None] = {}
    assigned: set[str] = set()
    for plan_id, buyer in requests:
        if buyer in assigned:
            result[plan_id, buyer] = None
            continue
        able = [op for op in operators if op.active and "sales" in op.qualifications
                and given[op.operator_id] < min(op.daily_cap, op.total_cap)]
        chosen = min(able, key=lambda op: (given[op.operator_id], op.operator_id), default=None)
        result[plan_id, buyer] = None if chosen is None else chosen.operator_id
        if chosen is not None:
            given[chosen.operator_id] += 1
            assigned.add(buyer)
    return result, given


def test_two_plans_one_fire_time_priority_exclusion_caps_and_spread():
    operators = [operator("op-a", daily=9), operator("op-b", daily=9),
                 operator("op-c", daily=9, total=3), operator("op-d", daily=9),
                 operator("op-x", quals=("service",))]
    high = assign_plan("p-high", 5, {"level_gte": 2}, exclude={"tag": "blocked"})
    low = assign_plan("p-low", 1, {"level_gte": 1}, exclude={"list": "dnc"})
    world = World([low, high], operators)
    profiles = {f"b{n:02d}": {"level": n % 4, "tags": ["blocked"] if n % 5 == 0 else []}
                for n in range(60)}
    for buyer, profile in profiles.items():
        world.member(buyer, **profile)
    for n in range(0, 60, 3):
        world.on_list("dnc", f"b{n:02d}")
    fire = T0 + 3_600_000  # 09:00 UTC
    world.run(fire + 1000)

    def selected(level: int, excluded) -> list[str]:
        return sorted(b for b, p in profiles.items() if p["level"] >= level and not excluded(b))
    high_buyers = selected(2, lambda b: "blocked" in profiles[b]["tags"])
    low_buyers = selected(1, lambda b: int(b[1:]) % 3 == 0)
    order = [("p-high", b) for b in high_buyers] + [("p-low", b) for b in low_buyers]
    expected, given = by_spec_14(order, operators)
    got = {(a["plan_id"], a["buyer_id"]): a["operator_id"] for a in world.assignments()}
    assert got == {key: op for key, op in expected.items() if op is not None}
    capped = {(r["plan_id"], r["buyer_id"]) for r in world.records("capped")}
    assert capped == {key for key, op in expected.items() if op is None}
    assert given["op-x"] == 0 and given["op-c"] == 3
    assert [given[o] for o in ("op-a", "op-b", "op-d")] == [9, 9, 9]  # the daily caps bound
    reasons = {r["ref"] for r in world.records("capped")}
    assert reasons == {"no operator under the caps", "assigned today by a plan of the shop"}
    first_low = next(n for n, a in enumerate(world.assignments()) if a["plan_id"] == "p-low")
    assert all(a["plan_id"] == "p-low" for a in world.assignments()[first_low:])
    assert len({a["buyer_id"] for a in world.assignments()}) == len(world.assignments())


def test_a_replayed_request_changes_nothing_and_an_inactive_operator_gets_nothing_more():
    world = World([assign_plan("p1", 1, {"level_gte": 1})],
                  [operator("op-a"), operator("op-b")])
    for n in range(10):
        world.member(f"b{n}")
    fire = T0 + 3_600_000
    world.run(fire + 1000)
    assert len(world.assignments()) == 10
    world.delivered = 0  # every request again
    world.deliver_requests()
    world.allocator.allocate_ready(world.ctx)
    assert len(world.assignments()) == 10
    world.catalog.operators["op-a"] = operator("op-a", active=False)
    world.run(fire + DAY_MS + 1000)  # the next day's fire time
    tomorrow = world.assignments()[10:]
    assert len(tomorrow) == 10 and {a["operator_id"] for a in tomorrow} == {"op-b"}


def test_a_new_day_resets_the_daily_count_not_the_total():
    world = World([assign_plan("p1", 1, {"level_gte": 1})],
                  [operator("op-a", daily=3, total=5)])
    for n in range(10):
        world.member(f"b{n}")
    fire = T0 + 3_600_000
    world.run(fire + 1000)
    assert len(world.assignments()) == 3 and len(world.records("capped")) == 7
    world.run(fire + DAY_MS + 1000)
    assert len(world.assignments()) == 5  # the total cap: 2 more
