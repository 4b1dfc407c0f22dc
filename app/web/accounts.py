"""`/accounts/{account_id}`: an account's balances, routed to the worker that owns it."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from faust.web import Request, Response, View

from app.domain.balances import Balance
from app.engine.partitioning import partition_for

if TYPE_CHECKING:
    import faust

    from app.config.settings import Settings
    from tables.balances import BalanceTables


def register(*, app: faust.App, settings: Settings, balance_tables: BalanceTables) -> None:
    """Serve `/accounts/{account_id}` from the balances table."""
    balances, partitions = balance_tables.balances, settings.partitions

    @app.page("/accounts/{account_id}")
    class Account(View):
        @app.table_route(table=balances.table, match_info="account_id")
        async def get(self, request: Request, account_id: str) -> Response:
            key = account_id.encode()
            balance = balances.read(partition_for(key, partitions), key) or Balance()
            body = {"account_id": account_id, "frozen": balance.frozen,
                    "settled": balance.settled, "clawed_back": balance.clawed_back,
                    "commissions": balance.commissions}
            if request.query.get("format") == "json":
                return self.json(body)
            rows = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>"
                           for name, value in body.items() if name != "account_id")
            return self.html(
                f"<!doctype html><title>Account {html.escape(account_id)}</title>"
                f"<h1>Account {html.escape(account_id)}</h1>"
                f"<p>Amounts in minor units (fen/cents).</p><table>{rows}</table>")
