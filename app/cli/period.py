"""`cps period EXPR`: the next windows of a period expression (SPEC 13)."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import click

from app.config.settings import Settings
from app.domain.periods import (
    HORIZON_YEARS,
    PeriodError,
    horizon_end,
    last_day,
    parse,
    time_zone,
    windows,
)
from app.domain.wallclock import local_time


@click.command("period")
@click.argument("expression")
@click.option("--tz", "zone", default=None,
              help="IANA time zone the expression is read in (default CPS_PLAN_TZ, UTC).")
@click.option("--from", "start", default=None,
              help="ISO time to list windows after (default now; without an offset: in --tz).")
@click.option("--count", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="How many windows to print.")
@click.pass_obj
def command(settings: Settings, expression: str, zone: str | None, start: str | None,
            count: int) -> None:
    """Print the next windows of a period expression, one per line: start, end (exclusive)
    and length, in the time zone.

    EXPRESSION is `S M H DoM Mon DoW [Year] TYPE` (quote it), TYPE 31 daily,
    32 weekly, 33 monthly (one time-of-day window on each chosen day) or 2 a
    fixed term; e.g. '* 20-30 8-20 * * ? 31' is every day 08:20:00-20:30:59.
    A window still open at --from is printed first. Each next window is
    looked for at most 30 years ahead; a period with none there has no more.
    """
    zone = zone or settings.plan_tz
    try:
        period = parse(expression)
        tz = time_zone(zone)
        after_ms = _instant(start, tz)
    except PeriodError as exc:
        raise click.BadParameter(str(exc)) from None
    shown = 0
    for begin, end in windows(period, zone, after_ms):
        click.echo(f"{_local(begin, tz)}  {_local(end, tz)}  {_length(end - begin)}")
        shown += 1
        if shown == count:
            break
    if shown == 0:
        final = last_day(period)
        searched = local_time(after_ms, tz)
        click.echo("no window after that time" if final is not None and searched is not None
                   and final <= horizon_end(searched.date())
                   else f"no window in the {HORIZON_YEARS} years after that time")


def _instant(text: str | None, tz: ZoneInfo) -> int:
    if text is None:
        return int(time.time() * 1000)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PeriodError(f"--from: {text!r} is not an ISO time (2026-11-29T08:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return int(moment.timestamp() * 1000)


def _local(at_ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(at_ms / 1000, tz).isoformat()


def _length(span_ms: int) -> str:
    seconds = span_ms // 1000
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{seconds:02d}"
