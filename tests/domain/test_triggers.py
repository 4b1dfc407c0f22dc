"""Schedules, plan fire times, lateness and occurrence ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.periods import parse as parse_period
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
