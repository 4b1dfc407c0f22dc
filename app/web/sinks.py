"""`/sinks`: every sink with its queue depth, deliveries, retries, dead letters and rate."""

from __future__ import annotations

import html
import time

from faust.web import Request, Response, View

from app.main import app
from app.services import dispatcher

_COLUMNS = ("kind", "target", "streams", "ready", "enabled", "paused", "depth", "sent", "retried",
            "dead_lettered", "configured_rate_per_s", "rate_per_s", "throttle", "last_error")


@app.page("/sinks")
class Sinks(View):
    async def get(self, request: Request) -> Response:
        stats = dispatcher.stats()
        if request.query.get("format") == "json":
            return self.json({"ts_ms": int(time.time() * 1000), "sinks": stats,
                              "note": "counts are this worker's; depth is its partitions'"})
        head = "".join(f"<th>{c}</th>" for c in ("sink", *_COLUMNS))
        rows = "".join(
            "<tr>" + f"<td>{html.escape(sink_id)}</td>" + "".join(
                f"<td>{html.escape(str(values.get(c, '')))}</td>" for c in _COLUMNS) + "</tr>"
            for sink_id, values in sorted(stats.items()))
        return self.html(
            "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=5>"
            "<title>Sinks</title><style>body{font:14px system-ui;margin:2em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
            "</style><h1>Sinks (this worker)</h1>"
            f"<table><tr>{head}</tr>{rows}</table>")
