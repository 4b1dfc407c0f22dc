"""Wall-clock times in a time zone as instants, DST-correctly.

A wall-clock time becomes the first instant at which the zone's clock reads
it or later: one in a spring-forward gap is the end of the gap (the clock
jumps past it there), one in a fall-back's repeated hour its first
occurrence. Period windows and schedule fire times both follow this rule.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo


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


def _exists(wall: datetime, tz: ZoneInfo) -> bool:
    return any(datetime.fromtimestamp(_utc_ms(wall.replace(tzinfo=tz, fold=fold)) / 1000, tz)
               .replace(tzinfo=None) == wall for fold in (0, 1))


def _utc_ms(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() * 1000)
