"""Admin API: configuration writes, promotion links, sink pause/resume (bearer token)."""

from __future__ import annotations

import time
from dataclasses import replace
from functools import wraps

import orjson
from aiokafka.errors import KafkaError
from faust.web import Request, Response, View

from app.admin import (
    AdminError,
    ConfigWriter,
    authorize,
    config_record,
    issue_link,
    kinds,
    parse_body,
)
from app.main import app, settings, topics
from app.records import encode_sink
from app.services import catalog, engine, signer

KINDS = kinds(topics)
writer = ConfigWriter(settings.broker)


async def _body(request: Request) -> dict:
    limit = settings.admin_max_body_bytes
    if (request.content_length or 0) > limit:
        raise AdminError(413, f"body larger than {limit} bytes")
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise AdminError(413, f"body larger than {limit} bytes")
    return parse_body(raw)


def _admin(method):
    """Authorize the request first; answer refusals and Kafka failures as JSON."""
    @wraps(method)
    async def guarded(view: View, request: Request, **kwargs) -> Response:
        try:
            authorize(request.headers.get("Authorization"), settings.admin_token)
            return await method(view, request, **kwargs)
        except AdminError as exc:
            return view.json(exc.body(), status=exc.status)
        except KafkaError as exc:
            return view.json({"error": f"Kafka did not take the write: {exc!r}"}, status=503)
    return guarded


def _kind(name: str):
    kind = KINDS.get(name)
    if kind is None:
        raise AdminError(404, f"unknown kind {name!r}; one of {', '.join(KINDS)}")
    return kind


@app.page("/admin/engine/{action}")
class EngineSwitch(View):
    @_admin
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


# Registered after /admin/engine/..., which the pattern below would otherwise shadow.
@app.page("/admin/{kind}/{ident}")
class ConfigEntry(View):
    @_admin
    async def put(self, request: Request, kind: str, ident: str) -> Response:
        entry = _kind(kind)
        record = config_record(entry, ident, await _body(request))
        offset = await writer.write(entry.topic, ident, record)
        return self.json({"kind": kind, "id": ident, "topic": entry.topic, "offset": offset,
                          "value": orjson.loads(record)})

    @_admin
    async def delete(self, request: Request, kind: str, ident: str) -> Response:
        entry = _kind(kind)
        offset = await writer.write(entry.topic, ident, None)
        return self.json({"kind": kind, "id": ident, "deleted": True, "offset": offset})


@app.page("/admin/links")
class Links(View):
    @_admin
    async def post(self, request: Request) -> Response:
        link = issue_link(signer, await _body(request), now_ms=int(time.time() * 1000),
                          default_ttl_s=settings.link_ttl_s, public_url=settings.public_url)
        return self.json(link, status=201)


@app.page("/admin/sinks/{ident}/{action}")
class SinkSwitch(View):
    @_admin
    async def post(self, request: Request, ident: str, action: str) -> Response:
        if action not in ("pause", "resume"):
            raise AdminError(404, "use /admin/sinks/<id>/pause or /resume")
        sink = catalog.sinks.get(ident)
        if sink is None:
            raise AdminError(404, f"no sink {ident!r}")
        raw = encode_sink(replace(sink, paused=action == "pause"))
        offset = await writer.write(topics.sinks, ident, raw)
        return self.json({"id": ident, "paused": action == "pause", "offset": offset})

