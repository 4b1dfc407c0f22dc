"""When an operation plan executes (SPEC 13): its occurrences and their ids.

- `schedule`: a standard 5-field cron (`M H DoM Mon DoW`) read in the plan's
  time zone. croniter checks and expands the fields; the fire times are
  computed here, so they follow the same DST rule as period windows
  (app/domain/wallclock.py): a fire time in a spring-forward gap fires at the
  end of the gap, one in a repeated hour once. As in cron, when both day of
  month and day of week are restricted, a day matching either is chosen.
- `now`: one occurrence, at the plan's first activation.
- `event`: one occurrence per (buyer, triggering event), `delay_ms` after it.

A schedule's fire time counts only inside the plan's effective interval and
its period (when it has one). A fire time missed by more than the lateness
limit (a worker down, the plan restored late) is `missed`, never sent late.

The next fire time (`next_fire`) is searched for at most
`periods.HORIZON_YEARS` (30) years after where the search starts (the last
fire time, or `effective.start_ms`), and no later than the end of
`effective`, of a fixed term or of the last year a period names: a plan
that fires less than once in 30 years is taken as never firing again. The
search walks the days the period chooses (with no period or a fixed term,
the days the cron chooses), skipping the months and years they leave out,
and asks the cron for its first fire time in each day's window; a day whose
window the cron's times of day miss is passed over unless the zone changes
its offset around it. So no plan, however written, makes a search take more
than a bounded number of steps.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from croniter import croniter

from app.domain.periods import (
    FIXED_TERM,
    Period,
    chosen_days,
    fixed_term,
    horizon_end,
    time_zone,
    window_on,
)
from app.domain.wallclock import DAY, days_between, first_instant_at, local_time, steady_around

DUE, MISSED, LATER = "due", "missed", "later"


class TriggerError(ValueError):
    """A malformed trigger; the message names the part at fault."""


@dataclass(frozen=True, slots=True)
class Schedule:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int] | None       # None: any day of the month
    months: frozenset[int] | None
    weekdays: frozenset[int] | None   # ISO 1 Monday ... 7 Sunday; None: any
    times: tuple[time, ...]           # every hour with every minute, in order

    def chooses(self, day: date) -> bool:
        if self.months is not None and day.month not in self.months:
            return False
        by_day = self.days is None or day.day in self.days
        by_weekday = self.weekdays is None or day.isoweekday() in self.weekdays
        if self.days is not None and self.weekdays is not None:
            return by_day or by_weekday
        return by_day and by_weekday

    def meets(self, low: time, high: time) -> bool:
        """Whether one of its times of day lies from `low` to `high`, both included."""
        first = bisect_left(self.times, low)
        return first < len(self.times) and self.times[first] <= high


def parse_cron(expression: str) -> Schedule:
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise TriggerError(f"cron: {expression!r} is not a 5-field cron expression "
                           "(minute hour day-of-month month day-of-week, e.g. '0 9 * * *')")
    (minutes, hours, days, months, weekdays), _ = croniter.expand(expression)
    minutes, hours = _every(minutes, 60), _every(hours, 24)
    return Schedule(minutes, hours, _restricted(days), _restricted(months),
                    None if weekdays == ["*"] else frozenset(7 if d == 0 else d
                                                             for d in weekdays),
                    tuple(time(hour, minute) for hour in hours for minute in minutes))


def next_fire(schedule: Schedule, zone: str, after_ms: int, *, start_ms: int = 0,
              end_ms: int | None = None, period: Period | None = None) -> int | None:
    """The first fire time after `after_ms` inside `[start_ms, end_ms)` and the period;
    None when there is none within `periods.HORIZON_YEARS` after the later of the two."""
    tz = time_zone(zone)
    low, high = max(after_ms + 1, start_ms), end_ms
    searched_from = local_time(low, tz)
    if searched_from is None:
        return None
    last = horizon_end(searched_from.date())
    if period is not None and period.kind == FIXED_TERM:
        term_start, term_end = fixed_term(period, tz)
        low, high = max(low, term_start), term_end if high is None else min(high, term_end)
    first = local_time(low, tz)
    if first is None or (high is not None and low >= high):
        return None
    if high is not None and (end := local_time(high, tz)) is not None:
        # After a fall-back over midnight the instant `high` may read the day before.
        last = min(last, end.date() + DAY)
    if period is None or period.kind == FIXED_TERM:
        # From the day before: a gap over midnight moves its last fire times to `low`'s day.
        fire = next((fire for day in days_between(first.date() - DAY, last, schedule.chooses,
                                                  months=schedule.months)
                     if (fire := _first_fire(schedule, day, tz, low)) is not None), None)
        return fire if fire is not None and (high is None or fire < high) else None
    return _first_fire_in_windows(schedule, period, tz, first.date(), last, low, high)


def fire_times(schedule: Schedule, zone: str, after_ms: int) -> Iterator[int]:
    """Every fire time (ms) after `after_ms`, in order."""
    at: int | None = after_ms
    while (at := next_fire(schedule, zone, at)) is not None:
        yield at


def plan_fire_times(schedule: Schedule, zone: str, after_ms: int, *, start_ms: int,
                    end_ms: int | None, period: Period | None) -> Iterator[int]:
    """The fire times that make occurrences: inside `[start_ms, end_ms)` and the period."""
    at: int | None = after_ms
    while (at := next_fire(schedule, zone, at, start_ms=start_ms, end_ms=end_ms,
                           period=period)) is not None:
        yield at


def timing(fire_ms: int, now_ms: int, max_lateness_ms: int) -> str:
    """`due` (run it now), `missed` (too late: record, never send) or `later`."""
    if fire_ms > now_ms:
        return LATER
    return DUE if now_ms - fire_ms <= max_lateness_ms else MISSED


def occurrence_id(plan_id: str, fired_by: int | str) -> str:
    """Deterministic: the plan and its fire time (ms), or the id of the triggering event."""
    return f"{plan_id}@{fired_by}"


def _first_fire_in_windows(schedule: Schedule, period: Period, tz: ZoneInfo, first: date,
                           last: date, low: int, high: int | None) -> int | None:
    """The first fire time from `low` (before `high`) inside a window of a daily, weekly
    or monthly period."""
    meets = schedule.meets(*period.daily_window)

    def may_fire_in(day: date) -> bool:
        # A fire time of the day before lands in this day's window only through a gap
        # over midnight (America/Nuuk springs forward from 23:00 to 00:00).
        return schedule.chooses(day) or schedule.chooses(day - DAY)

    for day in chosen_days(period, first, last, may_fire_in):
        if not (meets and schedule.chooses(day)) and steady_around(day, tz):
            continue  # one offset all around: times of day that miss make instants that do
        start, end = window_on(period, day, tz)
        if high is not None and start >= high:
            return None
        since, until = max(low, start), end if high is None else min(high, end)
        fires = [fire for fire_day in (day - DAY, day)
                 if (fire := _first_fire(schedule, fire_day, tz, since)) is not None
                 and fire < until]
        if fires:
            return min(fires)
    return None


def _first_fire(schedule: Schedule, day: date, tz: ZoneInfo, low: int) -> int | None:
    """The day's first fire time at or after `low`: a binary search over its times of day,
    whose instants are in their order."""
    if not schedule.chooses(day):
        return None

    def instant(at: time) -> int:
        return first_instant_at(datetime.combine(day, at), tz)

    found = bisect_left(schedule.times, low, key=instant)
    return instant(schedule.times[found]) if found < len(schedule.times) else None


def _every(values: list, count: int) -> tuple[int, ...]:
    return tuple(range(count)) if values == ["*"] else tuple(sorted(values))


def _restricted(values: list) -> frozenset[int] | None:
    return None if values == ["*"] else frozenset(values)
