"""Brute-force readings of period expressions and crons, and the expressions'
strategies, for the calendar tests.

They share nothing with app.domain but the definitions (SPEC 13,
app/domain/wallclock.py): the fields are read here as plain sets, and every
instant is found by walking the zone's wall clock a minute at a time:

- a wall time happens at the first instant the zone's clock reads it or later;
- a period's window on a day it chooses runs from its low bounds to one second
  past its high bounds; a fixed term from its low values to one second past
  its high values, or to the day after its last when every time field is 0-0;
- a cron fires at each wall minute it matches (day of month or day of week
  when both are restricted), so at a minute instant the clock reaches one or
  more such wall minutes for the first time.

The walks are slow (a few thousand steps a day): short ranges only.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

MINUTE = timedelta(minutes=1)
# America/Nuuk springs forward over midnight (23:00 to 00:00); America/Santiago falls
# back over it (00:00 to 23:00); Australia/Lord_Howe moves by half an hour.
ZONES = ("UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
         "America/Nuuk", "America/Santiago")


def values(token: str, low: int, high: int) -> set[int] | None:
    """A field as the set of its values; None for `?`."""
    if token == "?":
        return None
    if token == "*":
        return set(range(low, high + 1))
    if token.startswith("*/"):
        return set(range(low, high + 1, int(token[2:])))
    found: set[int] = set()
    for part in token.split(","):
        first, _, last = part.partition("-")
        found |= set(range(int(first), int(last or first) + 1))
    return found


def wall(at_ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(at_ms / 1000, zone).replace(tzinfo=None)


def reaching(moment: datetime, zone: ZoneInfo) -> int:
    """The first minute instant (ms) at which the wall clock reads `moment` or later."""
    # Three hours before the reading, whatever the offset's change around it (at most 2 h).
    at = moment.replace(tzinfo=UTC) - (zone.utcoffset(moment) or timedelta()) - 3 * 60 * MINUTE
    at = at.replace(second=0, microsecond=0)
    while at.astimezone(zone).replace(tzinfo=None) < moment:
        at += MINUTE
    return int(at.timestamp() * 1000)


class Period:
    """A period expression read as sets of values."""

    def __init__(self, expression: str) -> None:
        tokens = expression.split()
        self.kind = tokens[-1]
        seconds, minutes, hours, days, months, weekdays = (
            values(token, low, high) for token, (low, high) in zip(
                tokens[:6], ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7)),
                strict=True))
        self.seconds, self.minutes, self.hours = seconds, minutes, hours
        self.days, self.months = days, months
        self.weekdays = None if weekdays is None else {7 if d == 0 else d for d in weekdays}
        self.years = values(tokens[6], 1970, 2199) if len(tokens) == 8 else None

    def chooses(self, day: date) -> bool:
        return ((self.days is None or day.day in self.days) and day.month in self.months
                and (self.weekdays is None or day.isoweekday() in self.weekdays)
                and (self.years is None or day.year in self.years))

    def windows(self, zone: ZoneInfo, first: date, last: date) -> list[tuple[int, int]]:
        """The non-empty windows of the days from `first` to `last` (all of a fixed term's)."""
        low = timedelta(hours=min(self.hours), minutes=min(self.minutes),
                        seconds=min(self.seconds))
        after_high = timedelta(hours=max(self.hours), minutes=max(self.minutes),
                               seconds=max(self.seconds) + 1)
        if self.kind == "2":
            return self._term(zone, low, after_high)
        found = []
        day = first
        while day <= last:
            if self.chooses(day):
                midnight = datetime.combine(day, time())
                start, end = reaching(midnight + low, zone), reaching(midnight + after_high, zone)
                if start < end:
                    found.append((start, end))
            day += timedelta(days=1)
        return found

    def _term(self, zone: ZoneInfo, low: timedelta, after_high: timedelta
              ) -> list[tuple[int, int]]:
        years, months = sorted(self.years or ()), sorted(self.months)
        days = sorted(self.days) if self.days is not None else [1, 31]

        def midnight(year: int, month: int, day: int) -> datetime:
            last_of_month = calendar.monthrange(year, month)[1]
            return datetime(year, month, min(day, last_of_month))

        first = midnight(years[0], months[0], days[0])
        last = midnight(years[-1], months[-1], days[-1])
        every_time_field_0 = after_high == timedelta(seconds=1)
        end_wall = last + (timedelta(days=1) if every_time_field_0 else after_high)
        start, end = reaching(first + low, zone), reaching(end_wall, zone)
        return [(start, end)] if start < end else []


class Cron:
    """A 5-field cron read as sets of values."""

    def __init__(self, expression: str) -> None:
        minute, hour, day, month, weekday = expression.split()
        self.minutes, self.hours = values(minute, 0, 59), values(hour, 0, 23)
        self.days, self.months = values(day, 1, 31), values(month, 1, 12)
        self.weekdays = {d % 7 for d in values(weekday, 0, 7)}  # 0 Sunday
        self.either_day = day != "*" and weekday != "*"

    def chooses(self, day: date) -> bool:
        by_day = day.day in self.days
        by_weekday = day.isoweekday() % 7 in self.weekdays
        return day.month in self.months and (
            by_day or by_weekday if self.either_day else by_day and by_weekday)

    def matches(self, moment: datetime) -> bool:
        return (moment.minute in self.minutes and moment.hour in self.hours
                and self.chooses(moment.date()))

    def fires(self, zone: ZoneInfo, after_ms: int, before_ms: int) -> list[int]:
        """The fire times in `(after_ms, before_ms)`, walking from three hours before."""
        at = after_ms - after_ms % 60_000 - 3 * 60 * 60_000
        reached = wall(at, zone)  # the latest wall time the clock has read
        found = []
        while at < before_ms:
            at += 60_000
            now = wall(at, zone)
            moment = reached + MINUTE
            while moment <= now:
                if self.matches(moment):
                    found.append(at)
                    break
                moment += MINUTE
            reached = max(reached, now)
        return [fire for fire in found if after_ms < fire < before_ms]


def local_day(at_ms: int, zone: ZoneInfo) -> date:
    return wall(at_ms, zone).date()


def offset_changes(zone: str) -> list[date]:
    """The days of 2026 and 2031 at whose end the zone's UTC offset is another (for a zone
    without DST, the day Europe springs forward)."""
    tz = ZoneInfo(zone)
    days = [date(year, 1, 1) + timedelta(days=n) for year in (2026, 2031) for n in range(365)]
    return [day for day in days if datetime.combine(day, time(), tz).utcoffset()
            != datetime.combine(day + timedelta(days=1), time(), tz).utcoffset()
            ] or [date(2026, 3, 29)]


TRANSITION_DAYS = {zone: offset_changes(zone) for zone in ZONES}


def field(low: int, high: int) -> st.SearchStrategy[str]:
    """A field: `*`, a range `a-b` or a list `a,b`."""
    return st.one_of(st.just("*"), value_range(low, high),
                     st.lists(st.integers(low, high), min_size=1, max_size=3, unique=True)
                     .map(lambda chosen: ",".join(map(str, sorted(chosen)))))


def value_range(low: int, high: int) -> st.SearchStrategy[str]:
    return st.tuples(st.integers(low, high), st.integers(low, high)).map(
        lambda pair: f"{min(pair)}-{max(pair)}")


def periodic(years: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[str]:
    """Daily, weekly and monthly expressions (whole minutes: seconds `*`), with a year
    field when `years` is given."""
    return st.tuples(
        field(0, 59), field(0, 23), st.one_of(st.just("?"), field(1, 31)), field(1, 12),
        st.one_of(st.just("?"), field(0, 7)),
        st.just("") if years is None else years.map(" {}".format),
        st.sampled_from(["31", "32", "33"]),
    ).map(lambda f: f"* {f[0]} {f[1]} {f[2]} {f[3]} {f[4]}{f[5]} {f[6]}")


def years_around(year: int) -> st.SearchStrategy[str]:
    """Year fields wholly before `year`, through it, or wholly after it."""
    return st.one_of(
        st.tuples(st.integers(year - 12, year - 1), st.integers(0, 3)).map(
            lambda f: f"{f[0]}-{min(f[0] + f[1], year - 1)}"),
        st.tuples(st.integers(year - 3, year), st.integers(year, year + 3)).map(
            lambda f: f"{f[0]}-{f[1]}"),
        st.tuples(st.integers(year + 1, year + 40), st.integers(0, 3)).map(
            lambda f: f"{f[0]}-{f[0] + f[1]}"),
        st.lists(st.integers(year - 2, year + 2), min_size=1, max_size=3, unique=True).map(
            lambda chosen: ",".join(map(str, sorted(chosen)))))


def fixed_terms(around: date, *, whole_minutes: bool = False) -> st.SearchStrategy[str]:
    """Fixed terms wholly before `around`'s year, through `around`, or wholly after its
    year (days 1-28); with `whole_minutes`, their bounds are whole minutes."""
    year, month, day = around.year, around.month, min(around.day, 28)
    through = st.tuples(st.integers(max(1, day - 2), day), st.integers(day, min(day + 2, 28)),
                        st.integers(1, month), st.integers(month, 12),
                        st.integers(year - 2, year), st.integers(year, year + 2))
    apart = st.tuples(st.integers(1, 28), st.integers(1, 28), st.integers(1, 12),
                      st.integers(1, 12), st.sampled_from([year - 3, year + 1]),
                      st.integers(0, 2)).map(
        lambda f: (min(f[:2]), max(f[:2]), min(f[2:4]), max(f[2:4]), f[4], f[4] + f[5]))
    dates = st.one_of(through, apart).map(
        lambda f: f"{f[0]}-{f[1]} {f[2]}-{f[3]} * {f[4]}-{f[5]}")
    seconds = st.just("0-59") if whole_minutes else value_range(0, 59)
    times = st.one_of(st.just("0-0 0-0 0-0"), st.tuples(
        seconds, value_range(0, 59), value_range(0, 23)).map(" ".join))
    return st.tuples(times, dates).map(lambda f: f"{f[0]} {f[1]} 2")
