"""Configuration topics: every worker reads them whole (app.catalog); this agent only
checks each record once, on the worker that owns its partition, so that invalid
configuration reaches the dead-letter topic exactly once."""

from __future__ import annotations

from app.engine.processor import Context
from app.main import app, topics
from app.records import decode_activity, decode_channel, decode_policy, decode_shop, decode_sink
from app.services import engine

source = engine.source(
    topics.shops, topics.channels, topics.activities, topics.policy, topics.sinks,
)


@app.agent(source, name="configuration")
async def configuration(stream) -> None:
    await engine.consume(stream)


def _validated_by(decode):
    def handle(ctx: Context, key: bytes | None, value: bytes | None) -> None:
        if value is not None:  # null deletes the entry
            decode(value, key)
    return handle


for topic, decoder in ((topics.shops, decode_shop), (topics.channels, decode_channel),
                       (topics.activities, decode_activity), (topics.policy, decode_policy),
                       (topics.sinks, decode_sink)):
    engine.handle(topic, _validated_by(decoder))
