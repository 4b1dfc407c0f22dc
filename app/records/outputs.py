"""The engine's output records (attributions, commissions, settlements, dead letters),
and the decoders of those the engine reads back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

import orjson

from app.domain.attribution import Attribution, Mode, Reason, Type
from app.domain.ledger import Attributed, Commission, Settlement
from app.records.fields import (
    DEAD_LETTER_VALUE_BYTES,
    MAX_SAFE_INT,
    InvalidEvent,
    boolean,
    choice,
    integer,
    keyed_by,
    optional_choice,
    optional_id,
    optional_integer,
    parse_object,
    required_id,
    text,
)


def encode_attribution(attribution: Attribution) -> bytes:
    return orjson.dumps(attribution)


def _one_of(kind: type[StrEnum], *, optional: bool = False
            ) -> Callable[[Mapping[str, Any], str], StrEnum | None]:
    """The reader of a field holding one of `kind`'s values (or null, when `optional`)."""

    def read(obj: Mapping[str, Any], name: str) -> StrEnum | None:
        value = (optional_choice if optional else choice)(obj, name, tuple(kind))
        return None if value is None else kind(value)

    return read


# How each field of an attribution record is read: SPEC 5's fields, then the engine's own.
ATTRIBUTION_FIELDS: dict[str, Callable[[Mapping[str, Any], str], Any]] = {
    "order_id": required_id, "ts_ms": integer, "attributed_ms": integer,
    "buyer_id": required_id, "shop_id": required_id,
    "type": _one_of(Type), "mode": _one_of(Mode, optional=True),
    "reason": _one_of(Reason, optional=True),
    "click_id": optional_id, "channel_id": optional_id, "promoter_id": optional_id,
    "group_leader_id": optional_id, "base_id": optional_id, "delayed": boolean,
    "click_ts_ms": lambda obj, name: optional_integer(obj, name, None),
    "activity_id": optional_id, "item_id": optional_id,
}


def decode_attribution(key: bytes | None, raw: bytes | None) -> Attribution:
    """An attribution read back (billing, reconcile), keyed by its order id."""
    obj = parse_object(raw)
    attribution = Attribution(**{name: read(obj, name)
                                 for name, read in ATTRIBUTION_FIELDS.items()})
    keyed_by(key, attribution.order_id, "order_id")
    return attribution


def attributed(attribution: Attribution) -> Attributed:
    """What billing needs of an attribution."""
    return Attributed(type=attribution.type.value, channel_id=attribution.channel_id,
                      promoter_id=attribution.promoter_id,
                      group_leader_id=attribution.group_leader_id,
                      base_id=attribution.base_id, buyer_id=attribution.buyer_id)


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
