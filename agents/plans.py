"""Operation plans in a buyer's partition (SPEC 13): profiles, lists and behaviour in;
each occurrence executed under its plan's throttle; actions and operation records out.

Everything a plan decides about a buyer lives in the buyer's partition:
the profile and list entries (re-keyed by buyer on arrival), the behaviour
facts (from attribution's clicks and orders, see `on_click`/`on_order`), the
buyer's recent actions (frequency caps) and the occurrence's progress. An
occurrence runs as one task per partition, paging through the partition's
buyers of the plan's shop in buyer id order, a page per timer tick. Each
decision, its outputs (the action on `cps.plan_actions` and the plan's sink
queue, or an operation record) and the task's new cursor are committed in
one transaction, so after a crash or a rebalance the task resumes after the
last buyer it committed: no buyer gets two actions for one occurrence and
none is skipped. The throttle (app/domain/throttle.py) holds each worker's
share of the plan's `rate_per_s`; the plan's state is read from the catalog
before every buyer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import orjson

from app.domain.audience import Buyer, Member
from app.domain.behaviour import Facts, clicked, order_event, started_trigger, trigger_holds
from app.domain.execution import (
    COUNTED_AS,
    DEFERRED,
    DONE,
    FAILED,
    HELD_OUT,
    MISSED_FIRES,
    RUNNING,
    SEND,
    STOPPED,
    Progress,
    decide,
)
from app.domain.model import Click, OrderEvent
from app.domain.operations import HOLDOUT, action_id, record_id, shard
from app.domain.outcomes import Exposure, Outcome, Watch
from app.domain.plans import ACTIVE, ASSIGN, EVENT, GRANT, MAX_CAP, PAUSED, Plan, fire_times
from app.domain.plans import STOPPED as PLAN_STOPPED
from app.domain.throttle import PlanThrottle
from app.domain.triggers import MISSED, occurrence_id, timing
from app.engine.handler_context import HandlerContext, Hook
from app.records.allocation import END, REQUEST, AssignRequest
from app.records.fields import InvalidEvent
from app.records.operations import (
    OperationRecord,
    decode_list_entry,
    decode_member,
    decode_operation_record,
    decode_rekeyed_profile,
    encode_action,
)
from app.sinks.fanout import SinkRegistry, fan_out, queued_event, sink_dead_letter
from tables import every_table
from tables.operations import OperationTables, Timer

if TYPE_CHECKING:
    from app.config.settings import Settings
    from app.engine.processor import Engine
    from app.kafka.topics import Topics
    from app.services.catalog import Catalog

logger = logging.getLogger(__name__)

SEP = b"\x1f"
NO_MEMBER = Member()
NO_FACTS = Facts()
NO_WATCH = Watch()
DELIVERY_KINDS = ("sent", "granted", "failed")  # records a sink writes after delivering
EVENT_ROW = "events"  # the one progress row of an event plan in a partition
FAILED_ROW = "failed"  # the progress row of a plan whose work failed in a partition
FIRES_PER_TICK = 10   # occurrences one plan may start in a partition per tick
MAX_TIMER_PLANS_PER_TICK = 1000  # plans whose timers one tick looks at, per partition
OLD_TIMER_KEY = b"000"  # timer keys of earlier versions: a due time, 16 digits


class CatchUp(Protocol):
    def request(self, ctx: HandlerContext) -> int: ...


Barrier = Hook


class Settling:
    """A partition's buyers whose watch waits to be settled (SPEC 13: the earliest paid
    order wins whatever the worker read first): first until every partition of cps.orders
    is handled as far as it reached (their events re-keyed to the buyers' partitions),
    then until this partition's order inputs are read as far as they reached. Tickets
    ascend in each list."""

    def __init__(self) -> None:
        self.handled: list[tuple[int, bytes]] = []  # (topic barrier ticket, watch key)
        self.read: list[tuple[int, bytes]] = []     # (catch-up ticket, watch key)


def _take_until(waiting: list[tuple[int, bytes]], ticket: int) -> list[bytes]:
    """Remove and return the keys of the tickets up to `ticket`."""
    count = next((n for n, (asked, _key) in enumerate(waiting) if asked > ticket),
                 len(waiting))
    taken = [key for _asked, key in waiting[:count]]
    del waiting[:count]
    return taken


class Runs:
    """A partition's unfinished occurrences. One runs only once the partition's inputs
    (profiles, lists, clicks, orders) are read as far as Kafka had them when it started,
    so what it selects does not depend on how far the worker happened to have read."""

    def __init__(self) -> None:
        self.ready: dict[str, None] = {}
        self._behind: list[tuple[int, str]] = []  # (ticket, occurrence), tickets ascending

    def wait(self, occurrence: str, ticket: int) -> None:
        self._behind.append((ticket, occurrence))

    def caught_up(self, ticket: int) -> None:
        while self._behind and self._behind[0][0] <= ticket:
            self.ready[self._behind.pop(0)[1]] = None

    def finish(self, occurrence: str) -> None:
        self.ready.pop(occurrence, None)


class PlanCatalog(Protocol):
    plans: dict[str, Plan]
    records_read: int


@dataclass(frozen=True, slots=True)
class PlanTopics:
    profiles_by_buyer: str
    plan_actions: str
    operation_records: str
    sinks_deadletter: str
    inputs: tuple[str, ...]  # what a buyer's state comes from, read before an occurrence runs
    assign_requests: str = "cps.internal.assign-requests"  # keyed by shop (allocation)
    orders: str = "cps.orders"  # keyed by order id: handled everywhere before outcomes
    order_inputs: tuple[str, ...] = ()  # a partition's order events, read before outcomes


@dataclass(frozen=True, slots=True)
class PlanRules:
    default_tz: str
    max_lateness_ms: int
    shards: int
    page: int = 500  # buyers one occurrence's task decides per tick
    tick_s: float = 0.25  # the engine's timer interval: tokens are taken only then


class Operations:
    """The plan handlers of the engine, one instance per worker."""

    def __init__(self, *, topics: PlanTopics, tables: OperationTables, rules: PlanRules,
                 catalog: PlanCatalog, sinks: SinkRegistry, share: Callable[[], float],
                 catch_up: Callable[[tuple[str, ...], Barrier], CatchUp],
                 after_handled: Callable[[str, Barrier], CatchUp]) -> None:
        self.topics = topics
        self.tables = tables
        self.rules = rules
        self.catalog = catalog
        self.sinks = sinks
        self.share = share  # this worker's part of the partitions, for the throttle
        self.throttle = PlanThrottle(rules.tick_s)
        self._next_fire: dict[str, tuple[Plan, int, int | None]] = {}
        self._event_plans_of: tuple[int, dict[tuple[str, str], list[Plan]]] = (-1, {})
        self.inputs_read = catch_up(topics.inputs, self._inputs_read)
        self.orders_handled = after_handled(topics.orders, self._orders_handled)
        self.orders_read = catch_up(topics.order_inputs, self._orders_read)

    # -- profiles and lists -------------------------------------------------------

    def on_member(self, ctx: HandlerContext, key: bytes | None, value: bytes | None) -> None:
        shop_id, buyer_id, member = decode_member(key, value)
        if self._here(ctx, buyer_id, "member", key, value):
            self._apply_member(ctx, shop_id, buyer_id, member)

    def on_list_entry(self, ctx: HandlerContext, key: bytes | None, value: bytes | None) -> None:
        list_id, buyer_id, on_list = decode_list_entry(key, value)
        if self._here(ctx, buyer_id, "list", key, value):
            self._apply_list_entry(ctx, list_id, buyer_id, on_list)

    def on_rekeyed_profile(self, ctx: HandlerContext, key: bytes | None, value: bytes | None
                           ) -> None:
        kind, (first, buyer_id, entry) = decode_rekeyed_profile(key, value)
        if kind == "member":
            self._apply_member(ctx, first, buyer_id, entry)
        else:
            self._apply_list_entry(ctx, first, buyer_id, entry)

    def _here(self, ctx: HandlerContext, buyer_id: str, kind: str, key: bytes | None,
              value: bytes | None) -> bool:
        """True when the buyer's partition is this one; otherwise re-key the record there."""
        buyer_key = buyer_id.encode()
        if ctx.owns(buyer_key):
            return True
        ctx.send(self.topics.profiles_by_buyer, buyer_key, orjson.dumps({
            "kind": kind, "key": key.decode() if key is not None else None,
            "value": None if value is None else value.decode()}))
        return False

    def _apply_member(self, ctx: HandlerContext, shop_id: str, buyer_id: str,
                      member: Member | None) -> None:
        pair = _pair(shop_id, buyer_id)
        if member is None:
            ctx.delete(self.tables.members, pair)
        else:
            ctx.put(self.tables.members, pair, member)

    def _apply_list_entry(self, ctx: HandlerContext, list_id: str, buyer_id: str,
                          on_list: bool) -> None:
        key = _pair(list_id, buyer_id)
        if on_list:
            ctx.put(self.tables.list_entries, key, True)
        else:
            ctx.delete(self.tables.list_entries, key)

    # -- behaviour, from attribution's clicks and orders ----------------------------

    def on_click(self, ctx: HandlerContext, click: Click) -> None:
        """A click in its buyer's partition: the buyer's behaviour, and event triggers."""
        pair = _pair(click.shop_id, click.buyer_id)
        facts = ctx.get(self.tables.behaviour, pair) or NO_FACTS
        after = clicked(facts, click.ts_ms)
        if after is facts:
            return  # not newer than what is known: a replay arms nothing
        ctx.put(self.tables.behaviour, pair, after)
        for plan in self._event_plans(click.shop_id, "click_no_order"):
            self._arm(ctx, plan, click.buyer_id, click.click_id, click.ts_ms, str(click.ts_ms))

    def on_order(self, ctx: HandlerContext, event: OrderEvent) -> None:
        """An order event in its buyer's partition: behaviour, event triggers, and what the
        buyer's exposures to plans led to."""
        pair = _pair(event.shop_id, event.buyer_id)
        self._watch_order(ctx, pair, event)
        facts = ctx.get(self.tables.behaviour, pair) or NO_FACTS
        after = order_event(facts, event.order_id, event.event, event.ts_ms,
                            sum(line.amount for line in event.items))
        if after is facts:
            return
        ctx.put(self.tables.behaviour, pair, after)
        trigger = started_trigger(facts, after, event.order_id, event.event)
        if trigger is None:
            return
        for plan in self._event_plans(event.shop_id, trigger):
            self._arm(ctx, plan, event.buyer_id, f"{event.order_id}:{event.event}",
                      event.ts_ms, event.order_id)

    def _arm(self, ctx: HandlerContext, plan: Plan, buyer_id: str, event_id: str, at_ms: int,
             ref: str) -> None:
        occurrence = occurrence_id(plan.plan_id, event_id)
        due = at_ms + plan.trigger.delay_ms
        ctx.put(self.tables.plan_timers, timer_key(plan.plan_id, due, occurrence, buyer_id),
                Timer(plan.plan_id, occurrence, buyer_id, due, "event", ref))

    def _event_plans(self, shop_id: str, on: str) -> list[Plan]:
        version, index = self._event_plans_of
        if version != self.catalog.records_read:
            index = {}
            for plan in self.catalog.plans.values():
                if plan.trigger.kind == EVENT and plan.state != PLAN_STOPPED:
                    index.setdefault((plan.shop_id, plan.trigger.on or ""), []).append(plan)
            self._event_plans_of = (self.catalog.records_read, index)
        return index.get((shop_id, on), [])

    # -- outcomes: used, replenished, converted -------------------------------------

    def _expose(self, ctx: HandlerContext, plan: Plan, occurrence: str, buyer_id: str,
                variant: str | None, grant_id: str | None) -> None:
        """Watch what an action (or a holdout decision) made now leads to."""
        pair = _pair(plan.shop_id, buyer_id)
        watch = ctx.get(self.tables.watches, pair) or NO_WATCH
        after = watch.exposed(Exposure(plan.plan_id, occurrence, variant, ctx.now_ms,
                                       plan.conversion_window_ms, grant_id))
        if after is watch:
            return
        ctx.put(self.tables.watches, pair, after)
        facts = ctx.get(self.tables.behaviour, pair) or NO_FACTS
        if any(at is not None and at > ctx.now_ms for _order, _amount, at in facts.paid):
            self._settle_later(ctx, pair, plan.shop_id, buyer_id)  # paid "in the future"

    def _watch_order(self, ctx: HandlerContext, pair: bytes, event: OrderEvent) -> None:
        watch = ctx.get(self.tables.watches, pair)
        if watch is None:
            return
        after = watch.observed(event)
        if after != watch:
            ctx.put(self.tables.watches, pair, after)
        if after != watch or event.event == "paid":
            self._settle_later(ctx, pair, event.shop_id, event.buyer_id)

    def _settle_later(self, ctx: HandlerContext, pair: bytes, shop_id: str, buyer_id: str) -> None:
        settling = ctx.cache(self._load_settling)
        if ctx.get(self.tables.outcome_waits, pair) is not None:
            return  # waits already
        ctx.put(self.tables.outcome_waits, pair, (shop_id, buyer_id))
        settling.handled.append((self.orders_handled.request(ctx), pair))

    def _load_settling(self, ctx: HandlerContext) -> Settling:
        """After an assignment nobody knows how far the waiting buyers' orders were read:
        they all wait again."""
        settling = Settling()
        waiting: list[bytes] = []
        while page := self.tables.outcome_waits.keys_with_prefix(
                ctx.partition, b"", after=waiting[-1] if waiting else None, limit=10_000):
            waiting.extend(page)
        if waiting:
            ticket = self.orders_handled.request(ctx)
            settling.handled.extend((ticket, key) for key in waiting)
        return settling

    def _orders_handled(self, ctx: HandlerContext, ticket: int) -> None:
        settling = ctx.cache(self._load_settling)
        keys = _take_until(settling.handled, ticket)
        if keys:
            read = self.orders_read.request(ctx)
            settling.read.extend((read, key) for key in keys)

    def _orders_read(self, ctx: HandlerContext, ticket: int) -> None:
        for key in _take_until(ctx.cache(self._load_settling).read, ticket):
            self._settle(ctx, key)

    def _settle(self, ctx: HandlerContext, pair: bytes) -> None:
        """Record what the buyer's exposures at the shop led to, from every order known."""
        waiting = ctx.get(self.tables.outcome_waits, pair)
        watch = ctx.get(self.tables.watches, pair)
        if waiting is None or watch is None:
            return
        ctx.delete(self.tables.outcome_waits, pair)
        shop_id, buyer_id = waiting
        facts = ctx.get(self.tables.behaviour, pair) or NO_FACTS
        after, outcomes = watch.settled(facts.paid, ctx.now_ms)
        for outcome in outcomes:
            self._record_outcome(ctx, shop_id, buyer_id, outcome)
        if not after.exposures:
            ctx.delete(self.tables.watches, pair)
        elif after != watch:
            ctx.put(self.tables.watches, pair, after)

    def _record_outcome(self, ctx: HandlerContext, shop_id: str, buyer_id: str,
                        outcome: Outcome) -> None:
        exposure = outcome.exposure
        record = OperationRecord(
            record_id(exposure.occurrence_id, buyer_id, outcome.kind), exposure.plan_id,
            exposure.occurrence_id, buyer_id, shop_id, exposure.variant, outcome.kind,
            outcome.order_id, ctx.now_ms)
        ctx.send(self.topics.operation_records, buyer_id.encode(), record.encode())
        row = self._progress_row(exposure.plan_id, exposure.occurrence_id).encode()
        ctx.update(self.tables.plan_progress, row, Progress.copy, lambda progress: (
            progress.measure(exposure.variant, outcome.kind, outcome.amount)))

    # -- operation records -------------------------------------------------------------

    def on_record(self, ctx: HandlerContext, key: bytes | None, value: bytes | None) -> None:
        """Each operation record once: kept for the buyer's view, counted, fanned out."""
        record = decode_operation_record(value)
        if not ctx.owns(record.buyer_id.encode()):
            raise InvalidEvent("key: operation records are keyed by buyer_id")
        stored_key = record.buyer_id.encode() + SEP + record.record_id.encode()
        if ctx.get(self.tables.member_records, stored_key) is not None:
            return
        ctx.put(self.tables.member_records, stored_key, record)
        if record.kind in DELIVERY_KINDS:
            row = self._progress_row(record.plan_id, record.occurrence_id).encode()
            which = shard(record.buyer_id, self.rules.shards)
            ctx.update(self.tables.plan_progress, row, Progress.copy,
                       lambda progress: progress.count(which, record.kind,
                                                       variant=record.variant))
        fan_out(ctx, self.sinks, "operation_records", record.buyer_id, record.record_id,
                record, {"shop_id": record.shop_id, "plan_id": record.plan_id})

    # -- the timer: start occurrences, page through them, fire due timers --------------

    def execute(self, ctx: HandlerContext) -> None:
        self.throttle.set_share(self.share())  # once a tick: it walks the assignment
        runs = ctx.cache(self._load_runs)
        ctx.cache(self._load_settling)  # buyers left waiting by the partition's last owner
        for plan in list(self.catalog.plans.values()):
            if plan.state == ACTIVE and plan.trigger.kind != EVENT:
                self._guarded(ctx, plan, lambda plan=plan: self._start_due(ctx, plan, runs))
        for occurrence in list(runs.ready):
            self._run(ctx, occurrence, runs)
        self._fire_timers(ctx)

    def _guarded(self, ctx: HandlerContext, plan: Plan, work: Callable[[], object]) -> bool:
        """Do one plan's work of this tick. If it fails, the plan is marked failed in this
        partition (a progress row `<plan_id>@failed` with the reason, shown by /plans) and
        left alone until it is written again; every other plan, timer and handler goes
        on. False when the plan has failed."""
        failures = ctx.cache(Failures)
        failed = failures.failed.get(plan.plan_id)
        if failed is plan:
            return False
        row = occurrence_id(plan.plan_id, FAILED_ROW).encode()
        try:
            work()
        except Exception as exc:
            logger.exception("plan %r failed in partition %s", plan.plan_id, ctx.partition)
            failures.failed[plan.plan_id] = plan
            ctx.put(self.tables.plan_progress, row, Progress(
                plan.plan_id, row.decode(), ctx.now_ms, ctx.now_ms, state=FAILED,
                finished_ms=ctx.now_ms, reason=f"{type(exc).__name__}: {exc}"[:500]))
            return False
        # A failure of an earlier version (here, or stored before the partition came here)
        # is over once the plan runs well.
        if failures.failed.pop(plan.plan_id, None) is not None \
                or plan.plan_id not in failures.checked:
            failures.checked.add(plan.plan_id)
            if ctx.get(self.tables.plan_progress, row) is not None:
                ctx.delete(self.tables.plan_progress, row)
        return True

    def _inputs_read(self, ctx: HandlerContext, ticket: int) -> None:
        ctx.cache(self._load_runs).caught_up(ticket)

    def _load_runs(self, ctx: HandlerContext) -> Runs:
        """The occurrences whose task in this partition is not finished (in start order),
        all waiting for the inputs (after a restart nobody knows how far they were read)."""
        runs = Runs()
        running = [progress for _key, progress in self.tables.plan_progress.scan(ctx.partition)
                   if progress.state == RUNNING and not _is_event_row(progress)]
        if running:
            ticket = self.inputs_read.request(ctx)
            for progress in sorted(running, key=lambda p: p.fire_ms):
                runs.wait(progress.occurrence_id, ticket)
        return runs

    def _start_due(self, ctx: HandlerContext, plan: Plan, runs: Runs) -> None:
        plan_key = plan.plan_id.encode()
        after = ctx.get(self.tables.plan_fired, plan_key)
        if after is None:
            after = max(plan.created_ms, plan.start_ms) - 1
        for _ in range(FIRES_PER_TICK):
            fire = self._next_fire_after(plan, after)
            if fire is None or fire > ctx.now_ms:
                return
            occurrence = occurrence_id(plan.plan_id, fire)
            if timing(fire, ctx.now_ms, self.rules.max_lateness_ms) == MISSED:
                # Too late to start, and so is every fire time up to the lateness limit: one
                # row says so for all of them (a long outage writes one, not one a fire).
                after = ctx.now_ms - self.rules.max_lateness_ms - 1
                ctx.put(self.tables.plan_progress, occurrence.encode(), Progress(
                    plan.plan_id, occurrence, fire, started_ms=ctx.now_ms,
                    state=MISSED_FIRES, finished_ms=ctx.now_ms, until_ms=after))
                ctx.put(self.tables.plan_fired, plan_key, after)
                continue
            ctx.put(self.tables.plan_progress, occurrence.encode(),
                    Progress(plan.plan_id, occurrence, fire, started_ms=ctx.now_ms))
            ctx.put(self.tables.plan_fired, plan_key, fire)
            runs.wait(occurrence, self.inputs_read.request(ctx))
            after = fire

    def _next_fire_after(self, plan: Plan, after: int) -> int | None:
        # Asked every tick in every partition: computed once per plan version and start.
        known = self._next_fire.get(plan.plan_id)
        if known is not None and known[0] is plan and known[1] == after:
            return known[2]
        fire = next(iter(fire_times(plan, after, self.rules.default_tz)), None)
        self._next_fire[plan.plan_id] = (plan, after, fire)
        return fire

    def _run(self, ctx: HandlerContext, occurrence: str, runs: Runs) -> None:
        row = occurrence.encode()
        stored = ctx.get(self.tables.plan_progress, row)
        if stored is None or stored.state != RUNNING:
            runs.finish(occurrence)
            return
        plan = self.catalog.plans.get(stored.plan_id)
        if plan is not None and plan.state == PAUSED:
            return
        if plan is not None and ctx.backlogged():
            return  # the partition's last pages are not committed yet: no more in memory
        progress = stored.copy()
        if plan is None or plan.state == PLAN_STOPPED:
            progress.state = STOPPED
        else:  # what it decided before a failure is kept below, with its cursor
            self._guarded(ctx, plan, lambda: self._page(ctx, plan, progress))
        if progress.state != RUNNING:
            progress.finished_ms = ctx.now_ms
            runs.finish(occurrence)
            if plan is not None and plan.action.kind == ASSIGN:
                self._assign_request(ctx, plan, AssignRequest(
                    END, plan.plan_id, occurrence, progress.fire_ms, plan.shop_id,
                    partition=ctx.partition))
        if progress != stored:
            ctx.put(self.tables.plan_progress, row, progress)

    def _page(self, ctx: HandlerContext, plan: Plan, progress: Progress) -> None:
        """Decide the next page of buyers; the progress is `done` when the partition has no
        buyer left."""
        buyers, complete = self._candidates(ctx, plan, progress.cursor)
        for buyer_id in buyers:
            current = self.catalog.plans.get(plan.plan_id)  # paused or stopped: per buyer
            if current is None or current.state != ACTIVE:
                return
            if not self._decide(ctx, current, progress, progress.occurrence_id, buyer_id):
                return  # out of tokens: this buyer comes first next tick
            progress.cursor = buyer_id
        if complete:
            progress.state = DONE

    def _candidates(self, ctx: HandlerContext, plan: Plan, cursor: str | None
                    ) -> tuple[list[str], bool]:
        """The next buyers of the plan's shop (a profile or behaviour there) or of its lists
        in this partition after `cursor`, in id order; and whether they are the last."""
        limit = self.rules.page
        sources = [(self.tables.members, plan.shop_id), (self.tables.behaviour, plan.shop_id),
                   *((self.tables.list_entries, name) for name in sorted(plan.lists))]
        found: set[bytes] = set()
        bound: bytes | None = None
        for table, first in sources:
            prefix = first.encode() + SEP
            keys = table.keys_with_prefix(
                ctx.partition, prefix, limit=limit,
                after=None if cursor is None else prefix + cursor.encode())
            buyers = [key[len(prefix):] for key in keys]
            found.update(buyers)
            if len(keys) >= limit and (bound is None or buyers[-1] < bound):
                bound = buyers[-1]  # this source may go on past its page
        ordered = sorted(buyer for buyer in found if bound is None or buyer <= bound)
        return [buyer.decode() for buyer in ordered], bound is None

    def _decide(self, ctx: HandlerContext, plan: Plan, progress: Progress, occurrence: str,
                buyer_id: str, *, too_late: bool = False, again: bool = False,
                fire_ms: int | None = None) -> bool:
        """Decide one buyer and emit what it gives; False (nothing done) when the plan's
        throttle has no token for an action now."""
        tables = self.tables
        pair = _pair(plan.shop_id, buyer_id)
        buyer = Buyer(
            member=ctx.get(tables.members, pair) or NO_MEMBER,
            lists=frozenset(name for name in plan.lists
                            if ctx.get(tables.list_entries, _pair(name, buyer_id))),
            behaviour=(ctx.get(tables.behaviour, pair) or NO_FACTS).behaviour())
        history = ctx.get(tables.action_history, pair) or ()
        decision = decide(plan, buyer_id, buyer, now_ms=ctx.now_ms, sent_ms=history,
                          default_tz=self.rules.default_tz, too_late=too_late)
        if decision is None:
            return True
        if decision.outcome == SEND:
            assigns = plan.action.kind == ASSIGN
            sink = plan.action_for(decision.variant).sink
            if not assigns and self.sinks.queue_of(sink) is None and self.sinks.configured(sink):
                return False  # its queue is being created (a sink just added): wait for it
            if not self.throttle.try_take(plan.plan_id, plan.rate_per_s, plan.burst,
                                          ctx.now_ms):
                return False
            if assigns:  # the shop's partition gives the buyer to an operator
                self._assign_request(ctx, plan, AssignRequest(
                    REQUEST, plan.plan_id, occurrence,
                    progress.fire_ms if fire_ms is None else fire_ms, plan.shop_id,
                    buyer_id, decision.variant))
            else:
                self._send_action(ctx, plan, occurrence, buyer_id, decision.variant)
            ctx.put(tables.action_history, pair, (*history, ctx.now_ms)[-MAX_CAP:])
            granted = plan.action_for(decision.variant).kind == GRANT
            self._expose(ctx, plan, occurrence, buyer_id, decision.variant,
                         action_id(occurrence, buyer_id) if granted else None)
        else:
            self._record(ctx, plan, occurrence, buyer_id, decision.variant, decision.outcome)
            if decision.variant == HOLDOUT and decision.outcome == HELD_OUT:
                self._expose(ctx, plan, occurrence, buyer_id, HOLDOUT, None)
        if decision.outcome == DEFERRED:
            assert decision.until_ms is not None
            ctx.put(tables.plan_timers,
                    timer_key(plan.plan_id, decision.until_ms, occurrence, buyer_id),
                    Timer(plan.plan_id, occurrence, buyer_id, decision.until_ms, "deferred"))
        which = shard(buyer_id, self.rules.shards)
        if not again:
            progress.count(which, "selected")
        progress.count(which, COUNTED_AS[decision.outcome], buyer_id,
                       variant=decision.variant)
        return True

    def _send_action(self, ctx: HandlerContext, plan: Plan, occurrence: str, buyer_id: str,
                     variant: str | None) -> None:
        ident = action_id(occurrence, buyer_id)
        action = encode_action(action_id=ident, plan=plan, occurrence_id=occurrence,
                               buyer_id=buyer_id, variant=variant, ts_ms=ctx.now_ms)
        ctx.send(self.topics.plan_actions, buyer_id.encode(), orjson.dumps(action))
        if not fan_out(ctx, self.sinks, "plan_actions", buyer_id, ident, action,
                       {"shop_id": plan.shop_id, "plan_id": plan.plan_id}, to=action["sink"]):
            # Dead-lettered like an action its sink gave up on: `cps plans retry` queues it
            # once the sink exists.
            error = f"no sink {action['sink']!r} to deliver it"
            record = queued_event("plan_actions", ident, action, ctx.now_ms)
            ctx.send(self.topics.sinks_deadletter, action["sink"].encode(), sink_dead_letter(
                action["sink"], buyer_id.encode(), record, error, attempts=0,
                first_attempt_ms=ctx.now_ms, ts_ms=ctx.now_ms))
            self._record(ctx, plan, occurrence, buyer_id, variant, "failed", ref=error)

    def _assign_request(self, ctx: HandlerContext, plan: Plan, request: AssignRequest) -> None:
        ctx.send(self.topics.assign_requests, plan.shop_id.encode(), request.encode())

    def _record(self, ctx: HandlerContext, plan: Plan, occurrence: str, buyer_id: str,
                variant: str | None, kind: str, ref: str | None = None) -> None:
        record = OperationRecord(record_id(occurrence, buyer_id, kind), plan.plan_id,
                                 occurrence, buyer_id, plan.shop_id, variant, kind, ref,
                                 ctx.now_ms)
        ctx.send(self.topics.operation_records, buyer_id.encode(), record.encode())

    def _fire_timers(self, ctx: HandlerContext) -> None:
        """Event triggers whose delay is over and deferred buyers whose quiet hours ended,
        plan by plan: a paused plan's timers (or one out of tokens) hold back no other's."""
        tables, after = self.tables, None
        for _plan in range(MAX_TIMER_PLANS_PER_TICK):
            first = tables.plan_timers.keys_with_prefix(ctx.partition, b"", after=after,
                                                        limit=1)
            if not first:
                return
            if first[0].startswith(OLD_TIMER_KEY):
                self._rekey_old_timers(ctx)
                return
            plan_id, prefix = timer_plan(first[0])
            after = prefix + b"\xff"  # past every timer of this plan
            plan = self.catalog.plans.get(plan_id)
            if plan is not None and plan.state == PAUSED:
                continue
            if plan is None or plan.state == PLAN_STOPPED:
                for key in tables.plan_timers.keys_with_prefix(ctx.partition, prefix,
                                                                limit=self.rules.page):
                    ctx.delete(tables.plan_timers, key)
                continue
            self._guarded(ctx, plan, lambda plan=plan, prefix=prefix:
                          self._fire_plan_timers(ctx, plan, prefix))

    def _fire_plan_timers(self, ctx: HandlerContext, plan: Plan, prefix: bytes) -> None:
        tables = self.tables
        for key in tables.plan_timers.keys_with_prefix(ctx.partition, prefix,
                                                        limit=self.rules.page):
            due_ms = int(key[len(prefix):len(prefix) + 16])
            if due_ms > ctx.now_ms:
                return
            timer = ctx.get(tables.plan_timers, key)
            if timer is None:
                continue  # fired already, not committed yet
            if timer.cause == "event" and not self._event_holds(ctx, plan, timer):
                ctx.delete(tables.plan_timers, key)
                continue
            row = self._progress_row(plan.plan_id, timer.occurrence_id).encode()
            stored = ctx.get(tables.plan_progress, row)
            progress = (stored.copy() if stored is not None else
                        Progress(plan.plan_id, row.decode(), timer.fire_ms, ctx.now_ms))
            too_late = timing(due_ms, ctx.now_ms, self.rules.max_lateness_ms) == MISSED
            if not self._decide(ctx, plan, progress, timer.occurrence_id, timer.buyer_id,
                                fire_ms=timer.fire_ms if plan.trigger.kind == EVENT else None,
                                too_late=too_late, again=timer.cause == "deferred"):
                return  # out of tokens: the plan's next timers wait for the next tick
            ctx.delete(tables.plan_timers, key)
            ctx.put(tables.plan_progress, row, progress)

    def _rekey_old_timers(self, ctx: HandlerContext) -> None:
        """Timers stored by earlier versions, keyed by due time alone, move to their plan."""
        for key in self.tables.plan_timers.keys_with_prefix(ctx.partition, OLD_TIMER_KEY,
                                                             limit=self.rules.page):
            timer = ctx.get(self.tables.plan_timers, key)
            if timer is not None:
                due_ms = int(key[:16])
                ctx.put(self.tables.plan_timers,
                        timer_key(timer.plan_id, due_ms, timer.occurrence_id, timer.buyer_id),
                        timer)
            ctx.delete(self.tables.plan_timers, key)

    def _event_holds(self, ctx: HandlerContext, plan: Plan, timer: Timer) -> bool:
        facts = ctx.get(self.tables.behaviour, _pair(plan.shop_id, timer.buyer_id)) or NO_FACTS
        return (plan.live_at(timer.fire_ms, self.rules.default_tz)
                and trigger_holds(facts, plan.trigger.on or "", timer.ref))

    def _progress_row(self, plan_id: str, occurrence: str) -> str:
        plan = self.catalog.plans.get(plan_id)
        return (occurrence_id(plan_id, EVENT_ROW) if plan is not None
                and plan.trigger.kind == EVENT else occurrence)


class Failures:
    """A partition's plans whose work failed (by plan id: the version that failed), and
    the plans whose stored failure row was looked for since the partition was assigned."""

    def __init__(self, _ctx: HandlerContext) -> None:
        self.failed: dict[str, Plan] = {}
        self.checked: set[str] = set()


def _is_event_row(progress: Progress) -> bool:
    """An event plan's one progress row in a partition: counts, never an occurrence to
    page (its occurrences are its buyers' triggering events)."""
    return progress.occurrence_id == occurrence_id(progress.plan_id, EVENT_ROW)


def _pair(first: str, buyer_id: str) -> bytes:
    return first.encode() + SEP + buyer_id.encode()


def timer_key(plan_id: str, due_ms: int, occurrence: str, buyer_id: str) -> bytes:
    """`<length of the plan id, 3 digits><plan id><due ms, 16 digits>\\x1f<occurrence>
    \\x1f<buyer>`: a plan's timers together, in due order; the length keeps any plan id,
    whatever it holds, from running into another's (and is never 000, which is how the
    due-time keys of earlier versions begin)."""
    plan = plan_id.encode()
    return (b"%03d" % len(plan) + plan + b"%016d" % max(due_ms, 0) + SEP
            + occurrence.encode() + SEP + buyer_id.encode())


def timer_plan(key: bytes) -> tuple[str, bytes]:
    """The plan id of a timer key and the prefix all that plan's timer keys share."""
    length = int(key[:3])
    return key[3:3 + length].decode(), key[:3 + length]


def create(*, engine: Engine, topics: Topics, settings: Settings, catalog: Catalog,
           sink_registry: SinkRegistry, operation_tables: OperationTables) -> Operations:
    """The plan handlers; attribution tells them of clicks and orders (`register` runs them)."""
    return Operations(
        topics=PlanTopics(topics.profiles_by_buyer, topics.plan_actions,
                          topics.operation_records, topics.sinks_deadletter,
                          inputs=(topics.members, topics.lists, topics.profiles_by_buyer,
                                  topics.clicks, topics.clicks_by_buyer,
                                  topics.orders_by_buyer),
                          assign_requests=topics.assign_requests, orders=topics.orders,
                          order_inputs=(topics.orders, topics.orders_by_buyer)),
        tables=operation_tables,
        rules=PlanRules(default_tz=settings.plan_tz,
                        max_lateness_ms=settings.plan_max_lateness_ms,
                        shards=settings.plan_shards, tick_s=engine.tick_interval_s),
        catalog=catalog, sinks=sink_registry, share=engine.owned_share,
        catch_up=engine.catch_up, after_handled=engine.after_handled)


def register(*, engine: Engine, topics: Topics, sink_registry: SinkRegistry,
             operation_tables: OperationTables, operations: Operations) -> None:
    """Read profiles, lists and operation records; execute plans on the engine's timer."""
    engine.pipeline("plans", {
        topics.members: operations.on_member, topics.lists: operations.on_list_entry,
        topics.profiles_by_buyer: operations.on_rekeyed_profile,
        topics.operation_records: operations.on_record,
    }, ticks=[operations.execute],
        outputs=(topics.profiles_by_buyer, topics.plan_actions, topics.operation_records,
                 topics.sinks_deadletter, topics.assign_requests,
                 *sink_registry.fan_out_topics),
        tables=every_table(operation_tables))

