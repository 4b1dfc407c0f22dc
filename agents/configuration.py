"""Configuration topics: every worker reads them whole (app.services.catalog); this pipeline only
checks each record once, on the worker that owns its partition, so that invalid
configuration reaches the dead-letter topic exactly once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.engine.handler_context import HandlerContext
from app.records.configuration import (
    decode_activity,
    decode_channel,
    decode_operator,
    decode_policy,
    decode_shop,
    decode_sink,
)
from app.records.operations import decode_plan

if TYPE_CHECKING:
    from app.engine.processor import Engine
    from app.kafka.topics import Topics


def validated_by(decode: Callable[[bytes, bytes | None], Any]):
    """A handler that only decodes (a decoding error dead-letters the record)."""
    def handle(ctx: HandlerContext, key: bytes | None, value: bytes | None) -> None:
        if value is not None:  # null deletes the entry
            decode(value, key)
    return handle


def register(*, engine: Engine, topics: Topics) -> None:
    engine.pipeline("configuration", {
        topic: validated_by(decoder) for topic, decoder in (
            (topics.shops, decode_shop), (topics.channels, decode_channel),
            (topics.activities, decode_activity), (topics.policy, decode_policy),
            (topics.sinks, decode_sink), (topics.plans, decode_plan),
            (topics.operators, decode_operator))})
