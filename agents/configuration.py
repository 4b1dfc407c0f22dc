"""Configuration topics: every worker reads them whole (app.catalog); this agent only
checks each record once, on the worker that owns its partition, so that invalid
configuration reaches the dead-letter topic exactly once."""

from __future__ import annotations

from app.engine.processor import Context
from app.main import app, topics
from app.records import decode_channel, decode_shop
from app.services import engine

source = app.topic(
    topics.shops, topics.channels,
    key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", acks=False,
)


@app.agent(source, name="configuration")
async def configuration(stream) -> None:
    await engine.consume(stream)


def on_shop(ctx: Context, key: bytes | None, value: bytes | None) -> None:
    if value is not None:  # null deletes the shop
        decode_shop(value, key)


def on_channel(ctx: Context, key: bytes | None, value: bytes | None) -> None:
    if value is not None:
        decode_channel(value, key)


engine.handle(topics.shops, on_shop)
engine.handle(topics.channels, on_channel)
