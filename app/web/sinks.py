"""`/sinks`: every sink with its queue depth, deliveries, retries, dead letters and rate."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from faust.web import Request, Response, View

from app.web.pages import page, table

if TYPE_CHECKING:
    import faust

    from app.sinks.dispatcher import SinkDispatcher

_COLUMNS = ("kind", "target", "streams", "ready", "enabled", "paused", "depth", "sent", "retried",
            "dead_lettered", "in_flight", "configured_rate_per_s", "rate_per_s", "rate_reason",
            "last_error")


def register(*, app: faust.App, dispatcher: SinkDispatcher) -> None:
    """/sinks."""

    @app.page("/sinks")
    class Sinks(View):
        async def get(self, request: Request) -> Response:
            stats = dispatcher.stats()
            if request.query.get("format") == "json":
                return self.json({"ts_ms": int(time.time() * 1000), "sinks": stats,
                                  "note": "counts are this worker's; depth is its partitions'"})
            rows = [{"sink": sink_id, **{c: values.get(c) for c in _COLUMNS}}
                    for sink_id, values in sorted(stats.items())]
            return self.html(page("Sinks (this worker)", table(rows), refresh_s=5))
