"""When a periodic job is due: cron expressions against a clock given as an argument."""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import croniter


class Schedule:
    """A cron expression (UTC) that answers "which firing has most recently passed?"."""

    def __init__(self, expression: str) -> None:
        if not croniter.is_valid(expression):
            raise ValueError(f"not a cron expression: {expression!r}")
        self.expression = expression

    def last_firing_ms(self, now_ms: int) -> int:
        """The latest firing at or before `now_ms`."""
        # croniter looks strictly before its start; one millisecond later includes `now_ms`.
        start = datetime.fromtimestamp((now_ms + 1) / 1000, tz=UTC)
        return int(croniter(self.expression, start).get_prev(datetime).timestamp() * 1000)
