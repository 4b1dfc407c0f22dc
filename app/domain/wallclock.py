"""Wall-clock times and days in a time zone as instants, DST-correctly.

A wall-clock time becomes the first instant at which the zone's clock reads
it or later: one in a spring-forward gap is the end of the gap (the clock
jumps past it there), one in a fall-back's repeated hour its first
occurrence. Period windows and schedule fire times both follow this rule.

Searches over days walk the calendar a month at a time and skip the months
and years that cannot hold a chosen day; none goes past `LAST_DAY`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# datetime ends with the year 9999; a later day's wall times are past its end in some zone.
LAST_DAY = date(9999, 12, 30)
DAY = timedelta(days=1)


def first_instant_at(wall: datetime, tz: ZoneInfo) -> int:
    """The first instant (ms) at which the zone's wall clock reads `wall` or later."""
    earlier = _utc_ms(wall.replace(tzinfo=tz, fold=0))
    later = _utc_ms(wall.replace(tzinfo=tz, fold=1))
    if _exists(wall, tz):
        return min(earlier, later)  # the first of a repeated hour's two occurrences
    # In a spring-forward gap: the clock jumps past `wall` at the transition, which lies
    # between the two readings (fold=1 uses the offset after it, fold=0 the one before).
    low, high = min(earlier, later) // 1000, max(earlier, later) // 1000
    while low < high:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle + 1
    return low * 1000


def local_time(at_ms: int, tz: ZoneInfo) -> datetime | None:
    """What the zone's wall clock reads at `at_ms` (`fold` 1 in a repeated stretch); None
    for an instant past `LAST_DAY` (a plan's times reach 2**53 ms, year 287396)."""
    try:
        moment = datetime.fromtimestamp(at_ms / 1000, tz)
    except (OverflowError, ValueError, OSError):
        return None
    return moment if moment.date() <= LAST_DAY else None


def days_between(first: date, last: date, chooses: Callable[[date], bool], *,
                 months: Collection[int] | None = None,
                 years: Collection[int] | None = None) -> Iterator[date]:
    """The days from `first` to `last` (both included) that `chooses` picks, in order. A
    month outside `months` or a year outside `years` is skipped whole, so a walk costs at
    most 31 checks per month it looks at."""
    last = min(last, LAST_DAY)
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        if years is not None and year not in years:
            year, month = year + 1, 1
            continue
        if months is None or month in months:
            day = first if (year, month) == (first.year, first.month) else date(year, month, 1)
            while day.month == month and day <= last:
                if chooses(day):
                    yield day
                day += DAY
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def steady_around(day: date, tz: ZoneInfo) -> bool:
    """Whether the zone keeps one UTC offset from the day before `day` to the day after:
    then every wall time of those days is one instant, in the order of the wall times
    (no zone changes its offset twice within two days)."""
    before = datetime.combine(day - DAY, time(), tz).utcoffset()
    return before == datetime.combine(day + DAY, time(), tz).utcoffset()


def _exists(wall: datetime, tz: ZoneInfo) -> bool:
    return any(datetime.fromtimestamp(_utc_ms(wall.replace(tzinfo=tz, fold=fold)) / 1000, tz)
               .replace(tzinfo=None) == wall for fold in (0, 1))


def _utc_ms(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() * 1000)
