"""Schedules, plan fire times (each search bounded, checked against a brute force over
minutes), plans that can never fire again, lateness and occurrence ids."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from time import perf_counter
from zoneinfo import ZoneInfo

import pytest
from calendar_checks import (
    TRANSITION_DAYS,
    ZONES,
    Cron,
    Period,
    fixed_terms,
    local_day,
    periodic,
    years_around,
)
from croniter import croniter
from hypothesis import event, given, settings
from hypothesis import strategies as st

from app.domain.periods import parse as parse_period
from app.domain.plans import fire_times as plan_fires
from app.domain.plans import never_fires, parse_plan
from app.domain.triggers import (
    DUE,
    LATER,
    MISSED,
    TriggerError,
    fire_times,
    occurrence_id,
    parse_cron,
    plan_fire_times,
    timing,
)

crons = st.tuples(
    st.sampled_from(["0", "*/15", "5,35", "59"]), st.sampled_from(["9", "*", "1-3", "0,12"]),
    st.sampled_from(["*", "1", "15,31", "29"]), st.sampled_from(["*", "2", "3,10"]),
    st.sampled_from(["*", "1-5", "0", "6,7"]),
).map(" ".join)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def take(iterator, count: int) -> list[int]:
    return [at for _, at in zip(range(count), iterator, strict=False)]


@settings(max_examples=40, deadline=None)
@given(cron=crons, start=st.datetimes(datetime(2024, 1, 1), datetime(2030, 1, 1)))
def test_in_utc_the_fire_times_are_croniters(cron, start):
    start = start.replace(tzinfo=UTC, microsecond=0)
    expected = croniter(cron, start)
    ours = take(fire_times(parse_cron(cron), "UTC", ms(start)), 30)
    assert ours == [int(expected.get_next(float) * 1000) for _ in ours]
    assert len(ours) == 30


def _reaching(wall: datetime, zone: ZoneInfo) -> int:
    moment = wall.replace(tzinfo=UTC) - timedelta(hours=16)
    while moment.astimezone(zone).replace(tzinfo=None) < wall:
        moment += timedelta(minutes=1)
    return ms(moment)


@settings(max_examples=25, deadline=None)
@given(cron=crons, zone=st.sampled_from(["Europe/Berlin", "America/New_York",
                                         "Australia/Lord_Howe"]),
       around=st.sampled_from([datetime(2026, 3, 28), datetime(2026, 10, 24),
                               datetime(2026, 4, 4), datetime(2026, 11, 1)]))
def test_across_dst_changes_each_wall_time_fires_once_where_the_clock_reaches_it(
        cron, zone, around):
    tz = ZoneInfo(zone)
    schedule = parse_cron(cron)
    after = ms(around.replace(tzinfo=tz))
    expected = sorted({_reaching(datetime.combine(day, datetime.min.time())
                                 .replace(hour=h, minute=m), tz)
                       for day in (around.date() + timedelta(days=n) for n in range(4))
                       if schedule.chooses(day) for h in schedule.hours
                       for m in schedule.minutes})
    expected = [at for at in expected if at > after]
    horizon = ms((around + timedelta(days=4)).replace(tzinfo=tz))
    ours = []
    for at in fire_times(schedule, zone, after):
        if at >= horizon:
            break
        ours.append(at)
    assert ours == [at for at in expected if at < horizon]


def test_the_spring_forward_gap_fires_at_its_end_and_the_repeated_hour_once():
    berlin = ZoneInfo("Europe/Berlin")
    spring = take(fire_times(parse_cron("30 2 * * *"), "Europe/Berlin",
                             ms(datetime(2026, 3, 29, tzinfo=berlin))), 2)
    assert [datetime.fromtimestamp(at / 1000, berlin).isoformat() for at in spring] == [
        "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    autumn = take(fire_times(parse_cron("30 2 * * *"), "Europe/Berlin",
                             ms(datetime(2026, 10, 25, tzinfo=berlin))), 2)
    assert [datetime.fromtimestamp(at / 1000, berlin).isoformat() for at in autumn] == [
        "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_plan_fire_times_keep_to_the_effective_interval_and_the_period():
    shanghai = ZoneInfo("Asia/Shanghai")
    start = ms(datetime(2026, 12, 1, tzinfo=shanghai))
    end = ms(datetime(2026, 12, 8, tzinfo=shanghai))
    weekdays_only = parse_period("* * * ? * 1-5 * 32")
    fires = list(plan_fire_times(parse_cron("0 9 * * *"), "Asia/Shanghai", 0,
                                 start_ms=start, end_ms=end, period=weekdays_only))
    assert [datetime.fromtimestamp(at / 1000, shanghai).strftime("%a %d %H:%M")
            for at in fires] == ["Tue 01 09:00", "Wed 02 09:00", "Thu 03 09:00",
                                 "Fri 04 09:00", "Mon 07 09:00"]


def test_lateness_and_ids():
    assert timing(1000, 500, 3_600_000) == LATER
    assert timing(1000, 1000 + 3_600_000, 3_600_000) == DUE
    assert timing(1000, 1001 + 3_600_000, 3_600_000) == MISSED
    assert occurrence_id("p1", 1700000000000) == "p1@1700000000000"
    assert occurrence_id("p1", "evt-9") == "p1@evt-9"


@pytest.mark.parametrize("cron", ["0 9 * *", "61 * * * *", "0 9 * * * *", "every day"])
def test_a_malformed_cron_is_refused(cron):
    with pytest.raises(TriggerError, match="cron"):
        parse_cron(cron)


def test_an_impossible_date_fires_never():
    assert take(fire_times(parse_cron("0 0 30 2 *"), "UTC", 0), 1) == []


# -- bounded searches against the brute force ---------------------------------------------

DAY_MS = 86_400_000
# Crons and periods whose days or times never meet, but for the last two: a Monday 29
# February comes every 28 years (or 40), and 02:30 and 02:45 meet once a year where the
# clock springs forward past both (Europe/Berlin, America/New_York).
NEVER_MEET = [("0 9 31 * *", "* * * ? 2 ? 31"), ("0 9 * 2 *", "* * * ? 3-12 ? 31"),
              ("0 9 * * 1", "* * * ? * 2 32"), ("0 9 * * *", "* * 10-11 * * ? 31")]
APART = [*NEVER_MEET, ("0 9 29 2 *", "* * * ? * 1 32"), ("30 2 * * *", "* 45-59 2-3 * * ? 31")]
# Fire times and windows at the edges of the hours clocks skip or repeat (at 02:00 or 03:00
# in Europe, 23:00 to 00:00 America/Nuuk, 00:00 to 23:00 America/Santiago), tried on the
# days the zone changes its offset.
AT_THE_EDGES = [("30 2 * * *", "* 45-59 2-3 * * ? 31"), ("*/15 2 * * *", "* 30-59 2-2 * * ? 31"),
                ("59 23 * * *", "* * 0-0 * * ? 31"), ("30 23 * * *", "* 0-40 0-0 * * ? 31"),
                ("* 23 * * *", "* * 23-23 * * ? 31"), ("0 0 * * *", "* * 0-0 * * ? 31"),
                ("30 2 * * *", "* 0-29 3-3 * * ? 31")]
# Hours 2 and 23 meet spring-forward gaps (23 America/Nuuk's, over midnight).
plan_crons = st.tuples(
    st.sampled_from(["0", "*/15", "5,35", "59", "30", "*"]),
    st.sampled_from(["9", "*", "1-3", "0,12", "2", "23", "0"]),
    st.one_of(st.just("*"), st.sampled_from(["1", "15,31", "29", "30", "31"])),
    st.one_of(st.just("*"), st.sampled_from(["2", "3,10", "4,6,9,11"])),
    st.one_of(st.just("*"), st.sampled_from(["1-5", "0", "6,7"])),
).map(" ".join)


@dataclass(frozen=True)
class Case:
    zone: str
    cron: str
    period: str | None
    after: int
    start: int
    end: int | None

    def fires(self, after_ms: int) -> Iterator[int]:
        return plan_fire_times(parse_cron(self.cron), self.zone, after_ms, start_ms=self.start,
                               end_ms=self.end,
                               period=None if self.period is None else parse_period(self.period))

    def live(self, at_ms: int, windows: list[tuple[int, int]]) -> bool:
        """Inside effective and, with a period, one of `windows` (the brute force's)."""
        return (self.start <= at_ms and (self.end is None or at_ms < self.end)
                and (self.period is None or any(s <= at_ms < e for s, e in windows)))

    def windows(self, first_ms: int, last_ms: int) -> list[tuple[int, int]]:
        """The brute force's windows of the days around `first_ms` to `last_ms`."""
        tz = ZoneInfo(self.zone)
        if self.period is None:
            return []
        return Period(self.period).windows(tz, local_day(first_ms, tz) - timedelta(days=1),
                                           local_day(last_ms, tz) + timedelta(days=1))


@st.composite
def cases(draw, *, effective_days: int | None = None) -> Case:
    """A cron, a period (none, daily/weekly/monthly, limited to years, a fixed term, or
    one whose days or times never meet the cron's) and an effective interval, around a
    day: often one on which the zone changes its offset, often the first from there on
    that both the cron and the period choose. With `effective_days`, effective ends
    within that many days."""
    zone = draw(st.sampled_from(ZONES))
    shape = draw(st.sampled_from(["none", "periodic", "years", "fixed term", "apart",
                                  "at the edges"]))
    around = draw(st.sampled_from(TRANSITION_DAYS[zone]) if shape == "at the edges" else
                  st.one_of(st.dates(date(2001, 1, 1), date(2038, 12, 31)),
                            st.sampled_from(TRANSITION_DAYS[zone])))
    cron = draw(plan_crons)
    period = draw({"none": st.none(), "periodic": periodic(),
                   "years": periodic(years_around(around.year)),
                   "fixed term": fixed_terms(around)}.get(shape, st.none()))
    if shape in ("apart", "at the edges"):
        cron, period = draw(st.sampled_from(APART if shape == "apart" else AT_THE_EDGES))
    focus = around
    if draw(st.integers(0, 3)):
        cron_chooses = Cron(cron).chooses
        period_chooses = Period(period).chooses if period and shape != "fixed term" else None
        focus = next((day for day in (around + timedelta(days=n) for n in range(400))
                      if cron_chooses(day) and (period_chooses is None or period_chooses(day))),
                     around)
    after = (ms(datetime.combine(focus, time(), ZoneInfo(zone)))
             - draw(st.integers(0, 24 * 60)) * 60_000)
    start = max(0, draw(st.one_of(st.just(0),
                                  st.integers(after - 2 * DAY_MS, after + DAY_MS))))
    end = None
    if effective_days is not None or draw(st.booleans()):
        first_end = max(start, after - DAY_MS // 4) + 60_000
        end = draw(st.integers(first_end, first_end + (effective_days or 3) * DAY_MS))
    return Case(zone, cron, period, after, start, end)


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None)  # the brute force is slow; the engine is timed
@given(case=cases())
def test_the_next_fire_time_is_the_first_one_the_brute_force_finds(case):
    span_end = case.after + 2 * DAY_MS
    windows = case.windows(case.after, span_end)
    expected = [fire for fire in Cron(case.cron).fires(ZoneInfo(case.zone), case.after, span_end)
                if case.live(fire, windows)]
    started = perf_counter()
    found = next(case.fires(case.after), None)
    assert perf_counter() - started < 1.0  # about 45 ms at the worst found; the old: never
    event("fires within the brute force's span" if expected else "none within the span")
    if expected:
        assert found == expected[0]
    else:
        assert found is None or found >= span_end


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None)  # the brute force is slow; the engine is timed
@given(case=cases())
def test_every_fire_time_found_is_a_cron_time_inside_effective_and_a_window(case):
    fires = list(itertools.islice(case.fires(case.after), 3))
    assert fires == sorted(set(fires))
    for fire in fires:
        assert fire > case.after
        assert Cron(case.cron).fires(ZoneInfo(case.zone), fire - 1, fire + 1) == [fire]
        assert case.live(fire, case.windows(fire, fire))


def _never_fires_by_brute_force(case: Case, kind: str, now: int, created: int) -> str | None:
    """What never_fires should answer, from the brute force (effective ends within days)."""
    assert case.end is not None
    since = max(now, case.start)
    windows = case.windows(min(now, created), max(now, created, case.end))
    if kind == "now" and case.live(created, windows):
        return None
    window_left = since < case.end and (case.period is None or any(
        s < case.end and e > since for s, e in windows))
    if not window_left:
        return "period" if case.period is not None else "trigger"
    if kind == "event":
        return None
    if kind == "schedule":
        after = max(now, created - 1)
        fires = Cron(case.cron).fires(ZoneInfo(case.zone), after, case.end)
        return None if any(case.live(fire, windows) for fire in fires) else "trigger"
    return "trigger"


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None)  # the brute force is slow; the engine is timed
@given(case=cases(effective_days=2), kind=st.sampled_from(["schedule", "now", "event"]),
       created_shift=st.one_of(st.just(0), st.integers(-3 * DAY_MS, 3 * DAY_MS)))
def test_never_fires_agrees_with_the_brute_force(case, kind, created_shift):
    now, created = case.after, max(1, case.after + created_shift)
    trigger = {"schedule": {"kind": "schedule", "cron": case.cron}, "now": {"kind": "now"},
               "event": {"kind": "event", "on": "paid"}}[kind]
    plan = parse_plan({"plan_id": "p", "shop_id": "s", "audience": {"level_gte": 1},
                       "tz": case.zone, "period": case.period,
                       "effective": {"start_ms": case.start, "end_ms": case.end},
                       "trigger": trigger, "created_ms": created,
                       "action": {"kind": "grant", "sink": "hook"}})
    refusal = never_fires(plan, now, "UTC")
    expected = _never_fires_by_brute_force(case, kind, now, created)
    event(f"{kind}: {expected or 'fires'}")
    assert (None if refusal is None else refusal.path) == expected


# -- plans that never fire -------------------------------------------------------------

NOW_2026 = ms(datetime(2026, 6, 1, 12, tzinfo=UTC))


def _plan(**fields):
    body = {"plan_id": "p", "shop_id": "s", "audience": {"level_gte": 1}, "tz": "Asia/Shanghai",
            "trigger": {"kind": "schedule", "cron": "0 9 * * *"}, "created_ms": NOW_2026,
            "action": {"kind": "grant", "sink": "hook"}}
    return parse_plan({**body, **fields})


@pytest.mark.timeout(10)
def test_the_users_plan_whose_term_ended_in_2019_never_fires_and_says_so_at_once():
    plan = _plan(period="0-0 0-0 0-0 24-25 4-4 * 2019-2019 2")
    started = perf_counter()
    assert list(plan_fires(plan, NOW_2026, "UTC")) == []
    refusal = never_fires(plan, NOW_2026, "UTC")
    assert perf_counter() - started < 1.0
    assert refusal is not None and refusal.path == "period"
    assert str(refusal).startswith("period: no window left inside effective")


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("fields", "path"), [
    ({"period": "* * * * * ? 2019-2020 31"}, "period"),          # its years are over
    ({"period": "* * * ? * 3 32", "effective": {"start_ms": NOW_2026,
                                                "end_ms": NOW_2026 + 86_400_000}}, "period"),
    ({"period": "* * * ? * 1 32", "effective": {"start_ms": NOW_2026,
                                                "end_ms": NOW_2026 + 86_400_000}}, "trigger"),
    ({"effective": {"start_ms": 0, "end_ms": NOW_2026 - 1}}, "trigger"),   # over
    ({"period": "* * 10-11 * * ? 31"}, "trigger"),              # 09:00 is outside 10-12
    ({"period": "* * * ? 2 ? 31",
      "trigger": {"kind": "schedule", "cron": "0 9 31 * *"}}, "trigger"),  # 31 February
    ({"trigger": {"kind": "schedule", "cron": "0 9 30 2 *"}}, "trigger"),
    ({"period": "* * 10-11 * * ? 31", "trigger": {"kind": "now"}}, "trigger"),
    ({"effective": {"start_ms": 0, "end_ms": NOW_2026 - 1},
      "trigger": {"kind": "event", "on": "paid"}}, "trigger"),
    ({"period": "* * * * * ? 2019-2019 31", "trigger": {"kind": "event", "on": "paid"}},
     "period"),
])
def test_plans_that_never_fire_again_name_the_part_at_fault(fields, path):
    # NOW_2026 is a Monday, 20:00 in Shanghai: effective's one day has no Wednesday; the
    # Monday window is still open, but its 09:00 is past and effective ends before the
    # next Monday.
    refusal = never_fires(_plan(**fields), NOW_2026, "UTC")
    assert refusal is not None and refusal.path == path, refusal


@pytest.mark.parametrize("fields", [
    {},
    {"period": "* * 8-9 * * ? 31"},
    {"period": "* * 19-21 * * ? 31", "trigger": {"kind": "now"},
     "created_ms": NOW_2026 - 86_400_000},    # it fired (or was missed) when created
    {"trigger": {"kind": "now"}},
    {"period": "* * 10-11 * * ? 31", "trigger": {"kind": "event", "on": "paid"}},
    {"trigger": {"kind": "schedule", "cron": "0 9 29 2 *"}},        # in 2028
])
def test_plans_that_fire_again_pass(fields):
    assert never_fires(_plan(**fields), NOW_2026, "UTC") is None


def test_a_fire_time_only_the_spring_forward_gap_brings_into_the_window_is_kept():
    # 02:30 and the window's start 02:45 both lie in the gap: both happen at 03:00.
    fires = take(plan_fire_times(parse_cron("30 2 * * *"), "Europe/Berlin",
                                 ms(datetime(2026, 1, 1, tzinfo=UTC)), start_ms=0,
                                 end_ms=None, period=parse_period("* 45-59 2-3 * * ? 31")), 2)
    berlin = ZoneInfo("Europe/Berlin")
    assert [datetime.fromtimestamp(at / 1000, berlin).isoformat() for at in fires] == [
        "2026-03-29T03:00:00+02:00", "2027-03-28T03:00:00+02:00"]


def test_a_fire_time_a_gap_over_midnight_moves_into_the_next_days_window_is_kept():
    # America/Nuuk springs forward from Saturday 23:00 to Sunday 00:00 (2026-03-28): the
    # Saturday 23:59 fire time happens at Sunday 00:00, inside the Sunday window.
    fires = take(plan_fire_times(parse_cron("59 23 * * 6"), "America/Nuuk",
                                 ms(datetime(2026, 1, 1, tzinfo=UTC)), start_ms=0,
                                 end_ms=None, period=parse_period("* * 0-0 ? * 7 32")), 1)
    nuuk = ZoneInfo("America/Nuuk")
    assert [datetime.fromtimestamp(at / 1000, nuuk).isoformat() for at in fires] == [
        "2026-03-29T00:00:00-01:00"]


def test_a_search_from_past_the_calendar_finds_nothing():
    latest = 2**53 - 1  # effective.start_ms may be this late (the year 287396)
    assert take(plan_fire_times(parse_cron("* * * * *"), "UTC", 0, start_ms=latest,
                                end_ms=None, period=None), 1) == []
    assert take(plan_fires(_plan(trigger={"kind": "now"}, created_ms=latest,
                                 period="* * * * * ? 31"), 0, "UTC"), 1) == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Nuuk",
                                  "Australia/Lord_Howe"])
@pytest.mark.parametrize(("cron", "period"), [
    *NEVER_MEET, ("* * * * *", "* * * * * ? 2019-2019 31"),
    # beyond the 30 years looked at
    ("0 9 * * *", "* * * * * ? 2100-2199 31"), ("0 9 * * *", "* * * 1-2 1 * 2070-2070 2")])
def test_a_search_that_finds_nothing_ends_within_its_bound(zone, cron, period):
    started = perf_counter()
    found = take(plan_fire_times(parse_cron(cron), zone, NOW_2026, start_ms=0, end_ms=None,
                                 period=parse_period(period)), 1)
    assert perf_counter() - started < 0.3  # about 50 ms where it is longest
    assert found == []
