"""Order center views: an order, a promoter's orders, a buyer's recent clicks.

Each answers HTML for people and JSON with `?format=json`. A request that
reaches a worker not owning the key is passed on to the owner (Faust's
table router), so any worker answers for any key.
"""

from __future__ import annotations

import base64
import binascii
import html
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from faust.exceptions import SameNode
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable

from app.domain.clicks import from_row
from app.domain.ledger import Ledger
from app.engine.partitioning import partition_for
from app.engine.state import StateTable
from app.web.access import order_for_promoter
from app.web.guard import reader_of
from app.web.pages import newest_first, page, table

if TYPE_CHECKING:
    import faust

    from app.config.settings import Settings
    from tables.attribution import AttributionTables
    from tables.billing import BillingTables
    from tables.order_center import OrderCenterTables

MAX_PAGE = 200


async def answer_where_owned(view: View, request: Request, table: StateTable, key: str,
                 answer: Callable[[int], Awaitable[Response]], partitions: int) -> Response:
    """Answer here when this worker owns `key` in `table`, else pass the request on."""
    try:
        return await view.app.router.route_req(table.table.name, key, view.web, request)
    except SameNode:
        return await answer(partition_for(key.encode(), partitions))
    except (KeyError, ServiceUnavailable):
        return view.json({"error": "the owner of this key is not known yet; retry shortly"},
                         status=503)


def _wants_json(request: Request) -> bool:
    return request.query.get("format") == "json"


def _page(view: View, title: str, sections: list[tuple[str, list[dict]]],
          extra: str = "") -> Response:
    body = "".join(f"<h2>{html.escape(heading)}</h2>{table(rows)}" for heading, rows in sections)
    return view.html(page(title, body + extra))




def order_document(order_id: str, ledger: Ledger | None, view: dict | None) -> dict[str, Any]:
    """Everything known of an order, as the JSON the order page shows."""
    view = view or {"timeline": [], "attribution": None}
    timeline = [{"event": e, "ts_ms": ts, "refund_id": r, "seen_ms": seen}
                for e, ts, r, seen in view["timeline"]]
    document: dict[str, Any] = {
        "order_id": order_id,
        "status": timeline[-1]["event"] if timeline else None,
        "timeline": timeline,
        "attribution": view["attribution"],
        "lines": [], "commissions": [], "settlement": [], "open_refunds": [],
    }
    if ledger is None:
        return document
    document.update(buyer_id=ledger.buyer_id, shop_id=ledger.shop_id,
                    open_refunds=sorted(ledger.open_refunds))
    document["lines"] = [{"item_id": line.item_id, "category_id": line.category_id,
                          "amount": line.amount, "refunded": ledger.refunded(line.item_id),
                          "net": line.amount - ledger.refunded(line.item_id)}
                         for line in ledger.lines]
    rates = {(priced.item_id, pool): rate for priced in (ledger.terms.lines if ledger.terms
                                                         else ()) for pool, rate in priced.pools}
    accounts = dict(ledger.terms.accounts) if ledger.terms else {}
    document["commissions"] = [
        {"item_id": item, "pool": pool, "participant": participant,
         "account_id": accounts.get(participant), "total": total,
         "rate_bp": rates[(item, pool)].rate_bp if (item, pool) in rates else None,
         "activity_id": rates[(item, pool)].activity_id if (item, pool) in rates else None,
         "level": rates[(item, pool)].level if (item, pool) in rates else None}
        for (item, pool, participant), total in sorted(ledger.totals.items())]
    document["settlement"] = [
        {"participant": payee.participant, "account_id": payee.account_id,
         "amount": payee.amount, "state": "settled" if payee.settled else "frozen",
         "due_ms": payee.due_ms}
        for payee in sorted(ledger.payees.values(), key=lambda p: p.participant)
        if payee.touched]
    return document




def page_limit(request: Request) -> int:
    try:
        return max(1, min(MAX_PAGE, int(request.query.get("limit", "20"))))
    except ValueError:
        return 20


def newest_first_page(view: View, request: Request, rows: list[Mapping[str, Any]], *,
                      id_field: str, owner: tuple[str, str], listed: str,
                      title: str) -> Response:
    """A page of `rows`, newest first (`limit`; `cursor`, the previous page's
    `next_cursor`, goes on with older ones): JSON `{<owner>, <listed>: rows, next_cursor}`,
    or HTML with a link to the older ones."""
    limit = page_limit(request)
    shown, next_cursor = newest_first(rows, id_field, limit, request.query.get("cursor"))
    if _wants_json(request):
        return view.json({owner[0]: owner[1], listed: shown, "next_cursor": next_cursor})
    more = (f'<p><a href="?cursor={html.escape(next_cursor)}&limit={limit}">'
            f"older {listed}</a></p>") if next_cursor else ""
    return view.html(page(title, table(shown) + more))




def register(*, app: faust.App, settings: Settings, attribution_tables: AttributionTables,
             billing_tables: BillingTables, order_center_tables: OrderCenterTables) -> None:
    """Serve `/orders/{order_id}`, `/promoters/{promoter_id}/orders` and `/clicks`."""
    partitions = settings.partitions
    clicks = attribution_tables.clicks
    ledgers = billing_tables.ledgers
    order_views = order_center_tables.order_views
    promoter_orders = order_center_tables.promoter_orders

    @app.page("/orders/{order_id}")
    class Order(View):
        async def get(self, request: Request, order_id: str) -> Response:
            async def answer(partition: int) -> Response:
                key = order_id.encode()
                ledger, view = ledgers.read(partition, key), order_views.read(partition, key)
                reader = reader_of(request)
                promoter = reader.promoter_id if reader is not None and reader.is_promoter else None
                # A promoter is told no more than "not yours", whether the order exists or not.
                if ledger is None and view is None and promoter is None:
                    return self.json({"error": f"no order {order_id!r}"}, status=404)
                document = order_document(order_id, ledger, view)
                if promoter is not None:
                    document = order_for_promoter(document, promoter)
                    if document is None:
                        return self.json({"error": "a promoter token reads only the orders "
                                                   "attributed to it or paying it"}, status=403)
                if _wants_json(request):
                    return self.json(document)
                attribution = document["attribution"]
                return _page(self, f"Order {order_id} ({document['status']})", [
                    ("Timeline", document["timeline"]),
                    ("Attribution", [attribution] if attribution else []),
                    ("Lines", document["lines"]),
                    ("Commissions", document["commissions"]),
                    ("Settlement", document["settlement"]),
                ])
            return await answer_where_owned(self, request, ledgers, order_id, answer, partitions)

    @app.page("/promoters/{promoter_id}/orders")
    class PromoterOrders(View):
        async def get(self, request: Request, promoter_id: str) -> Response:
            async def answer(partition: int) -> Response:
                prefix = promoter_id.encode() + b"\x1f"
                after = None
                cursor = request.query.get("cursor")
                if cursor:
                    try:
                        after = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
                    except (binascii.Error, ValueError):
                        after = b""
                    if not after.startswith(prefix):
                        return self.json({"error": "cursor: not a cursor of this promoter's list"},
                                         status=400)
                limit = page_limit(request)
                entries = promoter_orders.scan_prefix(partition, prefix, after=after,
                                                      limit=limit + 1)
                page, more = entries[:limit], len(entries) > limit
                next_cursor = (base64.urlsafe_b64encode(page[-1][0]).rstrip(b"=").decode()
                               if more else None)
                document = {"promoter_id": promoter_id, "orders": [v for _k, v in page],
                            "next_cursor": next_cursor}
                if _wants_json(request):
                    return self.json(document)
                more_link = (f'<p><a href="?cursor={html.escape(next_cursor)}&limit={limit}">'
                             "older orders</a></p>") if next_cursor else ""
                return _page(self, f"Orders of promoter {promoter_id}",
                             [("Newest first", document["orders"])], more_link)
            return await answer_where_owned(self, request, promoter_orders, promoter_id, answer,
                                            partitions)

    @app.page("/clicks")
    class Clicks(View):
        async def get(self, request: Request) -> Response:
            buyer_id = request.query.get("buyer_id")
            if not buyer_id:
                return self.json({"error": "buyer_id: required query parameter"}, status=400)
            shop_id = request.query.get("shop_id")

            async def answer(partition: int) -> Response:
                history = clicks.read(partition, buyer_id.encode()) or []
                found = [from_row(buyer_id, row) for row in reversed(history)]
                limit = page_limit(request)
                rows = [{"click_id": c.click_id, "ts_ms": c.ts_ms, "shop_id": c.shop_id,
                         "channel_id": c.channel_id, "promoter_id": c.promoter_id,
                         "item_id": c.item_id, "activity_id": c.activity_id,
                         "group_leader_id": c.group_leader_id, "base_id": c.base_id}
                        for c in found if shop_id is None or c.shop_id == shop_id][:limit]
                document = {"buyer_id": buyer_id, "shop_id": shop_id, "clicks": rows}
                if _wants_json(request):
                    return self.json(document)
                return _page(self, f"Recent clicks of buyer {buyer_id}", [("Newest first", rows)])
            return await answer_where_owned(self, request, clicks, buyer_id, answer, partitions)
