"""Operation plans (SPEC 13): the plan as the engine understands it, checked once.

`parse_plan` turns the JSON object of `cps.plans` (or `PUT /admin/plans/{id}`)
into a `Plan`, refusing anything malformed with a `PlanError` that names the
path of the part at fault (`trigger.cron`, `audience.all[1].tag`, ...), so
the admin API answers 400 with it and the engine dead-letters it with it; an
`assign` plan's payload becomes its `Assignment` (SPEC 14), checked the same way.
`fire_times` says when a plan acts: its cron fire times inside `effective`
and `period`, or, for a `now` plan, the moment it was created. `never_fires`
says why a plan can never act again (SPEC 13 refuses such a plan with 400
naming `trigger` or `period`); "never" goes as far as the fire-time search
looks, `periods.HORIZON_YEARS` (30) ahead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.domain import audience, periods, triggers, wallclock
from app.domain.operations import FrequencyCap, QuietHours, Variant, parse_quiet_hours

ACTIVE, PAUSED, STOPPED = "active", "paused", "stopped"
STATES = (ACTIVE, PAUSED, STOPPED)
GRANT, NOTIFY, ASSIGN = "grant", "notify", "assign"
ACTION_KINDS = (GRANT, NOTIFY, ASSIGN)
EVENTS = ("click_no_order", "created_unpaid", "paid")
SCHEDULE, NOW, EVENT = "schedule", "now", "event"
# The cap counts a buyer's latest actions at the shop; that many are remembered.
MAX_CAP = 64
MAX_RATE_PER_S = 1_000_000
MAX_MS = 2**53 - 1
MAX_REQUIRES = 100  # qualifications an assign plan may require


class PlanError(audience.RuleError):
    """A malformed plan; `path` names the part at fault (an audience rule's included)."""


@dataclass(frozen=True, slots=True)
class Trigger:
    kind: str                                # schedule | now | event
    cron: str | None = None
    schedule: triggers.Schedule | None = None
    on: str | None = None                    # the event of an `event` trigger
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class Action:
    kind: str                                # grant | notify | assign
    sink: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Assignment:
    """An `assign` plan's payload (SPEC 14): the qualifications an operator needs, the
    plan's rank among the shop's plans of one fire time (higher first), and the buyers of
    the audience it leaves out (exclusion wins)."""

    requires: frozenset[str] = frozenset()
    priority: int = 0
    exclude: audience.Rule | None = None


@dataclass(frozen=True, slots=True)
class PlanVariant:
    name: str
    weight_bp: int
    payload: Mapping[str, Any] | None = None  # None: the plan's own payload
    sink: str | None = None                   # None: the plan's own sink


@dataclass(frozen=True, eq=False, slots=True)
class Plan:
    plan_id: str
    shop_id: str
    name: str
    tz: str | None                           # None: the engine's CPS_PLAN_TZ
    audience: audience.Rule
    lists: frozenset[str]                    # the lists the audience or `exclude` name
    start_ms: int
    end_ms: int | None
    period: periods.Period | None
    trigger: Trigger
    action: Action
    variants: tuple[PlanVariant, ...] = ()
    holdout_bp: int = 0
    conversion_window_ms: int = 7 * 86_400_000
    frequency_cap: FrequencyCap | None = None
    quiet_hours: QuietHours | None = None
    rate_per_s: float = 100.0
    burst: int = 100
    state: str = ACTIVE
    created_ms: int = 0                      # a `now` plan's fire time
    assignment: Assignment | None = None     # an `assign` plan's payload, else None
    source: Mapping[str, Any] = field(default_factory=dict)  # the object as written

    def zone(self, default: str) -> str:
        return self.tz or default

    @property
    def split(self) -> tuple[Variant, ...]:
        return tuple(Variant(v.name, v.weight_bp) for v in self.variants)

    def action_for(self, variant: str | None) -> Action:
        """The action a buyer of `variant` gets: the variant's payload and sink, each where
        the variant names one, else the plan's."""
        for candidate in self.variants:
            if candidate.name == variant:
                return Action(self.action.kind, candidate.sink or self.action.sink,
                              self.action.payload if candidate.payload is None
                              else candidate.payload)
        return self.action

    def live_at(self, at_ms: int, default_tz: str) -> bool:
        """Inside `effective` and the period at `at_ms`."""
        if at_ms < self.start_ms or (self.end_ms is not None and at_ms >= self.end_ms):
            return False
        return self.period is None or periods.contains(self.period, self.zone(default_tz), at_ms)


def fire_times(plan: Plan, after_ms: int, default_tz: str) -> Iterator[int]:
    """The plan's fire times after `after_ms` (schedule and now plans), in order."""
    if plan.trigger.kind == NOW:
        if plan.created_ms > after_ms and plan.live_at(plan.created_ms, default_tz):
            yield plan.created_ms
        return
    if plan.trigger.kind == SCHEDULE:
        assert plan.trigger.schedule is not None
        yield from triggers.plan_fire_times(
            plan.trigger.schedule, plan.zone(default_tz), after_ms, start_ms=plan.start_ms,
            end_ms=plan.end_ms, period=plan.period)


def never_fires(plan: Plan, now_ms: int, default_tz: str) -> PlanError | None:
    """Why the plan can never fire after `now_ms`: `period` when the period has no window
    left inside `effective`, else `trigger`; None when it can fire."""
    zone = plan.zone(default_tz)
    if plan.trigger.kind == NOW and plan.live_at(plan.created_ms, default_tz):
        return None
    since = max(now_ms, plan.start_ms)
    over = plan.end_ms is not None and plan.end_ms <= since
    if plan.period is not None:
        window = None if over else next(periods.windows(plan.period, zone, since), None)
        if window is None or (plan.end_ms is not None and window[0] >= plan.end_ms):
            return PlanError("period", f"no window left inside effective after "
                                       f"{_local(now_ms, zone)} (looked "
                                       f"{periods.HORIZON_YEARS} years ahead)")
    elif over:
        return PlanError("trigger", f"effective ended at {_local(plan.end_ms, zone)}: "
                                    "the plan can never fire again")
    if plan.trigger.kind == NOW:
        return PlanError("trigger", f"a `now` plan fires at created_ms "
                                    f"({_local(plan.created_ms, zone)}), which lies outside "
                                    "effective or period")
    # The engine counts a schedule's fire times from created_ms on.
    after = max(now_ms, plan.created_ms - 1)
    if plan.trigger.kind == SCHEDULE and next(fire_times(plan, after, default_tz), None) is None:
        return PlanError("trigger", f"cron {plan.trigger.cron!r} fires at no time inside "
                                    f"effective and period in the {periods.HORIZON_YEARS} "
                                    f"years after {_local(after, zone)}")
    return None


def parse_plan(body: Any, plan_id: str | None = None) -> Plan:
    if not isinstance(body, dict):
        raise PlanError("plan", "must be a JSON object")
    plan_id = _id(body, "plan_id") if plan_id is None or "plan_id" in body else plan_id
    tz = body.get("tz")
    if tz is not None:
        if type(tz) is not str:
            raise PlanError("tz", "must be an IANA time zone name")
        try:
            periods.time_zone(tz)
        except periods.PeriodError as exc:
            raise PlanError("tz", str(exc)) from None
    rule = _rule(body.get("audience"), "audience")
    effective = _object(body, "effective", required=False) or {}
    start_ms = _int(effective, "effective.start_ms", "start_ms", default=0)
    end_ms = _int(effective, "effective.end_ms", "end_ms")
    if end_ms is not None and end_ms <= start_ms:
        raise PlanError("effective.end_ms", "must be after start_ms")
    period = None
    if body.get("period") is not None:
        if type(body["period"]) is not str:
            raise PlanError("period", "must be a period expression or null")
        try:
            period = periods.parse(body["period"])
        except periods.PeriodError as exc:
            raise PlanError("period", str(exc)) from None
    action = _action(body)
    assignment = _assignment(action.payload) if action.kind == ASSIGN else None
    variants = _variants(body, action.kind)
    holdout_bp = _int(body, "holdout_bp", "holdout_bp", default=0, maximum=10_000)
    if holdout_bp == 10_000 and variants:
        raise PlanError("holdout_bp", "a plan holding out everyone has no use for variants")
    rate = body.get("rate_per_s", 100)
    if type(rate) not in (int, float) or not 0 < rate <= MAX_RATE_PER_S:
        raise PlanError("rate_per_s", f"must be a number above 0, at most {MAX_RATE_PER_S}")
    state = body.get("state", ACTIVE)
    if state not in STATES:
        raise PlanError("state", f"must be one of {', '.join(STATES)}")
    trigger = _trigger(body)
    created_ms = _int(body, "created_ms", "created_ms", default=0)
    if trigger.kind == NOW and not created_ms:
        raise PlanError("created_ms", "required for a `now` plan: the moment it fires "
                                      "(PUT /admin/plans/{id} stamps it)")
    name = body.get("name", plan_id)
    if type(name) is not str or len(name) > 200:
        raise PlanError("name", "must be a string of at most 200 characters")
    excluded = () if assignment is None or assignment.exclude is None else _lists(
        assignment.exclude)
    return Plan(
        plan_id=plan_id, shop_id=_id(body, "shop_id"), name=name, tz=tz,
        audience=rule, lists=frozenset((*_lists(rule), *excluded)), start_ms=start_ms,
        end_ms=end_ms, period=period, trigger=trigger, action=action, variants=variants,
        holdout_bp=holdout_bp,
        conversion_window_ms=_int(body, "conversion_window_ms", "conversion_window_ms",
                                  default=7 * 86_400_000),
        frequency_cap=_frequency_cap(body), quiet_hours=_quiet_hours(body),
        rate_per_s=float(rate),
        burst=_int(body, "burst", "burst", default=max(1, int(rate)), minimum=1,
                   maximum=MAX_RATE_PER_S),
        state=state, created_ms=created_ms, assignment=assignment,
        source=body)


def _rule(tree: Any, path: str) -> audience.Rule:
    try:
        return audience.parse(tree, path)
    except audience.RuleError as exc:
        raise PlanError(exc.path, str(exc).split(": ", 1)[1]) from None


def _trigger(body: Mapping[str, Any]) -> Trigger:
    trigger = _object(body, "trigger", required=True)
    kind = trigger.get("kind")
    if kind == NOW:
        return Trigger(NOW)
    if kind == SCHEDULE:
        cron = trigger.get("cron")
        if type(cron) is not str:
            raise PlanError("trigger.cron", "required: a 5-field cron expression")
        try:
            return Trigger(SCHEDULE, cron=cron, schedule=triggers.parse_cron(cron))
        except triggers.TriggerError as exc:
            raise PlanError("trigger.cron", str(exc).split(": ", 1)[-1]) from None
    if kind == EVENT:
        on = trigger.get("on")
        if on not in EVENTS:
            raise PlanError("trigger.on", f"must be one of {', '.join(EVENTS)}")
        return Trigger(EVENT, on=on,
                       delay_ms=_int(trigger, "trigger.delay_ms", "delay_ms", default=0))
    raise PlanError("trigger.kind", "must be schedule, now or event")


def _action(body: Mapping[str, Any]) -> Action:
    action = _object(body, "action", required=True)
    if action.get("kind") not in ACTION_KINDS:
        raise PlanError("action.kind", f"must be one of {', '.join(ACTION_KINDS)}")
    sink = action.get("sink")
    if type(sink) is not str or not sink or len(sink) > 128:
        raise PlanError("action.sink", "required: the id of the sink that delivers it")
    payload = action.get("payload", {})
    if not isinstance(payload, dict):
        raise PlanError("action.payload", "must be a JSON object")
    return Action(action["kind"], sink, payload)


def _assignment(payload: Mapping[str, Any]) -> Assignment:
    """SPEC 14's `{"requires", "priority", "exclude"}`, each optional."""
    where = "action.payload"
    requires = payload.get("requires")
    if requires is None:
        requires = []
    if not isinstance(requires, list) or len(requires) > MAX_REQUIRES:
        raise PlanError(f"{where}.requires",
                        f"must be a list of at most {MAX_REQUIRES} qualification ids")
    for n, qualification in enumerate(requires):
        if type(qualification) is not str or not qualification or len(qualification) > 128:
            raise PlanError(f"{where}.requires[{n}]", "must be a string of 1-128 characters")
    exclude = payload.get("exclude")
    return Assignment(
        requires=frozenset(requires),
        priority=_int(payload, f"{where}.priority", "priority", default=0, minimum=-MAX_MS),
        exclude=None if exclude is None else _rule(exclude, f"{where}.exclude"))


def _variants(body: Mapping[str, Any], kind: str) -> tuple[PlanVariant, ...]:
    given = body.get("variants")
    if given is None:
        return ()
    if not isinstance(given, list) or not given or len(given) > 100:
        raise PlanError("variants", "must be null or a list of 1-100 variants")
    found: list[PlanVariant] = []
    for n, entry in enumerate(given):
        where = f"variants[{n}]"
        if not isinstance(entry, dict):
            raise PlanError(where, "must be an object")
        name = entry.get("variant")
        if type(name) is not str or not name or len(name) > 64 or name == "holdout":
            raise PlanError(f"{where}.variant", "must be a name of 1-64 characters, not holdout")
        if any(v.name == name for v in found):
            raise PlanError(f"{where}.variant", f"{name!r} is listed twice")
        payload = entry.get("payload")
        if payload is not None and not isinstance(payload, dict):
            raise PlanError(f"{where}.payload", "must be a JSON object or null")
        if payload is not None and kind == ASSIGN:
            # Recall (exclude) and the plan's rank (priority) are decided before a buyer's
            # variant is, so they cannot differ by variant.
            raise PlanError(f"{where}.payload", "must be null: an assign plan's variants "
                                                "share its payload")
        sink = entry.get("sink")
        if sink is not None and (type(sink) is not str or not sink or len(sink) > 128):
            raise PlanError(f"{where}.sink", "must be a sink id of 1-128 characters or null")
        found.append(PlanVariant(name, _int(entry, f"{where}.weight_bp", "weight_bp",
                                            required=True, minimum=1, maximum=10_000),
                                 payload, sink))
    return tuple(found)


def _frequency_cap(body: Mapping[str, Any]) -> FrequencyCap | None:
    cap = _object(body, "frequency_cap", required=False)
    if cap is None:
        return None
    return FrequencyCap(_int(cap, "frequency_cap.max", "max", required=True, minimum=1,
                             maximum=MAX_CAP),
                        _int(cap, "frequency_cap.per_ms", "per_ms", required=True, minimum=1))


def _quiet_hours(body: Mapping[str, Any]) -> QuietHours | None:
    quiet = _object(body, "quiet_hours", required=False)
    if quiet is None:
        return None
    start, end = quiet.get("from"), quiet.get("to")
    if type(start) is not str or type(end) is not str:
        raise PlanError("quiet_hours", "needs from and to, as HH:MM")
    try:
        return parse_quiet_hours(start, end)
    except ValueError as exc:
        raise PlanError("quiet_hours", str(exc).split(": ", 1)[-1]) from None


def _local(at_ms: int, zone: str) -> str:
    moment = wallclock.local_time(at_ms, periods.time_zone(zone))
    return f"{at_ms} ms" if moment is None else moment.isoformat(timespec="seconds")


def _lists(rule: audience.Rule) -> Iterator[str]:
    if rule.op == "list":
        yield rule.value
    for part in rule.parts:
        yield from _lists(part)


def _id(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if type(value) is not str or not value or len(value) > 128:
        raise PlanError(name, "required: a string of 1-128 characters")
    return value


def _object(body: Mapping[str, Any], name: str, *, required: bool) -> dict[str, Any] | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, dict):
        raise PlanError(name, "required object" if value is None else "must be an object")
    return value


def _int(obj: Mapping[str, Any], path: str, name: str, *, default: int | None = None,
         required: bool = False, minimum: int = 0, maximum: int = MAX_MS) -> Any:
    value = obj.get(name)
    if value is None:
        if required:
            raise PlanError(path, "required integer")
        return default
    if type(value) is not int or not minimum <= value <= maximum:
        raise PlanError(path, f"must be an integer from {minimum} to {maximum}")
    return value
