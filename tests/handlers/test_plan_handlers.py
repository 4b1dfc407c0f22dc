"""The plans pipeline (agents/plans.py) on the in-memory context: profiles re-keyed by
buyer, occurrences paged under the throttle, pause, holdout, caps, quiet hours,
lateness, event triggers, and operation records kept once."""

from __future__ import annotations

from types import SimpleNamespace

import mmh3
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tables.operations
from agents.plans import Operations, PlanRules, PlanTopics
from app.domain.execution import DONE, RUNNING
from app.domain.model import Click, OrderEvent, OrderLine
from app.domain.plans import parse_plan
from app.domain.sinks import Sink
from app.engine.memory import MemoryTables
from app.kafka.topics import Topics
from app.sinks.fanout import SinkRegistry
from tests.handlers.contexts import new_context

TOPICS = Topics("cps.")
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
HOOK = Sink(sink_id="hook", kind="webhook", url="http://127.0.0.1:1/hook",
            streams=frozenset({"commissions"}))


def plan(plan_id: str = "p1", **fields) -> object:
    body = {"plan_id": plan_id, "shop_id": "s1", "audience": {"level_gte": 1},
            "trigger": {"kind": "now"}, "created_ms": T0, "rate_per_s": 1000, "burst": 1000,
            "action": {"kind": "grant", "sink": "hook", "payload": {"coupon": "c-5"}}}
    return parse_plan({**body, **fields})


class World:
    def __init__(self, *plans, partitions: int = 1, page: int = 500) -> None:
        self.caught_up: list = []
        self.catalog = SimpleNamespace(plans={p.plan_id: p for p in plans}, records_read=0,
                                       sinks={"hook": HOOK}, channels={})
        registry = self.registry = SinkRegistry(self.catalog, "cps.", TOPICS.live)
        registry.ready_topics.add(registry.topic("hook"))
        self.tables = tables.operations.define(MemoryTables())
        self.ops = Operations(
            topics=PlanTopics(TOPICS.profiles_by_buyer, TOPICS.plan_actions,
                              TOPICS.operation_records, TOPICS.sinks_deadletter,
                              inputs=(TOPICS.members,)),
            tables=self.tables, rules=PlanRules("UTC", 3_600_000, 4, page=page),
            catalog=self.catalog, sinks=registry, share=lambda: 1.0,
            catch_up=self._inputs_read_at_once, after_handled=self._inputs_read_at_once)
        self.ctx = new_context(now_ms=T0, partitions=partitions)

    def _inputs_read_at_once(self, topics, hook):
        """In memory every input is read: a ticket is caught up as soon as it is asked."""
        world = self

        class Barrier:
            tickets = 0

            def request(self, ctx) -> int:
                self.tickets += 1
                world.caught_up.append((hook, self.tickets))
                return self.tickets

        return Barrier()

    def update(self, new_plan) -> None:
        self.catalog.plans[new_plan.plan_id] = new_plan
        self.catalog.records_read += 1

    def member(self, buyer: str, shop: str = "s1", **profile) -> None:
        value = {"shop_id": shop, "buyer_id": buyer, "level": 1, **profile}
        self.ctx.deliver(self.ops.on_member, TOPICS.members, f"{shop}/{buyer}".encode(),
                         orjson.dumps(value))

    def tick(self, *, at_ms: int | None = None) -> None:
        if at_ms is not None:
            self.ctx.now_ms = at_ms
        self.ctx.run(self.ops.execute)
        if self.caught_up:  # the barrier's hooks run after the tick that asked, then a tick
            while self.caught_up:
                hook, ticket = self.caught_up.pop(0)
                self.ctx.run(lambda ctx, hook=hook, ticket=ticket: hook(ctx, ticket))
            self.ctx.run(self.ops.execute)

    def actions(self) -> list[dict]:
        return [orjson.loads(s.value) for s in self.ctx.sent if s.topic == TOPICS.plan_actions]

    def records(self, kind: str | None = None) -> list[dict]:
        found = [orjson.loads(s.value) for s in self.ctx.sent
                 if s.topic == TOPICS.operation_records]
        return [r for r in found if kind is None or r["kind"] == kind]

    def read_back_records(self) -> None:
        for record in self.records():
            self.ctx.deliver(self.ops.on_record, TOPICS.operation_records,
                             record["buyer_id"].encode(), orjson.dumps(record))

    def progress(self, occurrence: str):
        return self.ctx.get(self.tables.plan_progress, occurrence.encode())


def test_a_now_plan_acts_once_per_selected_buyer_and_finishes():
    world = World(plan())
    for n in range(30):
        world.member(f"b{n:02d}", level=n % 3)
    world.member("other-shop", shop="s2", level=5)
    world.tick()
    world.tick()
    selected = {f"b{n:02d}" for n in range(30) if n % 3 >= 1}
    assert {a["buyer_id"] for a in world.actions()} == selected
    assert len(world.actions()) == len(selected)
    action = world.actions()[0]
    assert action["action_id"] == f"p1@{T0}:{action['buyer_id']}"
    assert action["payload"] == {"coupon": "c-5"} and action["kind"] == "grant"
    queued = [s for s in world.ctx.sent if s.topic == "cps.sink.hook"]
    assert len(queued) == len(selected)  # to the plan's sink, whatever it subscribes to
    progress = world.progress(f"p1@{T0}")
    assert progress.state == DONE and progress.totals()["selected"] == len(selected)


def test_pages_resume_after_the_last_buyer_decided():
    world = World(plan(), page=7)
    for n in range(40):
        world.member(f"b{n:02d}")
    world.tick()
    progress = world.progress(f"p1@{T0}")
    assert progress.state == RUNNING and progress.cursor == "b06"
    for _ in range(10):
        world.tick()
    assert sorted(a["buyer_id"] for a in world.actions()) == [f"b{n:02d}" for n in range(40)]


def test_the_throttle_sends_at_the_plans_rate_and_a_change_applies_at_once():
    world = World(plan(rate_per_s=10, burst=10))
    for n in range(200):
        world.member(f"b{n:03d}")
    world.tick()
    assert len(world.actions()) == 10  # the burst
    for step in range(1, 11):
        world.tick(at_ms=T0 + step * 100)
    assert len(world.actions()) == 20  # 10/s for a second
    world.update(plan(rate_per_s=50, burst=10))
    for step in range(11, 21):
        world.tick(at_ms=T0 + step * 100)
    # Seen at the first tick after it (1.1 s): 1 token at the old rate, then 50/s for 0.9 s.
    assert len(world.actions()) == 20 + 1 + 45


def test_a_paused_plan_sends_nothing_until_resumed():
    world = World(plan(state="paused"))
    world.member("b1")
    world.tick()
    assert world.actions() == [] and world.progress(f"p1@{T0}") is None
    world.update(plan())
    world.tick()
    world.update(plan(state="paused"))
    world.member("b2")
    world.tick()
    assert [a["buyer_id"] for a in world.actions()] == ["b1"]


def test_pause_mid_run_stops_at_the_next_buyer_and_resume_finishes():
    world = World(plan(rate_per_s=5, burst=5))
    for n in range(20):
        world.member(f"b{n:02d}")
    world.tick()
    world.update(plan(rate_per_s=5, burst=5, state="paused"))
    world.tick(at_ms=T0 + 10_000)
    assert len(world.actions()) == 5
    world.update(plan(rate_per_s=1000, burst=1000))
    world.tick(at_ms=T0 + 11_000)
    world.tick(at_ms=T0 + 12_000)
    assert sorted(a["buyer_id"] for a in world.actions()) == [f"b{n:02d}" for n in range(20)]


def test_stop_ends_the_run():
    world = World(plan(rate_per_s=1, burst=1))
    for n in range(5):
        world.member(f"b{n}")
    world.tick()
    world.update(plan(state="stopped"))
    world.tick(at_ms=T0 + 10_000)
    assert len(world.actions()) == 1
    assert world.progress(f"p1@{T0}").state == "stopped"


def variant_by_spec_13(plan_id: str, buyer_id: str, holdout_bp: int,
                       weights: dict[str, int]) -> str:
    """SPEC 13's assignment from its formula: "holdout" (docs/plans.md) or a variant."""
    bucket = mmh3.hash(plan_id + ":" + buyer_id, signed=False) % 10_000
    if bucket < holdout_bp:
        return "holdout"
    total, running = sum(weights.values()), 0
    for variant, weight_bp in weights.items():
        running += weight_bp
        if bucket < holdout_bp + (10_000 - holdout_bp) * running // total:
            return variant
    raise AssertionError("the last bound is 10,000, above every bucket")


def test_holdout_buyers_are_recorded_and_not_sent_the_others_get_their_buckets_variant():
    weights = {"A": 1000, "B": 3000}
    world = World(plan(holdout_bp=2000, variants=[
        {"variant": name, "weight_bp": weight_bp} for name, weight_bp in weights.items()]))
    buyers = [f"b{n:03d}" for n in range(200)]
    for buyer in buyers:
        world.member(buyer)
    world.tick()
    expected = {buyer: variant_by_spec_13("p1", buyer, 2000, weights) for buyer in buyers}
    held = {r["buyer_id"] for r in world.records("held_out")}
    assert held == {buyer for buyer, variant in expected.items() if variant == "holdout"}
    assert all(r["variant"] == "holdout" for r in world.records("held_out"))
    assert {a["buyer_id"]: a["variant"] for a in world.actions()} == {
        buyer: variant for buyer, variant in expected.items() if variant != "holdout"}
    assert set(expected.values()) == {"holdout", "A", "B"}


def test_variants_carry_their_payload():
    world = World(plan(variants=[{"variant": "A", "weight_bp": 1, "payload": {"coupon": "a"}},
                                 {"variant": "B", "weight_bp": 1}]))
    for n in range(50):
        world.member(f"b{n}")
    world.tick()
    payloads = {a["variant"]: a["payload"] for a in world.actions()}
    assert payloads == {"A": {"coupon": "a"}, "B": {"coupon": "c-5"}}
    by_variant = world.progress(f"p1@{T0}").variants
    assert {name: counts["actions"] for name, counts in by_variant.items()} == {
        name: sum(a["variant"] == name for a in world.actions()) for name in ("A", "B")}


def test_a_fire_time_older_than_the_lateness_limit_is_missed_not_started():
    world = World(plan(created_ms=T0 - 2 * 3_600_000))
    world.member("b1")
    world.tick()
    assert world.actions() == [] and world.records() == []
    missed = world.progress(f"p1@{T0 - 2 * 3_600_000}")
    assert (missed.state, missed.until_ms) == ("missed", T0 - 3_600_000 - 1)


def test_a_long_outage_of_a_frequent_schedule_is_one_missed_row_then_the_next_fire_time():
    hourly = plan(trigger={"kind": "schedule", "cron": "0 * * * *"}, created_ms=T0)
    world = World(hourly)
    world.member("b1")
    back = T0 + 30 * 86_400_000 + 90 * 60_000  # 30 days later, 01:30
    world.tick(at_ms=back)
    rows = [progress for _key, progress in world.tables.plan_progress.scan(0)]
    assert [(row.occurrence_id, row.state) for row in rows] == [
        (f"p1@{T0}", "missed"),  # every fire time from the first up to 00:30
        (f"p1@{back - 30 * 60_000}", "done")]  # 01:00, half an hour late: started
    assert rows[0].until_ms == back - 3_600_000 - 1
    assert [a["occurrence_id"] for a in world.actions()] == [f"p1@{back - 30 * 60_000}"]
    assert world.records("missed") == []


def test_the_frequency_cap_counts_actions_of_every_plan_of_the_shop():
    cap = {"max": 1, "per_ms": 86_400_000}
    world = World(plan("p1", frequency_cap=cap), plan("p2", frequency_cap=cap))
    world.member("b1")
    world.tick()
    assert [a["plan_id"] for a in world.actions()] == ["p1"]
    assert [(r["plan_id"], r["kind"]) for r in world.records()] == [("p2", "capped")]


def test_quiet_hours_defer_until_they_end_then_send():
    quiet = {"from": "21:00", "to": "08:00"}
    night = T0 + 23 * 3_600_000  # 23:00 UTC
    world = World(plan(created_ms=night, quiet_hours=quiet))
    world.member("b1")
    world.member("b2", tz="Asia/Shanghai")  # 07:00 there, quiet until 08:00 (00:00 UTC)
    world.tick(at_ms=night)
    assert {r["buyer_id"] for r in world.records("deferred")} == {"b1", "b2"}
    world.tick(at_ms=night + 3_600_000)
    assert [a["buyer_id"] for a in world.actions()] == ["b2"]
    # 08:00 UTC: b1's quiet hours end, 9 hours after the occurrence started: still decided
    world.tick(at_ms=night + 9 * 3_600_000)
    assert [a["buyer_id"] for a in world.actions()] == ["b2", "b1"]
    assert world.records("missed") == []
    assert world.progress(f"p1@{night}").totals()["actions"] == 2


def test_a_deferred_buyer_is_missed_when_the_worker_comes_back_too_late_after_quiet_hours():
    quiet = {"from": "21:00", "to": "08:00"}
    night = T0 + 23 * 3_600_000
    world = World(plan(created_ms=night, quiet_hours=quiet))
    world.member("b1")
    world.tick(at_ms=night)
    world.tick(at_ms=night + 9 * 3_600_000 + 3_600_001)  # 1 h and 1 ms after they ended
    assert world.actions() == []
    assert [r["buyer_id"] for r in world.records("missed")] == ["b1"]


def test_an_occurrence_that_runs_for_hours_decides_every_buyer():
    slow = plan(rate_per_s=1, burst=1)
    world = World(slow)
    for n in range(60):  # one a tick: the last ones 90 minutes after the fire time
        world.member(f"b{n:02d}")
    for second in range(0, 4 * 3_600, 90):  # ticks over four hours, 90 s apart
        world.tick(at_ms=T0 + second * 1000)
    assert sorted(a["buyer_id"] for a in world.actions()) == [f"b{n:02d}" for n in range(60)]
    assert world.records("missed") == []


def test_a_paused_occurrence_resumed_hours_later_finishes():
    world = World(plan(rate_per_s=1, burst=1))
    for n in range(5):
        world.member(f"b{n}")
    world.tick()
    world.update(plan(rate_per_s=1, burst=1, state="paused"))
    world.tick(at_ms=T0 + 1000)
    world.update(plan(rate_per_s=1000, burst=1000))
    world.tick(at_ms=T0 + 5 * 3_600_000)
    world.tick(at_ms=T0 + 5 * 3_600_000 + 1000)
    assert sorted(a["buyer_id"] for a in world.actions()) == [f"b{n}" for n in range(5)]
    assert world.records("missed") == []


def test_an_event_plan_reminds_a_buyer_whose_order_stays_unpaid():
    reminder = plan("remind", audience={"created_unpaid_for_ms": 1_800_000},
                    trigger={"kind": "event", "on": "created_unpaid", "delay_ms": 1_800_000})
    world = World(reminder)
    item = (OrderLine("i1", None, 1, 500),)
    for order, buyer in (("o1", "b1"), ("o2", "b2")):
        world.ops.on_order(world.ctx, OrderEvent(order, "created", T0, buyer, "s1", items=item))
    world.ops.on_order(world.ctx, OrderEvent("o2", "paid", T0 + 60_000, "b2", "s1", items=item))
    world.tick(at_ms=T0 + 1_000_000)
    assert world.actions() == []
    world.tick(at_ms=T0 + 1_800_000)
    world.tick(at_ms=T0 + 1_900_000)
    assert [(a["buyer_id"], a["occurrence_id"]) for a in world.actions()] == [
        ("b1", "remind@o1:created")]


def test_a_click_without_an_order_triggers_once_per_last_click():
    plan_ = plan("came-back", audience={"clicked_within_ms": 86_400_000},
                 trigger={"kind": "event", "on": "click_no_order", "delay_ms": 60_000})
    world = World(plan_)
    for n, at in enumerate((T0, T0 + 10_000)):
        world.ops.on_click(world.ctx, Click(f"c{n}", at, "b1", "s1", "ch", "pr"))
    world.ops.on_click(world.ctx, Click("c0", T0, "b1", "s1", "ch", "pr"))  # a replay
    world.tick(at_ms=T0 + 120_000)
    assert [a["occurrence_id"] for a in world.actions()] == ["came-back@c1"]


def test_operation_records_are_kept_once_and_counted():
    world = World(plan())
    world.member("b1")
    world.tick()
    action = world.actions()[0]
    sent = {"record_id": f"{action['occurrence_id']}:b1:granted", "plan_id": "p1",
            "occurrence_id": action["occurrence_id"], "buyer_id": "b1", "shop_id": "s1",
            "variant": None, "kind": "granted", "ref": None, "ts_ms": T0 + 5}
    for _ in range(2):
        world.ctx.deliver(world.ops.on_record, TOPICS.operation_records, b"b1",
                          orjson.dumps(sent))
    assert world.progress(action["occurrence_id"]).totals()["granted"] == 1
    stored = world.tables.member_records.scan_prefix(0, b"b1\x1f", limit=10)
    assert [record.kind for _key, record in stored] == ["granted"]


def test_profiles_of_another_partition_are_rekeyed_by_buyer():
    world = World(plan(), partitions=8)
    world.member("b-elsewhere")
    rekeyed = [s for s in world.ctx.sent if s.topic == TOPICS.profiles_by_buyer]
    assert not world.ctx.owns(b"b-elsewhere")  # its buyer's partition is not this one
    assert rekeyed and rekeyed[0].key == b"b-elsewhere"
    world.ctx.deliver(world.ops.on_rekeyed_profile, TOPICS.profiles_by_buyer, rekeyed[0].key,
                      rekeyed[0].value)
    assert world.ctx.get(world.tables.members, b"s1\x1fb-elsewhere").level == 1


@pytest.mark.parametrize(("key", "value", "reason"), [
    (b"s1/b1", b"not json", "not JSON"),
    (b"s1-b1", b'{"shop_id": "s1", "buyer_id": "b1"}', "key:"),
    (b"s1/b1", b'{"shop_id": "s1", "buyer_id": "b2"}', "key: differs"),
    (b"s1/b1", b'{"shop_id": "s1", "buyer_id": "b1", "birthday": "13-01"}', "birthday"),
    (b"s1/b1", b'{"shop_id": "s1", "buyer_id": "b1", "tz": "Mars/Base"}', "tz"),
    (b"s1/b1", b'{"shop_id": "s1", "buyer_id": "b1", "level": -1}', "level"),
    (b"s1/b1", b'{"shop_id": "s1", "buyer_id": "b1", "tags": ["vip", ""]}',
     "tags[1]: must be a string of 1-128"),
    (b"s1/b1", b'{"shop_id": "s1", "buyer_id": "b1", "tags": ["t"' + b', "t"' * 100 + b"]}",
     "tags: more than 100"),
    (b"s1/" + b"b" * 129, b'{"shop_id": "s1", "buyer_id": "' + b"b" * 129 + b'"}', "key:"),
])
def test_bad_member_records_are_dead_lettered_with_a_reason(key, value, reason):
    world = World(plan())
    world.ctx.deliver(world.ops.on_member, TOPICS.members, key, value)
    assert len(world.ctx.dead_letters) == 1 and reason in world.ctx.dead_letters[0]


def test_a_new_sinks_queue_is_waited_for_and_a_missing_sink_fails_the_action():
    world = World(plan(), plan("p2", action={"kind": "notify", "sink": "nowhere"}))
    world.registry.ready_topics.clear()  # `hook` configured, its queue not created yet
    world.member("b1")
    world.tick()
    assert world.actions() == [a for a in world.actions() if a["plan_id"] == "p2"]
    assert [(r["plan_id"], r["kind"], r["ref"]) for r in world.records()] == [
        ("p2", "failed", "no sink 'nowhere' to deliver it")]
    world.registry.ready_topics.add(world.registry.topic("hook"))
    world.tick(at_ms=T0 + 1000)
    assert sorted(a["plan_id"] for a in world.actions()) == ["p1", "p2"]


def test_the_rate_holds_when_the_burst_is_smaller_than_a_ticks_worth():
    # The executor takes tokens once a tick (0.25 s): at 100/s a tick needs 25. With the
    # bucket capped at the plan's burst of 10 the tokens accruing between ticks overflowed
    # and the plan went out at 40/s whatever its rate.
    world = World(plan(rate_per_s=100, burst=10))
    for n in range(1000):
        world.member(f"b{n:04d}")
    world.tick()
    first = len(world.actions())
    for step in range(1, 17):
        world.tick(at_ms=T0 + step * 250)
    assert len(world.actions()) - first == 400  # 4 s at 100/s


# -- event plans under restarts, replays and other plans --------------------------------

ITEM = (OrderLine("i1", None, 1, 500),)
REMINDER = {"audience": {"created_unpaid_for_ms": 1_800_000},
            "trigger": {"kind": "event", "on": "created_unpaid", "delay_ms": 1_800_000}}


def order(world: World, order_id: str, event: str, ts_ms: int, buyer: str) -> None:
    world.ops.on_order(world.ctx, OrderEvent(order_id, event, ts_ms, buyer, "s1", items=ITEM))


def test_an_event_plan_after_a_restart_reminds_only_the_buyers_with_unpaid_orders():
    world = World(plan("remind", **REMINDER))
    for n in range(300):
        world.member(f"b{n:03d}")
    unpaid = {f"b{n:03d}" for n in range(0, 300, 15)}
    for buyer in sorted(unpaid):
        order(world, f"o-{buyer}", "created", T0, buyer)
    world.tick(at_ms=T0 + 1_800_000)
    assert {a["buyer_id"] for a in world.actions()} == unpaid

    for restart in range(3):  # a restart or rebalance rebuilds every cache from the tables
        world.ctx.forget_caches()
        world.tick(at_ms=T0 + 1_900_000 + restart * 60_000)

    assert sorted(a["buyer_id"] for a in world.actions()) == sorted(unpaid)
    assert {a["occurrence_id"] for a in world.actions()} == {
        f"remind@o-{buyer}:created" for buyer in unpaid}


def test_a_created_replayed_after_payment_or_close_rearms_no_reminder():
    world = World(plan("remind", **REMINDER))
    for buyer, end in (("b1", "paid"), ("b2", "closed")):
        world.member(buyer)
        order(world, f"o-{buyer}", "created", T0, buyer)
        order(world, f"o-{buyer}", end, T0 + 60_000, buyer)
    world.tick(at_ms=T0 + 1_800_000)
    for buyer in ("b1", "b2"):
        order(world, f"o-{buyer}", "created", T0, buyer)  # replayed
    world.tick(at_ms=T0 + 3_700_000)
    assert world.actions() == []
    assert world.tables.plan_timers.scan(0) == []


def test_a_paused_plans_due_timers_hold_back_no_other_plans():
    paused = plan("paused", state="paused", **REMINDER)
    world = World(paused, plan("remind", **REMINDER), page=5)
    for n in range(20):
        world.member(f"b{n:02d}")
        order(world, f"o{n}", "created", T0, f"b{n:02d}")
    world.tick(at_ms=T0 + 1_800_000)
    assert {a["plan_id"] for a in world.actions()} == {"remind"}
    assert len(world.actions()) == 5  # a page per plan and tick
    for tick in range(1, 4):
        world.tick(at_ms=T0 + 1_800_000 + tick * 1000)
    assert sorted(a["buyer_id"] for a in world.actions()) == [f"b{n:02d}" for n in range(20)]
    assert len(world.tables.plan_timers.scan(0)) == 20  # the paused plan's, kept

    world.update(plan("paused", **REMINDER))  # resumed within the lateness limit
    for tick in range(5):
        world.tick(at_ms=T0 + 1_900_000 + tick * 1000)
    assert sum(a["plan_id"] == "paused" for a in world.actions()) == 20
    assert world.tables.plan_timers.scan(0) == []


def test_a_stopped_or_deleted_plans_timers_are_dropped():
    world = World(plan("gone", **REMINDER), plan("stopped", **REMINDER))
    world.member("b1")
    order(world, "o1", "created", T0, "b1")
    del world.catalog.plans["gone"]
    world.update(plan("stopped", state="stopped", **REMINDER))
    world.tick(at_ms=T0 + 1_800_000)
    assert world.actions() == [] and world.tables.plan_timers.scan(0) == []


def test_timers_stored_by_an_earlier_version_fire_for_their_plan():
    world = World(plan("remind", **REMINDER))
    world.member("b1")
    order(world, "o1", "created", T0, "b1")
    world.ctx.commit()  # the order's transaction, so its timer is in the table
    (key, timer), = world.tables.plan_timers.scan(0)
    old_key = b"%016d\x1fremind@o1:created\x1fb1" % (T0 + 1_800_000)
    world.ctx.delete(world.tables.plan_timers, key)
    world.ctx.put(world.tables.plan_timers, old_key, timer)
    world.tick(at_ms=T0 + 1_800_000)
    world.tick(at_ms=T0 + 1_800_100)
    assert [a["occurrence_id"] for a in world.actions()] == ["remind@o1:created"]
    assert world.tables.plan_timers.scan(0) == []


def test_an_event_timer_run_later_than_the_lateness_limit_is_missed():
    world = World(plan("remind", **REMINDER))
    world.member("b1")
    order(world, "o1", "created", T0, "b1")
    world.tick(at_ms=T0 + 1_800_000 + 3_600_001)
    assert world.actions() == []
    assert [(r["occurrence_id"], r["kind"]) for r in world.records()] == [
        ("remind@o1:created", "missed")]


def test_a_plan_that_fails_is_marked_failed_and_the_others_go_on(monkeypatch):
    import agents.plans

    world = World(plan("bad", trigger={"kind": "schedule", "cron": "0 * * * *"}),
                  plan("good"))
    world.member("b1")
    real = agents.plans.fire_times

    def failing(plan_, after, zone):
        if plan_.plan_id == "bad":
            raise RuntimeError("cannot evaluate")
        return real(plan_, after, zone)

    monkeypatch.setattr(agents.plans, "fire_times", failing)
    world.tick()
    assert [a["plan_id"] for a in world.actions()] == ["good"]
    failed = world.progress("bad@failed")
    assert (failed.state, failed.reason) == ("failed", "RuntimeError: cannot evaluate")

    monkeypatch.setattr(agents.plans, "fire_times", real)
    world.tick(at_ms=T0 + 1000)
    assert world.progress("bad@failed") is not None  # the version that failed stays out
    world.update(plan("bad", trigger={"kind": "schedule", "cron": "0 * * * *"}))
    world.tick(at_ms=T0 + 2000)
    assert world.progress("bad@failed") is None


def test_a_variants_sink_takes_its_actions():
    other = Sink(sink_id="other", kind="webhook", url="http://127.0.0.1:1/other",
                 streams=frozenset({"commissions"}))
    variants = [{"variant": "A", "weight_bp": 5000, "sink": "other"},
                {"variant": "B", "weight_bp": 5000}]
    world = World(plan(variants=variants))
    world.catalog.sinks["other"] = other
    world.registry.ready_topics.add(world.registry.topic("other"))
    for n in range(40):
        world.member(f"b{n:02d}")
    world.tick()
    by_variant = {a["variant"]: a["sink"] for a in world.actions()}
    assert by_variant == {"A": "other", "B": "hook"}
    queued = {sent.topic: 0 for sent in world.ctx.sent}
    for sent in world.ctx.sent:
        queued[sent.topic] += 1
    assert queued["cps.sink.other"] == sum(a["variant"] == "A" for a in world.actions())
    assert queued["cps.sink.hook"] == sum(a["variant"] == "B" for a in world.actions())
    assert {a["payload"]["coupon"] for a in world.actions()} == {"c-5"}


@st.composite
def order_arrivals(draw):
    """Buyers' orders (created, then paid, closed or left unpaid) in their true order, and
    an arrival of them in any order with any delivered again."""
    events, unpaid = [], set()
    for n in range(draw(st.integers(1, 8))):
        buyer, order_id = f"b{draw(st.integers(0, 3))}", f"o{n}"
        fate = draw(st.sampled_from(["paid", "closed", "unpaid"]))
        events.append((order_id, "created", T0 + n, buyer))
        if fate != "unpaid":
            events.append((order_id, fate, T0 + 60_000 + n, buyer))
        else:
            unpaid.add(order_id)
    arrival = list(draw(st.permutations(events)))
    for _again in range(draw(st.integers(0, len(events)))):
        arrival.insert(draw(st.integers(0, len(arrival))), draw(st.sampled_from(events)))
    restarts = draw(st.sets(st.integers(0, len(arrival))))
    return arrival, unpaid, restarts


@settings(max_examples=300, deadline=None)
@given(order_arrivals())
def test_any_arrival_of_order_events_reminds_each_unpaid_order_once(arrivals):
    arrival, unpaid, restarts = arrivals
    world = World(plan("remind", **REMINDER))
    for n in range(4):
        world.member(f"b{n}")
    for index, (order_id, event, ts_ms, buyer) in enumerate(arrival):
        if index in restarts:
            world.ctx.forget_caches()
        order(world, order_id, event, ts_ms, buyer)
    world.tick(at_ms=T0 + 1_900_000)
    world.ctx.forget_caches()
    world.tick(at_ms=T0 + 1_950_000)
    assert sorted(a["occurrence_id"] for a in world.actions()) == sorted(
        f"remind@{order_id}:created" for order_id in unpaid)


def test_a_schedule_plan_runs_each_fire_time_inside_its_period_once():
    # Hourly at :30, only while the period's daily window (09:00-11:59) is open, UTC.
    hourly = plan("hourly", trigger={"kind": "schedule", "cron": "30 * * * *"},
                  period="* 0-59 9-11 * * ? 31", created_ms=T0)
    world = World(hourly)
    for n in range(6):
        world.member(f"b{n}", level=n % 2)  # b1, b3, b5 are selected
    hour = 3_600_000
    for minute in range(0, 14 * 60, 10):  # ticks every 10 minutes from 00:00 to 13:50
        world.tick(at_ms=T0 + minute * 60_000)
    fires = [T0 + h * hour + 30 * 60_000 for h in (9, 10, 11)]
    assert sorted((a["occurrence_id"], a["buyer_id"]) for a in world.actions()) == sorted(
        (f"hourly@{fire}", buyer) for fire in fires for buyer in ("b1", "b3", "b5"))
    for fire in fires:
        progress = world.progress(f"hourly@{fire}")
        assert (progress.state, progress.totals()["actions"]) == ("done", 3)
    world.ctx.forget_caches()  # a restart the day after: nothing again, nothing missed
    world.tick(at_ms=T0 + 14 * hour)
    assert len(world.actions()) == 9 and world.records() == []


def test_a_plan_that_ran_well_then_failed_is_no_longer_failed_once_it_runs_well_again(
        monkeypatch):
    import agents.plans

    hourly = {"trigger": {"kind": "schedule", "cron": "0 * * * *"}}
    world = World(plan("p", **hourly))
    world.tick()  # runs well
    real = agents.plans.fire_times

    def failing(plan_, after, zone):
        raise RuntimeError("cannot evaluate")

    monkeypatch.setattr(agents.plans, "fire_times", failing)
    world.update(plan("p", name="second", **hourly))
    world.tick(at_ms=T0 + 1000)
    assert world.progress("p@failed").reason == "RuntimeError: cannot evaluate"
    monkeypatch.setattr(agents.plans, "fire_times", real)
    world.update(plan("p", name="third", **hourly))
    world.tick(at_ms=T0 + 2000)
    assert world.progress("p@failed") is None
