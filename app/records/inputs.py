"""Input events (clicks, orders): decoded and validated, or `InvalidEvent` naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, Literal

import orjson

from app.domain.model import (
    LINE_EVENTS,
    ORDER_EVENTS,
    REFUND_EVENTS,
    Click,
    OrderEvent,
    OrderLine,
    Refund,
)
from app.records.fields import (
    MAX_COUPON_ID_CHARS,
    MAX_COUPONS,
    MAX_LINES,
    MAX_TRACKING_CHARS,
    InvalidEvent,
    array,
    integer,
    keyed_by,
    optional_id,
    optional_integer,
    parse_object,
    required_id,
    subobject,
)


def decode_click(raw: bytes | None) -> Click:
    obj = parse_object(raw)
    return Click(
        click_id=required_id(obj, "click_id"),
        ts_ms=integer(obj, "ts_ms"),
        buyer_id=required_id(obj, "buyer_id"),
        shop_id=required_id(obj, "shop_id"),
        channel_id=required_id(obj, "channel_id"),
        promoter_id=required_id(obj, "promoter_id"),
        item_id=optional_id(obj, "item_id"),
        activity_id=optional_id(obj, "activity_id"),
        group_leader_id=optional_id(obj, "group_leader_id"),
        base_id=optional_id(obj, "base_id"),
    )


def decode_rekeyed_click(key: bytes | None, raw: bytes | None) -> Click:
    """A click re-keyed by buyer (internal.clicks-by-buyer)."""
    click = decode_click(raw)
    keyed_by(key, click.buyer_id, "buyer_id")
    return click


def encode_click(click: Click) -> bytes:
    return orjson.dumps(asdict(click))


def decode_rekeyed_order(key: bytes | None, raw: bytes | None,
                         by: Literal["buyer_id", "order_id"]) -> OrderEvent:
    """An order event re-keyed by its buyer or its order (internal.orders-by-*)."""
    event = decode_order(raw)
    keyed_by(key, event.buyer_id if by == "buyer_id" else event.order_id, by)
    return event


def decode_order(raw: bytes | None) -> OrderEvent:
    obj = parse_object(raw)
    event = obj.get("event")
    if type(event) is not str or event not in ORDER_EVENTS:
        raise InvalidEvent(f"event: must be one of {', '.join(sorted(ORDER_EVENTS))}")
    tracking = obj.get("tracking")
    if tracking is not None and (type(tracking) is not str or len(tracking) > MAX_TRACKING_CHARS):
        raise InvalidEvent(f"tracking: must be a string of at most {MAX_TRACKING_CHARS} characters")
    return OrderEvent(
        order_id=required_id(obj, "order_id"),
        event=event,
        ts_ms=integer(obj, "ts_ms"),
        buyer_id=required_id(obj, "buyer_id"),
        shop_id=required_id(obj, "shop_id"),
        channel_id=optional_id(obj, "channel_id"),
        fanstype=optional_id(obj, "fanstype"),
        tracking=tracking or None,
        items=_lines(obj) if event in LINE_EVENTS else (),
        refund=_refund(obj, event) if event in REFUND_EVENTS else None,
        coupon_ids=_coupon_ids(obj) if event in LINE_EVENTS else (),
    )


def _coupon_ids(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """The rights an order uses: a rights platform keys them by the grant's action id
    (plan, fire time or event, buyer), longer than other ids."""
    values = array(obj, "coupon_ids", limit=MAX_COUPONS)
    for index, value in enumerate(values):
        if type(value) is not str or not value or len(value) > MAX_COUPON_ID_CHARS:
            raise InvalidEvent(f"coupon_ids[{index}]: must be a string of "
                               f"1-{MAX_COUPON_ID_CHARS} characters")
    return tuple(sorted(set(values)))


def _lines(obj: Mapping[str, Any]) -> tuple[OrderLine, ...]:
    raw_lines = array(obj, "items", limit=MAX_LINES)
    if not raw_lines:
        raise InvalidEvent("items: required, at least one line")
    lines: list[OrderLine] = []
    seen: set[str] = set()
    for index, line in enumerate(raw_lines):
        if type(line) is not dict:
            raise InvalidEvent(f"items[{index}]: must be an object")
        try:
            item = OrderLine(
                item_id=required_id(line, "item_id"),
                category_id=optional_id(line, "category_id"),
                quantity=optional_integer(line, "quantity", 1, minimum=1),
                amount=integer(line, "amount"),
            )
        except InvalidEvent as exc:
            raise InvalidEvent(f"items[{index}].{exc}") from None
        if item.item_id in seen:
            raise InvalidEvent(f"items[{index}].item_id: {item.item_id!r} appears twice")
        seen.add(item.item_id)
        lines.append(item)
    return tuple(lines)


def _refund(obj: Mapping[str, Any], event: str) -> Refund:
    refund = subobject(obj, "refund")
    try:
        return Refund(
            refund_id=required_id(refund, "refund_id"),
            item_id=required_id(refund, "item_id"),
            amount=integer(refund, "amount") if event == "refunded"
            else optional_integer(refund, "amount", 0),
        )
    except InvalidEvent as exc:
        raise InvalidEvent(f"refund.{exc}") from None
