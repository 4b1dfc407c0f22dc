"""Period expressions (SPEC 13, seed 000): when an operation plan may act.

`S M H DoM Mon DoW [Year] TYPE`: six fields in Quartz order, the year
optional, the last token a type code. A field is `*`, a number, a range
`a-b` (`a-a` one value) or a list of those (`1,3,5-6`); `?` (day of month or
day of week only) means no constraint; day of week 1 = Monday ... 7 = Sunday,
0 also Sunday.

- `31` daily, `32` weekly, `33` monthly: the date fields choose the days;
  on each, one time-of-day window from the low bounds of H, M and S to their
  high bounds, inclusive (`* 20-30 8-20 * * ? 31`: 08:20:00 to 20:30:59).
- `2` fixed term: one interval from the low values to the high values of
  every field, inclusive to the second; when every time field is `0-0` the
  last day is included (`0-0 0-0 0-0 24-25 4-4 * 2019-2019 2`: 2019-04-24
  00:00 to 2019-04-26 00:00). Its year must be given.

Windows are wall-clock times in a time zone, turned into instants (ms since
the epoch) DST-correctly: a bound is the first instant at which the zone's
wall clock reaches it, so a bound in a spring-forward gap is the end of the
gap, and one in a fall-back's repeated hour is its first occurrence.

Every search is bounded: the next window is looked for at most
`HORIZON_YEARS` ahead of where the search starts, and no later than the end
of the last year the expression names; an expression with no window there is
taken as having none (`* * * 30 2 ? 31`, a 30 February, has none; a
Monday 29 February comes every 28 years, but after 2072 comes 2112, which a
search from 2072 does not reach). A search walks the calendar month by month and skips the
months and years the expression leaves out, so its cost is bounded whatever
the expression.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.domain.wallclock import DAY, LAST_DAY, days_between, first_instant_at, local_time

DAILY, WEEKLY, MONTHLY, FIXED_TERM = "31", "32", "33", "2"
TYPES = (DAILY, WEEKLY, MONTHLY, FIXED_TERM)
# How far ahead a search for the next window or fire time looks.
HORIZON_YEARS = 30
HORIZON = timedelta(days=366 * HORIZON_YEARS)
_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23),
           ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_YEARS = ("year", 1970, 2199)


class PeriodError(ValueError):
    """A malformed period expression; the message names the field at fault."""


@dataclass(frozen=True, slots=True)
class Period:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int] | None       # None: `?`, no constraint
    months: frozenset[int]
    weekdays: frozenset[int] | None   # ISO: 1 Monday ... 7 Sunday; None: `?`
    years: frozenset[int] | None      # None: any year
    kind: str

    def chooses(self, day: date) -> bool:
        return ((self.days is None or day.day in self.days) and day.month in self.months
                and (self.weekdays is None or day.isoweekday() in self.weekdays)
                and (self.years is None or day.year in self.years))

    @property
    def daily_window(self) -> tuple[time, time]:
        """The time-of-day window, first and last second included."""
        return (time(min(self.hours), min(self.minutes), min(self.seconds)),
                time(max(self.hours), max(self.minutes), max(self.seconds)))


def parse(expression: str) -> Period:
    tokens = expression.split()
    if len(tokens) not in (7, 8):
        raise PeriodError(f"{expression!r}: expected `S M H DoM Mon DoW [Year] TYPE` "
                          f"(7 or 8 fields), got {len(tokens)}")
    kind = tokens[-1]
    if kind not in TYPES:
        raise PeriodError(f"type: {kind!r} is not one of {', '.join(TYPES)}")
    values = [_field(token, name, low, high, may_skip=name in ("day of month", "day of week"))
              for token, (name, low, high) in zip(tokens[:6], _FIELDS, strict=True)]
    years = _field(tokens[6], *_YEARS, may_skip=False) if len(tokens) == 8 else None
    seconds, minutes, hours, days, months, weekdays = values
    if weekdays is not None:
        weekdays = frozenset(7 if day == 0 else day for day in weekdays)
    if kind == FIXED_TERM and (years is None or tokens[6] == "*"):
        raise PeriodError("year: a fixed term (type 2) needs its years, e.g. 2019-2019")
    return Period(seconds, minutes, hours, days, months,
                  weekdays, None if len(tokens) == 7 or tokens[6] == "*" else years, kind)


def windows(period: Period, zone: str, after_ms: int) -> Iterator[tuple[int, int]]:
    """The windows `[start_ms, end_ms)` that end after `after_ms`, in time order; each
    next one looked for at most `HORIZON_YEARS` after the one before."""
    tz = time_zone(zone)
    if period.kind == FIXED_TERM:
        start, end = fixed_term(period, tz)
        if end > after_ms and start < end:
            yield start, end
        return
    moment = local_time(after_ms, tz)
    day = None if moment is None else moment.date()
    while day is not None:
        day = next(chosen_days(period, day, horizon_end(day)), None)
        if day is None:
            return
        start, end = window_on(period, day, tz)
        if end > after_ms and start < end:
            yield start, end
        day += DAY


def contains(period: Period, zone: str, at_ms: int) -> bool:
    """Whether the instant `at_ms` lies in one of the period's windows."""
    tz = time_zone(zone)
    if period.kind == FIXED_TERM:
        start, end = fixed_term(period, tz)
        return start <= at_ms < end
    moment = local_time(at_ms, tz)
    if moment is None:
        return False
    # A window lies within its day, so the instant's own day's is the one to look at; but
    # after a fall-back over midnight the wall clock repeats the day's last stretch at
    # instants that belong to the next day's.
    days = (moment.date(), moment.date() + DAY) if moment.fold else (moment.date(),)
    for day in days:
        if period.chooses(day):
            start, end = window_on(period, day, tz)
            if start <= at_ms < end:
                return True
    return False


def chosen_days(period: Period, first: date, last: date,
                chooses: Callable[[date], bool] | None = None) -> Iterator[date]:
    """The days from `first` to `last` the period chooses (and `chooses` too, if given),
    no later than the last year it names."""
    final = last_day(period)
    return days_between(first, last if final is None else min(last, final),
                        period.chooses if chooses is None else
                        lambda day: period.chooses(day) and chooses(day),
                        months=period.months, years=period.years)


def last_day(period: Period) -> date | None:
    """The last day of the last year the period names; None when it names none."""
    return None if period.years is None else date(max(period.years), 12, 31)


def window_on(period: Period, day: date, tz: ZoneInfo) -> tuple[int, int]:
    """The window of a day a daily, weekly or monthly period chooses, as instants."""
    low, high = period.daily_window
    return (first_instant_at(datetime.combine(day, low), tz),
            first_instant_at(datetime.combine(day, high) + timedelta(seconds=1), tz))


def fixed_term(period: Period, tz: ZoneInfo) -> tuple[int, int]:
    """A fixed term's one window, as instants."""
    start, end = _fixed_term(period)
    return first_instant_at(start, tz), first_instant_at(end, tz)


def horizon_end(day: date) -> date:
    """The last day a search starting on `day` looks at."""
    return LAST_DAY if (LAST_DAY - day) <= HORIZON else day + HORIZON


def time_zone(zone: str) -> ZoneInfo:
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise PeriodError(f"tz: {zone!r} is not an IANA time zone") from None


def _field(token: str, name: str, low: int, high: int, *, may_skip: bool
           ) -> frozenset[int] | None:
    if token == "?":
        if not may_skip:
            raise PeriodError(f"{name}: `?` is for the day of month or week only")
        return None
    if token == "*":
        return frozenset(range(low, high + 1))
    chosen: set[int] = set()
    for part in token.split(","):
        first, _, last = part.partition("-")
        try:
            a, b = int(first), int(last or first)
        except ValueError:
            raise PeriodError(f"{name}: {part!r} is not a number or a range a-b") from None
        if not low <= a <= b <= high:
            raise PeriodError(f"{name}: {part!r} is outside {low}-{high} or not ascending")
        chosen.update(range(a, b + 1))
    return frozenset(chosen)


def _fixed_term(period: Period) -> tuple[datetime, datetime]:
    """The term's first second and the instant after its last, as wall-clock times."""
    years, months = sorted(period.years or ()), sorted(period.months)
    days = sorted(period.days) if period.days is not None else [1, 31]
    first = _wall(years[0], months[0], days[0])
    last = _wall(years[-1], months[-1], days[-1])
    low, high = period.daily_window
    start = datetime.combine(first, low)
    if high == time(0, 0, 0) and low == high:
        return start, datetime.combine(last + timedelta(days=1), time())
    return start, datetime.combine(last, high) + timedelta(seconds=1)


def _wall(year: int, month: int, day: int) -> date:
    """The date, with a day past the month's end taken as its last day (`*` days: 1-31)."""
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))
