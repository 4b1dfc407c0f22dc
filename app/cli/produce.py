"""`cps produce TOPIC FILE.jsonl`: feed events from a file."""

from __future__ import annotations

import asyncio
import sys

import click
import orjson

from app.config.settings import Settings
from app.services.feeding import Feeder

# The field producers should key each topic by (SPEC 4).
KEY_FIELDS = {
    "clicks": "buyer_id", "orders": "order_id", "shops": "shop_id", "channels": "channel_id",
    "activities": "activity_id", "policy": "id", "sinks": "id",
}


@click.command("produce")
@click.argument("topic")
@click.argument("file", type=click.File("rb"))
@click.option("--key", "key_field", help="Field whose value keys each record "
              "(default: buyer_id for clicks, order_id for orders, the id for configuration).")
@click.pass_obj
def command(settings: Settings, topic: str, file, key_field: str | None) -> None:
    """Produce every line of FILE (JSON Lines, `-` for stdin) to TOPIC.

    TOPIC is a SPEC name such as `clicks` or `orders` (the prefix
    CPS_TOPIC_PREFIX is added). Lines that are not JSON objects are sent
    unchanged and unkeyed, so you can also feed garbage on purpose; the
    engine dead-letters them.
    """
    name = topic.removeprefix(settings.topic_prefix)
    field = key_field or KEY_FIELDS.get(name)
    sent, unparsed = asyncio.run(_produce(settings, name, file, field))
    note = f" ({unparsed} lines were not JSON objects and went unkeyed)" if unparsed else ""
    click.echo(f"produced {sent} records to {settings.topic_prefix}{name}{note}")


async def _produce(settings: Settings, topic: str, lines, field: str | None) -> tuple[int, int]:
    unparsed = 0
    async with Feeder(settings) as feeder:
        for number, line in enumerate(lines, 1):
            raw = line.rstrip(b"\r\n")
            if not raw.strip():
                continue
            key = None
            try:
                value = orjson.loads(raw)
                if isinstance(value, dict) and field and value.get(field) is not None:
                    key = str(value[field])
                elif not isinstance(value, dict):
                    unparsed += 1
            except orjson.JSONDecodeError:
                unparsed += 1
            await feeder.send(topic, key, raw)
            if number % 50_000 == 0:
                print(f"  {number} lines...", file=sys.stderr, flush=True)
        sent = feeder.sent
    return sent, unparsed
