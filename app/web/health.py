"""`/health` (the process answers) and `/ready` (it can do its work)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faust.web import Request, Response, View

if TYPE_CHECKING:
    import faust

    from app.engine.processor import Engine
    from app.services.catalog import Catalog
    from app.sinks.dispatcher import SinkDispatcher


def register(*, app: faust.App, catalog: Catalog, dispatcher: SinkDispatcher,
             engine: Engine) -> None:
    """/health and /ready."""

    def readiness() -> dict[str, bool]:
        """Each condition of readiness, by name."""
        assigned = app.assignor.assigned_actives() is not None and app.consumer_generation_id > 0
        return {
            "partitions_assigned": bool(assigned) and not app.rebalancing,
            "tables_recovered": app.tables.recovery.completed.is_set(),
            "configuration_loaded": catalog.ready,
            "engine_started": engine.started,
            "sinks_ready": dispatcher.synced.is_set(),
        }

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            checks = readiness()
            ready = all(checks.values())
            return self.json({"ready": ready, "checks": checks}, status=200 if ready else 503)
