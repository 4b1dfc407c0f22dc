"""`/operators/{operator_id}/assignments`: the buyers given to an operator (SPEC 14), newest
first, a page at a time; HTML for people, JSON with `?format=json`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faust.web import Request, Response, View

from app.web.orders import answer_where_owned, newest_first_page

if TYPE_CHECKING:
    import faust

    from app.config.settings import Settings
    from tables.allocation import AllocationTables

# An operator's assignments read for one page (newest first); one with more shows the
# newest of these.
MAX_OPERATOR_ASSIGNMENTS = 10_000


def register(*, app: faust.App, settings: Settings,
             allocation_tables: AllocationTables) -> None:
    partitions, assignments = settings.partitions, allocation_tables.operator_assignments

    @app.page("/operators/{operator_id}/assignments")
    class OperatorAssignments(View):
        async def get(self, request: Request, operator_id: str) -> Response:
            """`limit` a page; `cursor` (the previous page's `next_cursor`) goes on."""
            async def answer(partition: int) -> Response:
                found = assignments.scan_prefix(partition, operator_id.encode() + b"\x1f",
                                                limit=MAX_OPERATOR_ASSIGNMENTS)
                return newest_first_page(
                    self, request, [row for _key, row in found], id_field="assignment_id",
                    owner=("operator_id", operator_id), listed="assignments",
                    title=f"Assignments of {operator_id}")
            return await answer_where_owned(self, request, assignments, operator_id, answer,
                                            partitions)
