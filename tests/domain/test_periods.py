"""Period expressions against the seed's examples and a brute-force evaluator.

The brute force reads the expression its own way (sets of values per field)
and finds each bound by walking the zone's wall clock minute by minute, so
it shares nothing with app.domain.periods but the definition: a window of a
chosen day runs from the first instant the wall clock reads its low bound to
the first instant it reads one second past its high bound.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.periods import PeriodError, contains, parse, windows

ZONES = ("UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe")


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


def _values(token: str, low: int, high: int) -> set[int] | None:
    if token == "?":
        return None
    if token == "*":
        return set(range(low, high + 1))
    out = set()
    for part in token.split(","):
        a, _, b = part.partition("-")
        out |= set(range(int(a), int(b or a) + 1))
    return out


def _reaching(wall: datetime, zone: ZoneInfo) -> datetime:
    """Walk the wall clock a minute at a time from well before `wall`."""
    moment = wall.replace(tzinfo=UTC) - timedelta(hours=16)
    while moment.astimezone(zone).replace(tzinfo=None) < wall:
        moment += timedelta(minutes=1)
    return moment


def brute_force(expression: str, zone_name: str, first_day: date, days: int) -> list:
    _s, m, h, dom, mon, dow, _kind = expression.split()
    hours, minutes = _values(h, 0, 23), _values(m, 0, 59)
    doms, months, dows = _values(dom, 1, 31), _values(mon, 1, 12), _values(dow, 0, 7)
    if dows is not None:
        dows = {7 if d == 0 else d for d in dows}
    zone = ZoneInfo(zone_name)
    found = []
    for n in range(days):
        day = first_day + timedelta(days=n)
        if (doms is None or day.day in doms) and day.month in months and (
                dows is None or day.isoweekday() in dows):
            low = datetime(day.year, day.month, day.day, min(hours), min(minutes))
            high = datetime(day.year, day.month, day.day, max(hours), max(minutes))
            start = _reaching(low, zone)
            end = _reaching(high + timedelta(minutes=1), zone)
            if start < end:
                found.append((int(start.timestamp() * 1000), int(end.timestamp() * 1000)))
    return found


def _range(low: int, high: int):
    return st.tuples(st.integers(low, high), st.integers(low, high)).map(
        lambda pair: f"{min(pair)}-{max(pair)}")


def _field(low: int, high: int):
    return st.one_of(st.just("*"), _range(low, high),
                     st.lists(st.integers(low, high), min_size=1, max_size=3, unique=True)
                     .map(lambda values: ",".join(map(str, sorted(values)))))


expressions = st.tuples(
    _field(0, 59), _field(0, 23),
    st.one_of(st.just("?"), _field(1, 31)), _field(1, 12), st.one_of(st.just("?"), _field(0, 7)),
    st.sampled_from(["31", "32", "33"]),
).map(lambda f: f"* {f[0]} {f[1]} {f[2]} {f[3]} {f[4]} {f[5]}")


@settings(max_examples=60, deadline=None)
@given(expression=expressions, zone=st.sampled_from(ZONES),
       first_day=st.dates(date(2024, 1, 1), date(2030, 12, 1)))
def test_windows_match_the_brute_force(expression, zone, first_day):
    days = 40
    after = int(datetime.combine(first_day, datetime.min.time(), ZoneInfo(zone))
                .timestamp() * 1000)
    horizon = int(datetime.combine(first_day + timedelta(days=days), datetime.min.time(),
                                   ZoneInfo(zone)).timestamp() * 1000)
    expected = [w for w in brute_force(expression, zone, first_day, days) if w[1] > after]
    found = []
    for window in windows(parse(expression), zone, after):
        if window[0] >= horizon:
            break
        found.append(window)
    assert found == expected
