"""When an operation plan executes (SPEC 13): its occurrences and their ids.

- `schedule`: a standard 5-field cron (`M H DoM Mon DoW`) read in the plan's
  time zone. croniter checks and expands the fields; the fire times are
  computed here, day by day, so they follow the same DST rule as period
  windows (app/domain/wallclock.py): a fire time in a spring-forward gap
  fires at the end of the gap, one in a repeated hour once. As in cron, when
  both day of month and day of week are restricted, a day matching either
  is chosen.
- `now`: one occurrence, at the plan's first activation.
- `event`: one occurrence per (buyer, triggering event), `delay_ms` after it.

A schedule's fire time counts only inside the plan's effective interval and
its period (when it has one). A fire time missed by more than the lateness
limit (a worker down, the plan restored late) is `missed`, never sent late.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from croniter import croniter

from app.domain.periods import Period, contains, time_zone
from app.domain.wallclock import first_instant_at

# A schedule that fires on no day in this many years fires never (e.g. 30 February).
SEARCH_DAYS = 8 * 366
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

    def chooses(self, day: date) -> bool:
        if self.months is not None and day.month not in self.months:
            return False
        by_day = self.days is None or day.day in self.days
        by_weekday = self.weekdays is None or day.isoweekday() in self.weekdays
        if self.days is not None and self.weekdays is not None:
            return by_day or by_weekday
        return by_day and by_weekday


def parse_cron(expression: str) -> Schedule:
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise TriggerError(f"cron: {expression!r} is not a 5-field cron expression "
                           "(minute hour day-of-month month day-of-week, e.g. '0 9 * * *')")
    (minutes, hours, days, months, weekdays), _ = croniter.expand(expression)
    return Schedule(_every(minutes, 60), _every(hours, 24), _restricted(days),
                    _restricted(months),
                    None if weekdays == ["*"] else frozenset(7 if d == 0 else d
                                                             for d in weekdays))


def fire_times(schedule: Schedule, zone: str, after_ms: int) -> Iterator[int]:
    """Every fire time (ms) after `after_ms`, in order."""
    tz = time_zone(zone)
    day = datetime.fromtimestamp(after_ms / 1000, tz).date() - timedelta(days=1)
    idle = 0
    while idle <= SEARCH_DAYS:
        if schedule.chooses(day):
            idle = 0
            fired: set[int] = set()
            for hour in schedule.hours:
                for minute in schedule.minutes:
                    at = first_instant_at(datetime.combine(day, time(hour, minute)), tz)
                    if at > after_ms and at not in fired:
                        fired.add(at)  # two wall times in one gap fire once, at its end
                        yield at
        else:
            idle += 1
        day += timedelta(days=1)


def plan_fire_times(schedule: Schedule, zone: str, after_ms: int, *, start_ms: int,
                    end_ms: int | None, period: Period | None) -> Iterator[int]:
    """The fire times that make occurrences: inside `[start_ms, end_ms)` and the period."""
    for at in fire_times(schedule, zone, max(after_ms, start_ms - 1)):
        if end_ms is not None and at >= end_ms:
            return
        if period is None or contains(period, zone, at):
            yield at


def timing(fire_ms: int, now_ms: int, max_lateness_ms: int) -> str:
    """`due` (run it now), `missed` (too late: record, never send) or `later`."""
    if fire_ms > now_ms:
        return LATER
    return DUE if now_ms - fire_ms <= max_lateness_ms else MISSED


def occurrence_id(plan_id: str, fired_by: int | str) -> str:
    """Deterministic: the plan and its fire time (ms), or the id of the triggering event."""
    return f"{plan_id}@{fired_by}"


def _every(values: list, count: int) -> tuple[int, ...]:
    return tuple(range(count)) if values == ["*"] else tuple(sorted(values))


def _restricted(values: list) -> frozenset[int] | None:
    return None if values == ["*"] else frozenset(values)
