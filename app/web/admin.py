"""Admin API: configuration writes, promotion links, sink pause/resume (bearer token)."""

from __future__ import annotations

import time
from dataclasses import replace
from functools import wraps
from typing import TYPE_CHECKING

import orjson
from aiokafka.errors import KafkaError
from faust.web import Request, Response, View

from app.records.configuration import encode_sink
from app.services.admin import (
    AdminError,
    ConfigWriter,
    buyers_on_list,
    checked_list_id,
    config_record,
    issue_link,
    issue_promoter_token,
    kinds,
    list_change,
    list_members,
    parse_body,
    plan_in_state,
    refuse_moving_operator,
    refuse_never_firing,
    stamped_plan,
)

if TYPE_CHECKING:
    import faust

    from app.config.settings import Settings
    from app.domain.tokens import Signer
    from app.engine.processor import Engine
    from app.kafka.connection import KafkaConnection
    from app.kafka.topics import Topics
    from app.services.catalog import Catalog

LIST_BODY_BYTES = 32 * 1024 * 1024  # a list of ~1M buyer ids


async def _body(request: Request, limit: int) -> dict:
    if (request.content_length or 0) > limit:
        raise AdminError(413, f"body larger than {limit} bytes")
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise AdminError(413, f"body larger than {limit} bytes")
    return parse_body(raw)


async def _read_up_to_date(catalog, topic: str) -> None:
    """The catalog's `topic` as Kafka has it now: an entry written a moment ago (by this
    worker or another) is there before a change builds on it (a plan's created_ms kept,
    a pause of the plan or sink as last written)."""
    try:
        await catalog.read_to_end(topic)
    except TimeoutError:
        raise AdminError(503, "the configuration is not read up to date; try again") from None


def admin_only(method):
    """Answer an admin method's refusals and Kafka failures as JSON. Who may call it is the
    guard's (app.web.access: the admin token)."""
    @wraps(method)
    async def answered(view: View, request: Request, **kwargs) -> Response:
        try:
            return await method(view, request, **kwargs)
        except AdminError as exc:
            return view.json(exc.body(), status=exc.status)
        except KafkaError as exc:
            return view.json({"error": f"Kafka did not take the write: {exc!r}"}, status=503)
    return answered


def register(*, app: faust.App, settings: Settings, topics: Topics, catalog: Catalog,
             engine: Engine, signer: Signer, connection: KafkaConnection) -> None:
    """Serve the admin API (`/admin/...`)."""
    config_kinds = kinds(topics)
    writer = ConfigWriter(connection)
    body_limit = settings.admin_max_body_bytes

    def config_kind(name: str):
        kind = config_kinds.get(name)
        if kind is None:
            raise AdminError(404, f"unknown kind {name!r}; one of {', '.join(config_kinds)}")
        return kind

    @app.page("/admin/engine/{action}")
    class EngineSwitch(View):
        @admin_only
        async def post(self, request: Request, action: str) -> Response:
            """Pause or resume this worker's processing (input waits in Kafka; lag shows it)."""
            if action == "pause":
                engine.running.clear()
            elif action == "resume":
                engine.running.set()
            else:
                raise AdminError(404, "use /admin/engine/pause or /resume")
            return self.json({"worker": str(app.conf.canonical_url),
                              "processing": engine.running.is_set()})

    @app.page("/admin/plans/pause-all")
    class PauseAllPlans(View):
        @admin_only
        async def post(self, request: Request) -> Response:
            """The kill switch: pause every active plan (each `resume`s on its own)."""
            await _read_up_to_date(catalog, topics.plans)
            active = [plan for plan in list(catalog.plans.values()) if plan.state == "active"]
            written = await writer.write_many(topics.plans, [
                (plan.plan_id, plan_in_state(plan, "pause")) for plan in active])
            return self.json({"paused": sorted(plan.plan_id for plan in active),
                              "written": written})

    @app.page("/admin/lists/{ident}")
    class AudienceList(View):
        async def _replace(self, ident: str, buyers: list[str]) -> Response:
            change = list_change(ident, await buyers_on_list(connection, topics.lists,
                                                             ident), buyers)
            await writer.write_many(topics.lists, change.records())
            return self.json({"list_id": ident, "buyers": len(change.buyers),
                              "removed": len(change.removed), "topic": topics.lists})

        @admin_only
        async def put(self, request: Request, ident: str) -> Response:
            """Replace the list with these buyers (a JSON array or JSON Lines of buyer ids)."""
            ident = checked_list_id(ident)
            if (request.content_length or 0) > LIST_BODY_BYTES:
                raise AdminError(413, f"body larger than {LIST_BODY_BYTES} bytes")
            raw = await request.content.read(LIST_BODY_BYTES + 1)
            if len(raw) > LIST_BODY_BYTES:
                raise AdminError(413, f"body larger than {LIST_BODY_BYTES} bytes")
            return await self._replace(ident, list_members(raw))

        @admin_only
        async def delete(self, request: Request, ident: str) -> Response:
            """Empty the list."""
            return await self._replace(checked_list_id(ident), [])

    @app.page("/admin/plans/{ident}/{action}")
    class PlanSwitch(View):
        @admin_only
        async def post(self, request: Request, ident: str, action: str) -> Response:
            await _read_up_to_date(catalog, topics.plans)
            plan = catalog.plans.get(ident)
            if plan is None:
                raise AdminError(404, f"no plan {ident!r}")
            offset = await writer.write(topics.plans, ident, plan_in_state(plan, action))
            return self.json({"id": ident, "action": action, "offset": offset})

    # Registered after the views above, which the pattern below would otherwise shadow.
    @app.page("/admin/{kind}/{ident}")
    class ConfigEntry(View):
        @admin_only
        async def put(self, request: Request, kind: str, ident: str) -> Response:
            entry = config_kind(kind)
            body = await _body(request, body_limit)
            now_ms = int(time.time() * 1000)
            if kind == "plans":
                await _read_up_to_date(catalog, topics.plans)
                body = stamped_plan(body, catalog.plans.get(ident), now_ms)
            record = config_record(entry, ident, body)
            if kind == "plans":
                refuse_never_firing(record, now_ms, settings.plan_tz)
            if kind == "operators":
                await _read_up_to_date(catalog, topics.operators)
                refuse_moving_operator(record, catalog.operators.get(ident))
            offset = await writer.write(entry.topic, ident, record)
            return self.json({"kind": kind, "id": ident, "topic": entry.topic, "offset": offset,
                              "value": entry.shown(orjson.loads(record))})

        @admin_only
        async def delete(self, request: Request, kind: str, ident: str) -> Response:
            entry = config_kind(kind)
            offset = await writer.write(entry.topic, ident, None)
            return self.json({"kind": kind, "id": ident, "deleted": True, "offset": offset})

    @app.page("/admin/links")
    class Links(View):
        @admin_only
        async def post(self, request: Request) -> Response:
            link = issue_link(signer, await _body(request, body_limit),
                              now_ms=int(time.time() * 1000),
                              default_ttl_s=settings.link_ttl_s, public_url=settings.public_url)
            return self.json(link, status=201)

    @app.page("/admin/promoter-tokens")
    class PromoterTokens(View):
        @admin_only
        async def post(self, request: Request) -> Response:
            token = issue_promoter_token(signer, await _body(request, body_limit),
                                         now_ms=int(time.time() * 1000))
            return self.json(token, status=201)

    @app.page("/admin/sinks/{ident}/{action}")
    class SinkSwitch(View):
        @admin_only
        async def post(self, request: Request, ident: str, action: str) -> Response:
            if action not in ("pause", "resume"):
                raise AdminError(404, "use /admin/sinks/<id>/pause or /resume")
            await _read_up_to_date(catalog, topics.sinks)
            sink = catalog.sinks.get(ident)
            if sink is None:
                raise AdminError(404, f"no sink {ident!r}")
            raw = encode_sink(replace(sink, paused=action == "pause"))
            offset = await writer.write(topics.sinks, ident, raw)
            return self.json({"id": ident, "paused": action == "pause", "offset": offset})
