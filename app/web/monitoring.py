"""Operator views of the engine's health: /monitor, /lag, /alerts, /dashboard.

Each worker samples the broker and its own figures (app.services.monitor); these
views ask every other worker for its part (`/monitor/local`) and merge, so
any worker shows the whole engine.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from faust.web import Request, Response, View

from app.services.monitor import Monitor, fetch_peer, merge_snapshots
from app.web import assets
from app.web.pages import page, table

if TYPE_CHECKING:
    import faust

    from app.config.settings import Settings

logger = logging.getLogger(__name__)

DASHBOARD = Path(__file__).resolve().parent / "dashboard.html"
HOUR_MS = 3_600_000
_DASHBOARD_LINK = "<p><a href=/dashboard>dashboard</a></p>"


def _since(request: Request, now: int) -> int:
    try:
        minutes = max(1, min(60, int(request.query.get("minutes", "15"))))
    except ValueError:
        minutes = 15
    return now - minutes * 60_000


async def merged_view(app, monitor: Monitor, since_ms: int, view_token: str) -> dict:
    """Every worker's snapshot (this one's locally), merged; peers are asked as readers (all
    workers share the view token)."""
    now = int(time.time() * 1000)
    own = str(app.conf.canonical_url)
    snapshots = [monitor.snapshot(since_ms)]
    peers = [url for url in app.router.tables_metadata() if str(url) != own]
    if peers:
        async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {view_token}"}) as session:
            for url in peers:
                snapshots.append(await fetch_peer(session, str(url).rstrip("/"), since_ms))
    view = merge_snapshots(snapshots, now)
    view["unreachable_workers"] = [str(u) for u, s in zip(peers, snapshots[1:], strict=True)
                                   if s is None]
    return view


def register(*, app: faust.App, settings: Settings, monitor: Monitor) -> None:
    """Serve `/monitor`, `/monitor/local`, `/lag`, `/alerts`, `/dashboard` and `/static`."""
    view_token = settings.view_token
    if unverified := assets.unverified():
        logger.error(assets.missing_message(unverified))

    @app.page("/monitor/local")
    class MonitorLocal(View):
        async def get(self, request: Request) -> Response:
            try:
                since = int(request.query.get("since_ms", "0"))
            except ValueError:
                since = 0
            return self.json(monitor.snapshot(since))

    @app.page("/monitor")
    class MonitorView(View):
        async def get(self, request: Request) -> Response:
            since = _since(request, int(time.time() * 1000))
            return self.json(await merged_view(app, monitor, since, view_token))

    @app.page("/lag")
    class Lag(View):
        async def get(self, request: Request) -> Response:
            now = int(time.time() * 1000)
            view = await merged_view(app, monitor, _since(request, now), view_token)
            if request.query.get("format") == "json":
                return self.json({"ts_ms": now, "partitions": view["lag"],
                                  "series": view["lag_series"]})
            return self.html(page("Consumer lag", table(
                [{k: r[k] for k in ("group", "topic", "partition", "committed", "end", "lag")}
                 for r in view["lag"]]) + _DASHBOARD_LINK, refresh_s=5))

    @app.page("/alerts")
    class Alerts(View):
        async def get(self, request: Request) -> Response:
            view = await merged_view(app, monitor, int(time.time() * 1000) - HOUR_MS,
                                     view_token)
            if request.query.get("format") == "json":
                return self.json({"ts_ms": view["ts_ms"], "alerts": view["alerts"],
                                  "transitions": view["transitions"]})
            rows = [{"alert": a["name"], "state": a["state"], "what": a["description"],
                     "value": a["value"], "threshold": a["threshold"],
                     "fired": _when(a["fired_ms"]), "resolved": _when(a["resolved_ms"])}
                    for a in view["alerts"]]
            return self.html(page("Alerts", table(rows, [a["state"] for a in view["alerts"]])
                                  + _DASHBOARD_LINK, refresh_s=5))

    @app.page("/dashboard")
    class Dashboard(View):
        async def get(self, request: Request) -> Response:
            return self.html(DASHBOARD.read_text())

    @app.page("/static/{name}")
    class Static(View):
        async def get(self, request: Request, name: str) -> Response:
            if name not in assets.FILES:
                return self.notfound()
            path = assets.STATIC / name
            if not path.exists():
                return self.text("chart library missing: see the worker's log", status=503)
            kind = "application/javascript" if name.endswith(".js") else "text/css"
            return self.bytes(path.read_bytes(), content_type=kind,
                              headers={"Cache-Control": "public, max-age=86400"})


def _when(ms: int | None) -> str:
    return "" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))
