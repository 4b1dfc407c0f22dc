"""Wire formats: decode and validate input events, encode output events.

Hand-written checks on purpose: this is the per-event hot path, and the
errors name the field so a dead letter says exactly what was wrong. Every
decoder raises `InvalidEvent` (never anything else) for bad input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from app.domain.attribution import Attribution
from app.domain.ledger import Attributed, Commission, Settlement
from app.domain.model import (
    DEFAULT_SETTLE_DAYS,
    DEFAULT_WINDOW_MS,
    LINE_EVENTS,
    ORDER_EVENTS,
    REFUND_EVENTS,
    Channel,
    Click,
    OrderEvent,
    OrderLine,
    Refund,
    Shop,
)
from app.domain.pools import Participant, Policy, Share, validate_policy
from app.domain.rates import Activity, Level

MAX_ID_CHARS = 128
MAX_TRACKING_CHARS = 2048
MAX_URL_CHARS = 2048
MAX_LINES = 1000
MAX_LIST_ITEMS = 10_000
# Largest integer every JSON consumer (JavaScript included) represents exactly.
MAX_SAFE_INT = 2**53 - 1
MAX_BP = 10_000
DEAD_LETTER_VALUE_BYTES = 64 * 1024


class InvalidEvent(ValueError):
    """A message that cannot be parsed or validated; the text is the dead-letter reason."""


def parse_object(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise InvalidEvent("empty message (null value)")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    if type(value) is not dict:
        raise InvalidEvent(f"expected a JSON object, got {type(value).__name__}")
    return value


def _id(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if type(value) is not str:
        raise InvalidEvent(f"{name}: required string" if value is None
                           else f"{name}: must be a string")
    if not value or len(value) > MAX_ID_CHARS:
        raise InvalidEvent(f"{name}: must be 1-{MAX_ID_CHARS} characters")
    return value


def _optional_id(obj: Mapping[str, Any], name: str) -> str | None:
    return None if obj.get(name) is None else _id(obj, name)


def _int(obj: Mapping[str, Any], name: str, *, minimum: int = 0,
         maximum: int = MAX_SAFE_INT) -> int:
    value = obj.get(name)
    if type(value) is not int:
        raise InvalidEvent(f"{name}: required integer" if value is None
                           else f"{name}: must be an integer")
    if not minimum <= value <= maximum:
        raise InvalidEvent(f"{name}: must be between {minimum} and {maximum}")
    return value


def _optional_int(obj: Mapping[str, Any], name: str, default: int | None,
                  **bounds: int) -> int | None:
    return default if obj.get(name) is None else _int(obj, name, **bounds)


def _bool(obj: Mapping[str, Any], name: str) -> bool:
    value = obj.get(name)
    if value is None:
        return False
    if type(value) is not bool:
        raise InvalidEvent(f"{name}: must be true or false")
    return value


def _list(obj: Mapping[str, Any], name: str, *, limit: int = MAX_LIST_ITEMS) -> list:
    value = obj.get(name)
    if value is None:
        return []
    if type(value) is not list:
        raise InvalidEvent(f"{name}: must be a list")
    if len(value) > limit:
        raise InvalidEvent(f"{name}: more than {limit} entries")
    return value


def _id_list(obj: Mapping[str, Any], name: str) -> tuple[str, ...]:
    values = _list(obj, name)
    for index, value in enumerate(values):
        if type(value) is not str or not value or len(value) > MAX_ID_CHARS:
            raise InvalidEvent(f"{name}[{index}]: must be a string of 1-{MAX_ID_CHARS} characters")
    return tuple(values)


def _object(obj: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    if type(value) is not dict:
        raise InvalidEvent(f"{name}: required object" if value is None
                           else f"{name}: must be an object")
    return value


# -- clicks ------------------------------------------------------------------


def decode_click(raw: bytes | None) -> Click:
    obj = parse_object(raw)
    return Click(
        click_id=_id(obj, "click_id"),
        ts_ms=_int(obj, "ts_ms"),
        buyer_id=_id(obj, "buyer_id"),
        shop_id=_id(obj, "shop_id"),
        channel_id=_id(obj, "channel_id"),
        promoter_id=_id(obj, "promoter_id"),
        item_id=_optional_id(obj, "item_id"),
        activity_id=_optional_id(obj, "activity_id"),
        group_leader_id=_optional_id(obj, "group_leader_id"),
        base_id=_optional_id(obj, "base_id"),
    )


def encode_click(click: Click) -> bytes:
    return orjson.dumps(asdict(click))


# -- orders ------------------------------------------------------------------


def decode_order(raw: bytes | None) -> OrderEvent:
    obj = parse_object(raw)
    event = obj.get("event")
    if type(event) is not str or event not in ORDER_EVENTS:
        raise InvalidEvent(f"event: must be one of {', '.join(sorted(ORDER_EVENTS))}")
    tracking = obj.get("tracking")
    if tracking is not None and (type(tracking) is not str or len(tracking) > MAX_TRACKING_CHARS):
        raise InvalidEvent(f"tracking: must be a string of at most {MAX_TRACKING_CHARS} characters")
    return OrderEvent(
        order_id=_id(obj, "order_id"),
        event=event,
        ts_ms=_int(obj, "ts_ms"),
        buyer_id=_id(obj, "buyer_id"),
        shop_id=_id(obj, "shop_id"),
        channel_id=_optional_id(obj, "channel_id"),
        fanstype=_optional_id(obj, "fanstype"),
        tracking=tracking or None,
        items=_lines(obj) if event in LINE_EVENTS else (),
        refund=_refund(obj, event) if event in REFUND_EVENTS else None,
    )


def _lines(obj: Mapping[str, Any]) -> tuple[OrderLine, ...]:
    raw_lines = _list(obj, "items", limit=MAX_LINES)
    if not raw_lines:
        raise InvalidEvent("items: required, at least one line")
    lines: list[OrderLine] = []
    seen: set[str] = set()
    for index, line in enumerate(raw_lines):
        if type(line) is not dict:
            raise InvalidEvent(f"items[{index}]: must be an object")
        try:
            item = OrderLine(
                item_id=_id(line, "item_id"),
                category_id=_optional_id(line, "category_id"),
                quantity=_optional_int(line, "quantity", 1, minimum=1),
                amount=_int(line, "amount"),
            )
        except InvalidEvent as exc:
            raise InvalidEvent(f"items[{index}].{exc}") from None
        if item.item_id in seen:
            raise InvalidEvent(f"items[{index}].item_id: {item.item_id!r} appears twice")
        seen.add(item.item_id)
        lines.append(item)
    return tuple(lines)


def _refund(obj: Mapping[str, Any], event: str) -> Refund:
    refund = _object(obj, "refund")
    try:
        return Refund(
            refund_id=_id(refund, "refund_id"),
            item_id=_id(refund, "item_id"),
            amount=_int(refund, "amount") if event == "refunded"
            else _optional_int(refund, "amount", 0),
        )
    except InvalidEvent as exc:
        raise InvalidEvent(f"refund.{exc}") from None


# -- configuration -----------------------------------------------------------


def config_id(obj: Mapping[str, Any], id_field: str, key: bytes | None) -> str:
    """The id of a config object, which must agree with the message key when there is one."""
    ident = _id(obj, id_field)
    if key is not None and key.decode("utf-8", "replace") != ident:
        raise InvalidEvent(f"{id_field}: {ident!r} differs from the message key")
    return ident


def decode_shop(raw: bytes | None, key: bytes | None = None) -> Shop:
    obj = parse_object(raw)
    return Shop(
        shop_id=config_id(obj, "shop_id", key),
        cps_joined_ms=_optional_int(obj, "cps_joined_ms", None),
        cps_exited_ms=_optional_int(obj, "cps_exited_ms", None),
        authorized_channels=frozenset(_id_list(obj, "authorized_channels")),
    )


def decode_channel(raw: bytes | None, key: bytes | None = None) -> Channel:
    obj = parse_object(raw)
    webhook = obj.get("webhook_url")
    if webhook is not None and (type(webhook) is not str or len(webhook) > MAX_URL_CHARS
                                or not webhook.startswith(("http://", "https://"))):
        raise InvalidEvent("webhook_url: must be an http(s) URL")
    return Channel(
        channel_id=config_id(obj, "channel_id", key),
        attribution_window_ms=_optional_int(obj, "attribution_window_ms", DEFAULT_WINDOW_MS),
        site_wide=_bool(obj, "site_wide"),
        self_purchase=_bool(obj, "self_purchase"),
        settle_days=_optional_int(obj, "settle_days", DEFAULT_SETTLE_DAYS, maximum=3650),
        settle_days_by_participant=_int_map(obj, "settle_days_by_participant", maximum=3650),
        self_operated_rate_bp=_int_map(obj, "self_operated_rate_bp", maximum=MAX_BP),
        webhook_url=webhook,
    )


def _int_map(obj: Mapping[str, Any], name: str, *, maximum: int) -> dict[str, int]:
    value = obj.get(name)
    if value is None:
        return {}
    if type(value) is not dict or len(value) > MAX_LIST_ITEMS:
        raise InvalidEvent(f"{name}: must be an object of integers")
    for key in value:
        if not key or len(key) > MAX_ID_CHARS:
            raise InvalidEvent(f"{name}: keys must be 1-{MAX_ID_CHARS} characters")
        try:
            _int(value, key, maximum=maximum)
        except InvalidEvent as exc:
            raise InvalidEvent(f"{name}.{exc}") from None
    return dict(value)


def decode_activity(raw: bytes | None, key: bytes | None = None) -> Activity:
    obj = parse_object(raw)
    level = obj.get("level")
    if type(level) is not str or level not in Level.__members__.values():
        raise InvalidEvent(f"level: must be one of {', '.join(Level)}")
    activity = Activity(
        activity_id=config_id(obj, "activity_id", key),
        shop_id=_id(obj, "shop_id"),
        level=Level(level),
        rate_bp=_int(obj, "rate_bp", maximum=MAX_BP),
        start_ms=_int(obj, "start_ms"),
        end_ms=_optional_int(obj, "end_ms", None),
        group_leader_rate_bp=_optional_int(obj, "group_leader_rate_bp", None, maximum=MAX_BP),
        item_ids=_optional_id_set(obj, "item_ids"),
        category_ids=_optional_id_set(obj, "category_ids"),
        promoter_ids=_optional_id_set(obj, "promoter_ids"),
        base_ids=_optional_id_set(obj, "base_ids"),
        group_leader_id=_optional_id(obj, "group_leader_id"),
    )
    needs = {Level.TARGETED_PRODUCT: ("item_ids", "promoter_ids"),
             Level.TARGETED_BASE: ("base_ids",), Level.GROUP_LEADER: ("group_leader_id",),
             Level.GENERIC_PRODUCT: ("item_ids",), Level.SHOP_CATEGORY: ("category_ids",)}
    for name in needs.get(activity.level, ()):
        if getattr(activity, name) is None:
            raise InvalidEvent(f"{name}: required for level {activity.level}")
    if activity.end_ms is not None and activity.end_ms <= activity.start_ms:
        raise InvalidEvent("end_ms: must be after start_ms")
    return activity


def _optional_id_set(obj: Mapping[str, Any], name: str) -> frozenset[str] | None:
    return None if obj.get(name) is None else frozenset(_id_list(obj, name))


PARTICIPANTS = frozenset(p.value for p in Participant)


def decode_policy(raw: bytes | None, key: bytes | None = None) -> Policy:
    """A split policy (SPEC 6); its key is `default` or a channel id."""
    if key is None:
        raise InvalidEvent("policy: the message key must be `default` or a channel id")
    obj = parse_object(raw)
    pools = {}
    for name in ("product", "group_leader"):
        entries = _list(obj, name, limit=20)
        if not entries:
            raise InvalidEvent(f"{name}: required, a list of participants")
        shares = []
        for index, entry in enumerate(entries):
            where = f"{name}[{index}]"
            if type(entry) is not dict:
                raise InvalidEvent(f"{where}: must be an object")
            participant = entry.get("participant")
            if participant not in PARTICIPANTS:
                raise InvalidEvent(f"{where}.participant: must be one of "
                                   f"{', '.join(sorted(PARTICIPANTS))}")
            of = entry.get("of", "pool")
            if of not in ("pool", "amount"):
                raise InvalidEvent(f"{where}.of: must be pool or amount")
            try:
                share_bp = _optional_int(entry, "share_bp", 0, maximum=MAX_BP)
                rest = _bool(entry, "rest")
            except InvalidEvent as exc:
                raise InvalidEvent(f"{where}.{exc}") from None
            shares.append(Share(participant, share_bp, of == "amount", rest))
        pools[name] = tuple(shares)
    policy = Policy(pools["product"], pools["group_leader"])
    problem = validate_policy(policy)
    if problem:
        raise InvalidEvent(problem)
    return policy


SINK_STREAMS = frozenset({"attributions", "commissions", "settlements", "order_status",
                          "alerts"})
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_SINK_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


@dataclass(frozen=True, slots=True)
class Retry:
    max_attempts: int = 10
    base_ms: int = 200
    max_ms: int = 30_000
    max_age_s: int = 86_400


@dataclass(frozen=True, slots=True)
class Sink:
    """A notification sink (SPEC 9); delivery itself is the sinks agents' concern."""

    sink_id: str
    kind: str
    streams: frozenset[str]
    url: str | None = None
    topic: str | None = None
    secret: str | None = None
    filters: tuple[tuple[str, str], ...] = ()
    rate_per_s: float = 100.0
    burst: int = 100
    max_in_flight: int = 8
    timeout_ms: int = 5000
    retry: Retry = Retry()
    enabled: bool = True
    paused: bool = False


def decode_sink(raw: bytes | None, key: bytes | None = None) -> Sink:
    obj = parse_object(raw)
    ident = config_id(obj, "sink_id", key) if obj.get("sink_id") is not None else (
        _key_text(key))
    if not _SINK_ID.match(ident):
        raise InvalidEvent("sink_id: 1-100 letters, digits, '.', '_' or '-' (it names a topic)")
    kind = obj.get("kind")
    if kind not in ("webhook", "kafka"):
        raise InvalidEvent("kind: must be webhook or kafka")
    url = topic = None
    if kind == "webhook":
        url = obj.get("url")
        if type(url) is not str or len(url) > MAX_URL_CHARS or not url.startswith(
                ("http://", "https://")) or any(c in url for c in " \r\n\t"):
            raise InvalidEvent("url: a webhook needs an http(s) URL")
    else:
        topic = obj.get("topic")
        if type(topic) is not str or not _TOPIC_NAME.match(topic):
            raise InvalidEvent("topic: a kafka sink needs a topic name (letters, digits, ._-)")
    streams = _id_list(obj, "streams")
    if not streams or not set(streams) <= SINK_STREAMS:
        raise InvalidEvent(f"streams: one or more of {', '.join(sorted(SINK_STREAMS))}")
    filters = obj.get("filters") or {}
    if type(filters) is not dict or not set(filters) <= {"channel_id", "shop_id",
                                                          "promoter_id", "type"}:
        raise InvalidEvent("filters: an object of channel_id, shop_id, promoter_id, type")
    for name in filters:
        _optional_id(filters, name)
    secret = obj.get("secret")
    if secret is not None and (type(secret) is not str or not 1 <= len(secret) <= 256):
        raise InvalidEvent("secret: must be a string of 1-256 characters")
    rate = obj.get("rate_per_s", 100)
    if type(rate) not in (int, float) or not 0 < rate <= 1_000_000:
        raise InvalidEvent("rate_per_s: must be a number above 0 and at most 1000000")
    retry_obj = obj.get("retry") or {}
    if type(retry_obj) is not dict:
        raise InvalidEvent("retry: must be an object")
    try:
        retry = Retry(
            max_attempts=_optional_int(retry_obj, "max_attempts", 10, minimum=1, maximum=1000),
            base_ms=_optional_int(retry_obj, "base_ms", 200, minimum=1, maximum=3_600_000),
            max_ms=_optional_int(retry_obj, "max_ms", 30_000, minimum=1, maximum=86_400_000),
            max_age_s=_optional_int(retry_obj, "max_age_s", 86_400, minimum=1,
                                    maximum=30 * 86_400))
    except InvalidEvent as exc:
        raise InvalidEvent(f"retry.{exc}") from None
    return Sink(
        sink_id=ident, kind=kind, streams=frozenset(streams), url=url, topic=topic,
        secret=secret, filters=tuple(sorted(filters.items())), rate_per_s=float(rate),
        burst=_optional_int(obj, "burst", 100, minimum=1, maximum=1_000_000),
        max_in_flight=_optional_int(obj, "max_in_flight", 8, minimum=1, maximum=1000),
        timeout_ms=_optional_int(obj, "timeout_ms", 5000, minimum=1, maximum=120_000),
        retry=retry,
        enabled=obj.get("enabled", True) is not False,
        paused=_bool(obj, "paused"),
    )


def encode_sink(sink: Sink) -> bytes:
    return orjson.dumps({
        "sink_id": sink.sink_id, "kind": sink.kind, "url": sink.url, "topic": sink.topic,
        "secret": sink.secret, "streams": sorted(sink.streams), "filters": dict(sink.filters),
        "rate_per_s": sink.rate_per_s, "burst": sink.burst, "max_in_flight": sink.max_in_flight,
        "timeout_ms": sink.timeout_ms, "retry": asdict(sink.retry), "enabled": sink.enabled,
        "paused": sink.paused,
    })


def _key_text(key: bytes | None) -> str:
    if key is None:
        raise InvalidEvent("sink_id: required (or the message key)")
    return key.decode("utf-8", "replace")


# -- outputs -----------------------------------------------------------------


def encode_attribution(attribution: Attribution) -> bytes:
    return orjson.dumps(attribution)


def decode_attributed(raw: bytes | None) -> tuple[str, Attributed]:
    """The order id and what billing needs of an attribution record."""
    obj = parse_object(raw)
    kind = obj.get("type")
    if kind not in ("cps", "self_operated", "none"):
        raise InvalidEvent("type: must be cps, self_operated or none")
    return _id(obj, "order_id"), Attributed(
        type=kind, channel_id=_optional_id(obj, "channel_id"),
        promoter_id=_optional_id(obj, "promoter_id"),
        group_leader_id=_optional_id(obj, "group_leader_id"),
        base_id=_optional_id(obj, "base_id"), buyer_id=_id(obj, "buyer_id"))


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
        event_id=_id(obj, "event_id"), order_id=_id(obj, "order_id"),
        account_id=_id(obj, "account_id"), participant=_id(obj, "participant"), state=state,
        amount=amount, due_ms=_optional_int(obj, "due_ms", None), ts_ms=_int(obj, "ts_ms"),
        cause=_text(obj, "cause", 256), seq=_int(obj, "seq"))


def _text(obj: Mapping[str, Any], name: str, limit: int) -> str:
    value = obj.get(name)
    if type(value) is not str or not value or len(value) > limit:
        raise InvalidEvent(f"{name}: must be a string of 1-{limit} characters")
    return value


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
