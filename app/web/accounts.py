"""`/accounts/{account_id}`: an account's balances, routed to the worker that owns it."""

from __future__ import annotations

import html

from faust.web import Request, Response, View

from app.engine.partitioning import partition_for
from app.main import app, settings
from tables.balances import balances

_table = balances.table


@app.page("/accounts/{account_id}")
class Account(View):
    @app.table_route(table=_table, match_info="account_id")
    async def get(self, request: Request, account_id: str) -> Response:
        key = account_id.encode()
        frozen, settled, clawed_back = balances.read(
            partition_for(key, settings.partitions), key) or (0, 0, 0)
        body = {"account_id": account_id, "frozen": frozen, "settled": settled,
                "clawed_back": clawed_back, "commissions": frozen + settled + clawed_back}
        if request.query.get("format") == "json":
            return self.json(body)
        rows = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>"
                       for name, value in body.items() if name != "account_id")
        return self.html(
            f"<!doctype html><title>Account {html.escape(account_id)}</title>"
            f"<h1>Account {html.escape(account_id)}</h1>"
            f"<p>Amounts in minor units (fen/cents).</p><table>{rows}</table>")
