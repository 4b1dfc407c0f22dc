"""Operator views of the engine's health: /monitor, /lag, /alerts, /dashboard.

Each worker samples the broker and its own figures (app.monitor); these
views ask every other worker for its part (`/monitor/local`) and merge, so
any worker shows the whole engine.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import aiohttp
from faust.web import Request, Response, View

from app.main import app
from app.monitor import fetch_peer, merge_snapshots
from app.services import monitor
from app.web import assets

DASHBOARD = Path(__file__).resolve().parent / "dashboard.html"
HOUR_MS = 3_600_000


def _since(request: Request, now: int) -> int:
    try:
        minutes = max(1, min(60, int(request.query.get("minutes", "15"))))
    except ValueError:
        minutes = 15
    return now - minutes * 60_000


async def merged_view(since_ms: int) -> dict:
    """Every worker's snapshot (this one's locally), merged."""
    now = int(time.time() * 1000)
    own = str(app.conf.canonical_url)
    snapshots = [monitor.snapshot(since_ms)]
    peers = [url for url in app.router.tables_metadata() if str(url) != own]
    if peers:
        async with aiohttp.ClientSession() as session:
            for url in peers:
                snapshots.append(await fetch_peer(session, str(url).rstrip("/"), since_ms))
    view = merge_snapshots(snapshots, now)
    view["unreachable_workers"] = [str(u) for u, s in zip(peers, snapshots[1:], strict=True)
                                   if s is None]
    return view


@app.page("/monitor/local")
class MonitorLocal(View):
    async def get(self, request: Request) -> Response:
        try:
            since = int(request.query.get("since_ms", "0"))
        except ValueError:
            since = 0
        return self.json(monitor.snapshot(since))


@app.page("/monitor")
class Monitor(View):
    async def get(self, request: Request) -> Response:
        return self.json(await merged_view(_since(request, int(time.time() * 1000))))


@app.page("/lag")
class Lag(View):
    async def get(self, request: Request) -> Response:
        now = int(time.time() * 1000)
        view = await merged_view(_since(request, now))
        if request.query.get("format") == "json":
            return self.json({"ts_ms": now, "partitions": view["lag"],
                              "series": view["lag_series"]})
        rows = "".join(
            f"<tr><td>{html.escape(r['group'])}</td><td>{html.escape(r['topic'])}</td>"
            f"<td>{r['partition']}</td><td>{r['committed']}</td><td>{r['end']}</td>"
            f"<td><b>{r['lag']}</b></td></tr>" for r in view["lag"])
        return self.html(_page("Consumer lag", "<table><tr><th>group</th><th>topic</th>"
                               "<th>partition</th><th>committed</th><th>end</th><th>lag</th>"
                               f"</tr>{rows}</table>"))


@app.page("/alerts")
class Alerts(View):
    async def get(self, request: Request) -> Response:
        view = await merged_view(int(time.time() * 1000) - HOUR_MS)
        if request.query.get("format") == "json":
            return self.json({"ts_ms": view["ts_ms"], "alerts": view["alerts"],
                              "transitions": view["transitions"]})
        rows = "".join(
            f"<tr class={a['state']}><td>{html.escape(a['name'])}</td><td>{a['state']}</td>"
            f"<td>{html.escape(a['description'])}</td><td>{a['value']}</td>"
            f"<td>{a['threshold']}</td><td>{_when(a['fired_ms'])}</td>"
            f"<td>{_when(a['resolved_ms'])}</td></tr>" for a in view["alerts"])
        return self.html(_page("Alerts", "<table><tr><th>alert</th><th>state</th><th>what</th>"
                               "<th>value</th><th>threshold</th><th>fired</th>"
                               f"<th>resolved</th></tr>{rows}</table>"))


@app.page("/dashboard")
class Dashboard(View):
    async def get(self, request: Request) -> Response:
        return self.html(DASHBOARD.read_text())


@app.page("/static/{name}")
class Static(View):
    async def get(self, request: Request, name: str) -> Response:
        if name not in assets.FILES.values():
            return self.notfound()
        path = assets.STATIC / name
        if not path.exists():
            return self.text("chart library missing: run `python -m app.web.assets`",
                             status=503)
        kind = "application/javascript" if name.endswith(".js") else "text/css"
        return self.bytes(path.read_bytes(), content_type=kind,
                          headers={"Cache-Control": "public, max-age=86400"})


def _when(ms: int | None) -> str:
    return "" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=5>"
            f"<title>{title}</title><style>body{{font:14px system-ui;margin:2em}}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
            ".firing td{background:#fdd}.pending td{background:#ffd}</style>"
            f"<h1>{title}</h1>{body}<p><a href=/dashboard>dashboard</a></p>")
