"""The engine's output records (attributions, commissions, settlements, dead letters),
and the decoders of those the engine reads back.
"""

from __future__ import annotations

import orjson

from app.domain.attribution import Attribution
from app.domain.ledger import Attributed, Commission, Settlement
from app.records.fields import (
    DEAD_LETTER_VALUE_BYTES,
    MAX_SAFE_INT,
    InvalidEvent,
    integer,
    optional_id,
    optional_integer,
    parse_object,
    required_id,
    text,
)


def encode_attribution(attribution: Attribution) -> bytes:
    return orjson.dumps(attribution)


def decode_attributed(raw: bytes | None) -> tuple[str, Attributed]:
    """The order id and what billing needs of an attribution record."""
    obj = parse_object(raw)
    kind = obj.get("type")
    if kind not in ("cps", "self_operated", "none"):
        raise InvalidEvent("type: must be cps, self_operated or none")
    return required_id(obj, "order_id"), Attributed(
        type=kind, channel_id=optional_id(obj, "channel_id"),
        promoter_id=optional_id(obj, "promoter_id"),
        group_leader_id=optional_id(obj, "group_leader_id"),
        base_id=optional_id(obj, "base_id"), buyer_id=required_id(obj, "buyer_id"))


def encode_commission(commission: Commission) -> bytes:
    return orjson.dumps(commission)


def encode_settlement(settlement: Settlement) -> bytes:
    return orjson.dumps(settlement)


SETTLEMENT_STATES = frozenset({"frozen", "adjusted", "settled", "clawback"})


def decode_settlement(raw: bytes | None) -> Settlement:
    obj = parse_object(raw)
    state = obj.get("state")
    if state not in SETTLEMENT_STATES:
        raise InvalidEvent(f"state: must be one of {', '.join(sorted(SETTLEMENT_STATES))}")
    amount = obj.get("amount")
    if type(amount) is not int or abs(amount) > MAX_SAFE_INT:
        raise InvalidEvent("amount: must be an integer")
    return Settlement(
        event_id=required_id(obj, "event_id"), order_id=required_id(obj, "order_id"),
        account_id=required_id(obj, "account_id"),
        participant=required_id(obj, "participant"), state=state, amount=amount,
        due_ms=optional_integer(obj, "due_ms", None), ts_ms=integer(obj, "ts_ms"),
        cause=text(obj, "cause", 256), seq=integer(obj, "seq"))




def dead_letter(*, topic: str, partition: int, offset: int, key: bytes | None,
                value: bytes | None, error: str, ts_ms: int) -> bytes:
    """The dead-letter record (SPEC 3): original text cut at 64 KiB, and the reason."""
    return orjson.dumps({
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": None if key is None else key[:DEAD_LETTER_VALUE_BYTES].decode("utf-8", "replace"),
        "value": None if value is None
        else value[:DEAD_LETTER_VALUE_BYTES].decode("utf-8", "replace"),
        "error": error[:1000],
        "ts_ms": ts_ms,
    })
