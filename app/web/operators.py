"""`/operators/{operator_id}/assignments`: the buyers given to an operator (SPEC 14), newest
first, a page at a time; HTML for people, JSON with `?format=json`."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from faust.web import Request, Response, View

from app.web.orders import answer_where_owned, page_limit
from app.web.pages import newest_first, page, table

if TYPE_CHECKING:
    from app.bootstrap import Services

# An operator's assignments read for one page (newest first); one with more shows the
# newest of these.
MAX_OPERATOR_ASSIGNMENTS = 10_000


def register(services: Services) -> None:
    app, partitions = services.app, services.settings.partitions
    assignments = services.state.allocation.operator_assignments

    @app.page("/operators/{operator_id}/assignments")
    class OperatorAssignments(View):
        async def get(self, request: Request, operator_id: str) -> Response:
            """`limit` a page; `cursor` (the previous page's `next_cursor`) goes on."""
            async def answer(partition: int) -> Response:
                found = assignments.scan_prefix(partition, operator_id.encode() + b"\x1f",
                                                limit=MAX_OPERATOR_ASSIGNMENTS)
                limit = page_limit(request)
                rows, next_cursor = newest_first([row for _key, row in found],
                                                 "assignment_id", limit,
                                                 request.query.get("cursor"))
                if request.query.get("format") == "json":
                    return self.json({"operator_id": operator_id, "assignments": rows,
                                      "next_cursor": next_cursor})
                more = (f'<p><a href="?cursor={html.escape(next_cursor)}&limit={limit}">'
                        "older assignments</a></p>") if next_cursor else ""
                return self.html(page(f"Assignments of {operator_id}", table(rows) + more))
            return await answer_where_owned(self, request, assignments, operator_id, answer,
                                            partitions)
