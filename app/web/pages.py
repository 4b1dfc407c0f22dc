"""The plain HTML the views answer people with (programs ask for `?format=json`)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

_STYLE = ("<style>body{font:14px system-ui;margin:2em}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
          ".firing td{background:#fdd}.pending td{background:#ffd}.signout{float:right}</style>")
# A signed-in browser's way out; harmless to a program that asked with a token.
_SIGN_OUT = "<form class=signout method=post action=/signout><button>sign out</button></form>"


def page(title: str, body: str, *, refresh_s: int | None = None) -> str:
    refresh = f"<meta http-equiv=refresh content={refresh_s}>" if refresh_s else ""
    return (f"<!doctype html><meta charset=utf-8>{refresh}<title>{html.escape(title)}</title>"
            f"{_STYLE}{_SIGN_OUT}<h1>{html.escape(title)}</h1>{body}")


def table(rows: Sequence[dict], classes: Sequence[str] | None = None) -> str:
    """A table with a column per key of the first row; `classes` mark rows (alert states)."""
    if not rows:
        return "<p>none</p>"
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        (f"<tr class={html.escape(classes[i])}>" if classes else "<tr>")
        + "".join(f"<td>{html.escape(str('' if row.get(c) is None else row[c]))}</td>"
                  for c in columns) + "</tr>"
        for i, row in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def newest_first(rows: Sequence[Mapping[str, Any]], id_field: str, limit: int,
                 cursor: str | None) -> tuple[list[Mapping[str, Any]], str | None]:
    """A page of rows, newest first (by `ts_ms`, then `id_field`), older than `cursor`; and
    the cursor of the next page (None: no more)."""
    ordered = sorted(rows, key=lambda row: (row["ts_ms"], row[id_field]), reverse=True)
    if cursor:
        ts_text, _, ident = cursor.partition(":")
        position = (int(ts_text), ident) if ts_text.isdigit() else (-1, "")
        ordered = [row for row in ordered if (row["ts_ms"], row[id_field]) < position]
    shown = ordered[:limit]
    more = len(ordered) > limit
    return shown, f"{shown[-1]['ts_ms']}:{shown[-1][id_field]}" if more else None
