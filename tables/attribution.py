"""State of attribution, partitioned by buyer (like the clicks and re-keyed orders).

- clicks: buyer_id -> click history rows (app.domain.clicks)
- order_waits: order_id -> Waiting, for orders held for `created` or a late click
- attributed: order_id -> attributed_ms, so each order is attributed once
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from app.engine.processor import Engine
from app.records.codecs import decode_waiting, encode_waiting


@dataclass(frozen=True, slots=True)
class AttributionTables:
    # StateTable in a worker, any object with the same `read`/`scan` in tests.
    clicks: Any       # buyer_id -> click history rows (app.domain.clicks)
    order_waits: Any  # order_id -> Waiting
    attributed: Any   # order_id -> attributed_ms, so each order is attributed once


def define(engine: Engine) -> AttributionTables:
    return AttributionTables(
        clicks=engine.state_table("clicks", encode=orjson.dumps, decode=orjson.loads),
        order_waits=engine.state_table("order_waits", encode=encode_waiting,
                                       decode=decode_waiting),
        attributed=engine.state_table("attributed", encode=lambda ms: b"%d" % ms, decode=int),
    )
