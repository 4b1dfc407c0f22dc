"""Period expressions against the seed's examples and a brute-force evaluator.

The brute force (calendar_checks) reads the expression its own way (sets of
values per field) and finds each bound by walking the zone's wall clock minute
by minute, so it shares nothing with app.domain.periods but the definition: a
window of a chosen day runs from the first instant the wall clock reads its
low bound to the first instant it reads one second past its high bound.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from calendar_checks import TRANSITION_DAYS, ZONES, Period, fixed_terms, periodic, years_around
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.periods import Period as DomainPeriod
from app.domain.periods import PeriodError, contains, parse, windows


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def local(at_ms: int, zone: str) -> str:
    return datetime.fromtimestamp(at_ms / 1000, ZoneInfo(zone)).isoformat()


def first_windows(expression: str, zone: str, after: str, count: int) -> list[tuple[str, str]]:
    found = []
    for start, end in windows(parse(expression), zone, ms(after)):
        found.append((local(start, zone), local(end, zone)))
        if len(found) == count:
            break
    return found


def test_the_seeds_examples():
    assert first_windows("* 20-30 8-20 * * ? 31", "Asia/Shanghai",
                         "2026-01-01T00:00:00+08:00", 2) == [
        ("2026-01-01T08:20:00+08:00", "2026-01-01T20:31:00+08:00"),
        ("2026-01-02T08:20:00+08:00", "2026-01-02T20:31:00+08:00")]
    assert first_windows("* * * * * 1,3 * 32", "UTC", "2026-11-29T12:00:00+00:00", 3) == [
        ("2026-11-30T00:00:00+00:00", "2026-12-01T00:00:00+00:00"),
        ("2026-12-02T00:00:00+00:00", "2026-12-03T00:00:00+00:00"),
        ("2026-12-07T00:00:00+00:00", "2026-12-08T00:00:00+00:00")]
    assert first_windows("0-0 0-0 0-0 24-25 4-4 * 2019-2019 2", "Asia/Shanghai",
                         "2019-01-01T00:00:00+00:00", 5) == [
        ("2019-04-24T00:00:00+08:00", "2019-04-26T00:00:00+08:00")]


def test_a_fixed_term_with_times_ends_at_its_last_second():
    assert first_windows("0-0 0-30 9-18 1-2 3-3 * 2027-2027 2", "UTC",
                         "2026-01-01T00:00:00+00:00", 2) == [
        ("2027-03-01T09:00:00+00:00", "2027-03-02T18:30:01+00:00")]


def test_monthly_days_and_sunday_as_0_or_7():
    assert first_windows("* * 9-9 1,15 * ? 33", "UTC", "2026-11-29T00:00:00+00:00", 2) == [
        ("2026-12-01T09:00:00+00:00", "2026-12-01T10:00:00+00:00"),
        ("2026-12-15T09:00:00+00:00", "2026-12-15T10:00:00+00:00")]
    sunday = first_windows("* * * ? * 0 32", "UTC", "2026-11-30T00:00:00+00:00", 1)
    assert sunday == first_windows("* * * ? * 7 32", "UTC", "2026-11-30T00:00:00+00:00", 1)
    assert sunday[0][0].startswith("2026-12-06")


def test_dst_gap_and_repeated_hour():
    # Berlin springs forward 02:00 -> 03:00 on 2026-03-29 and falls back on 2026-10-25.
    gap = first_windows("* * 1-2 * * ? 31", "Europe/Berlin", "2026-03-29T00:00:00+01:00", 1)
    assert gap == [("2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00")]
    repeated = first_windows("* 30-30 2-2 * * ? 31", "Europe/Berlin",
                             "2026-10-25T00:00:00+02:00", 1)
    assert repeated == [("2026-10-25T02:30:00+02:00", "2026-10-25T02:31:00+02:00")]


@pytest.mark.parametrize(("expression", "named"), [
    ("* * * * ? 31", "7 or 8 fields"),
    ("* * * * * ? * 99", "type"),
    ("60 * * * * ? 31", "second"),
    ("* * 5-3 * * ? 31", "hour"),
    ("* * * ? x ? 31", "month"),
    ("? * * * * ? 31", "second"),
    ("0 0 0 1 1 ? 2", "year"),
    ("0 0 0 1 1 ? * 2", "year"),
])
def test_malformed_expressions_name_the_field(expression, named):
    with pytest.raises(PeriodError, match=named):
        parse(expression)


def test_contains():
    period = parse("* 20-30 8-20 * * ? 31")
    assert contains(period, "Asia/Shanghai", ms("2026-01-01T08:20:00+08:00"))
    assert contains(period, "Asia/Shanghai", ms("2026-01-01T20:30:59+08:00"))
    assert not contains(period, "Asia/Shanghai", ms("2026-01-01T20:31:00+08:00"))
    assert not contains(period, "Asia/Shanghai", ms("2026-01-01T08:19:59+08:00"))


# -- brute force ------------------------------------------------------------------------


def brute_force(expression: str, zone_name: str, first_day: date, days: int) -> list:
    return Period(expression).windows(ZoneInfo(zone_name), first_day,
                                      first_day + timedelta(days=days - 1))


expressions = periodic()


@settings(max_examples=60, deadline=None)
@given(expression=expressions, zone=st.sampled_from(ZONES),
       first_day=st.dates(date(2024, 1, 1), date(2030, 12, 1)))
def test_windows_match_the_brute_force(expression, zone, first_day):
    found, expected = windows_and_brute_force(expression, zone, first_day, days=40)
    assert found == expected


def windows_and_brute_force(expression: str, zone: str, first_day: date, *, days: int
                            ) -> tuple[list, list]:
    """The windows found from `first_day` on, and the brute force's, over `days` days."""
    tz = ZoneInfo(zone)
    after = int(datetime.combine(first_day, time(), tz).timestamp() * 1000)
    horizon = int(datetime.combine(first_day + timedelta(days=days), time(), tz)
                  .timestamp() * 1000)
    expected = [w for w in brute_force(expression, zone, first_day, days)
                if w[1] > after and w[0] < horizon]
    found = []
    for window in windows(parse(expression), zone, after):
        if window[0] >= horizon:
            break
        found.append(window)
    return found, expected


@st.composite
def periods_around(draw, *, whole_minutes: bool = False) -> tuple[str, str, date]:
    """A zone, a day (often one on which the zone changes its offset) and an expression
    of any type around it: daily/weekly/monthly, limited to years, or a fixed term."""
    zone = draw(st.sampled_from(ZONES))
    day = draw(st.one_of(st.dates(date(2001, 1, 1), date(2038, 12, 1)),
                         st.sampled_from(TRANSITION_DAYS[zone])))
    expression = draw(st.one_of(periodic(), periodic(years_around(day.year)),
                                fixed_terms(day, whole_minutes=whole_minutes)))
    return zone, expression, day


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None)  # the brute force is slow; steps are counted below
@given(case=periods_around(), minutes=st.lists(st.integers(0, 3 * 24 * 60), min_size=1,
                                               max_size=20))
def test_contains_matches_the_brute_force(case, minutes):
    zone, expression, day = case
    tz = ZoneInfo(zone)
    expected = Period(expression).windows(tz, day - timedelta(days=1), day + timedelta(days=4))
    midnight = int(datetime.combine(day, time(), tz).timestamp() * 1000)
    for at in (midnight + minute * 60_000 for minute in minutes):
        assert contains(parse(expression), zone, at) == any(s <= at < e for s, e in expected)


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None)  # the brute force is slow; steps are counted below
@given(case=periods_around(whole_minutes=True))
def test_windows_of_every_type_match_the_brute_force(case):
    zone, expression, first_day = case
    found, expected = windows_and_brute_force(expression, zone, first_day, days=8)
    assert found == expected


@pytest.mark.timeout(10)
@pytest.mark.parametrize("expression", [
    "* * * * * ? 2019-2019 31",              # its years are over
    "0-0 0-0 0-0 24-25 4-4 * 2019-2019 2",   # a fixed term that is over
    "* * * 30 2 ? 31",                       # 30 February
    "* * * 31 4,6,9,11 ? 33",                # the 31st of months of 30 days
    "* * * 31 * 1 2150-2199 32",             # Mondays the 31st, but only from 2150
])
def test_a_period_with_no_window_ahead_answers_at_once(expression):
    period = parse(expression)
    assert list(windows(period, "Europe/Berlin", ms("2026-06-01T00:00:00+00:00"))) == []
    assert not contains(period, "Europe/Berlin", ms("2026-06-01T00:00:00+00:00"))


def test_the_next_window_is_looked_for_30_years_ahead():
    # Monday 29 February: 2044, 2072, then 2112 (2100 is no leap year).
    mondays = [local(start, "UTC")[:10]
               for start, _end in windows(parse("* * * 29 2 1 32"), "UTC",
                                          ms("2026-01-01T00:00:00+00:00"))]
    assert mondays == ["2044-02-29", "2072-02-29"]


def test_an_instant_past_the_calendar_lies_in_no_window():
    latest = 2**53 - 1  # the latest instant a plan may name, in the year 287396
    for expression in ("* * * * * ? 31", "0-0 0-0 0-0 1-1 1-1 * 2100-2199 2"):
        assert not contains(parse(expression), "Asia/Shanghai", latest)
        assert list(windows(parse(expression), "Asia/Shanghai", latest)) == []


def _asking(period: DomainPeriod, asked: list[date]) -> DomainPeriod:
    """The period, noting in `asked` every day it is asked whether it chooses."""

    class Asking(DomainPeriod):
        def chooses(self, day: date) -> bool:
            asked.append(day)
            return super().chooses(day)

    return Asking(*(getattr(period, field.name) for field in fields(period)))


@pytest.mark.parametrize("expression", ["* 20-30 8-20 * * ? 31", "* * * 30 2 ? 31",
                                        "* * 23-23 ? * 7 32", "* * * 29 2 1 1990-2199 32"])
@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/Santiago"])
def test_contains_looks_at_the_instants_day_only(expression, zone):
    # 2026-04-05 00:30 in Santiago is read twice: the clock falls back from 00:00 to 23:00.
    for at in (ms("2026-01-01T12:00:00+08:00"), ms("2026-04-05T03:30:00+00:00")):
        asked: list[date] = []
        contains(_asking(parse(expression), asked), zone, at)
        assert len(asked) <= 2, asked


def test_a_period_whose_years_are_over_is_not_walked():
    asked: list[date] = []
    period = _asking(parse("* * * * * ? 2019-2020 31"), asked)
    assert list(windows(period, "UTC", ms("2026-06-01T00:00:00+00:00"))) == []
    assert asked == []
