"""Records the engine writes on its own internal topics and reads back: attributed orders
re-keyed by promoter, results for live subscribers, the click spools' progress."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.domain.order_views import PROMOTER_ORDER_FIELDS
from app.domain.sinks import STREAMS
from app.records.fields import InvalidEvent, choice, keyed_by, parse_object, required_id
from app.records.outputs import ATTRIBUTION_FIELDS

# A spool's sequence numbers count its clicks: 16 digits outlast any spool.
MAX_SEQUENCE_DIGITS = 16


def decode_promoter_order(key: bytes | None, raw: bytes | None) -> dict[str, Any]:
    """An attributed order's summary re-keyed by its promoter (internal.orders-by-promoter)."""
    obj = parse_object(raw)
    summary = {name: ATTRIBUTION_FIELDS[name](obj, name) for name in PROMOTER_ORDER_FIELDS}
    keyed_by(key, required_id(obj, "promoter_id"), "promoter_id")
    return summary


def decode_live(raw: bytes | None) -> tuple[str, Mapping[str, Any], Mapping[str, Any]]:
    """(stream, event, facts) of a result for live subscribers (internal.live)."""
    obj = parse_object(raw)
    stream = choice(obj, "stream", STREAMS)
    event, facts = obj.get("event"), obj.get("facts")
    if type(event) is not dict:
        raise InvalidEvent("event: required object")
    if facts is not None and type(facts) is not dict:
        raise InvalidEvent("facts: must be an object or null")
    return stream, event, facts or {}


def decode_spool_progress(raw: bytes | None) -> int:
    """The sequence number of the last click a spool sent (internal.spool-progress)."""
    if raw is None or not raw.isdigit() or len(raw) > MAX_SEQUENCE_DIGITS:
        raise InvalidEvent("value: must be the sequence number of a spooled click")
    return int(raw)
