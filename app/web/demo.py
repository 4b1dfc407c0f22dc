"""`/demo/product`: a stand-in product page for demo links (shows what the shop receives)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from faust.web import Request, Response, View

if TYPE_CHECKING:
    import faust


def register(*, app: faust.App) -> None:
    """/demo/product."""

    @app.page("/demo/product")
    class DemoProduct(View):
        async def get(self, request: Request) -> Response:
            item = html.escape(request.query.get("item", "?"))
            token = html.escape(request.query.get("cps_t", ""))
            return self.html(
                "<!doctype html><meta charset=utf-8><title>Demo product</title>"
                "<style>body{font:15px system-ui;margin:2em;max-width:50em}"
                "code{word-break:break-all}</style>"
                f"<h1>Demo product {item}</h1>"
                "<p>A promotion link brought you here: the engine recorded your click and "
                "redirected you to this product page with a signed tracking token. An order "
                "placed from here would carry it back in its <code>tracking</code> field.</p>"
                f"<p>cps_t = <code>{token or '(none)'}</code></p>")
