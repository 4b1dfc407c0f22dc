"""Configuration records (shops, channels, activities, policies, sinks, operators): decoded
and validated, or `InvalidEvent` naming the field; sinks also encoded (the admin API writes them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import orjson

from app.domain.allocation import Operator
from app.domain.model import (
    DEFAULT_SETTLE_DAYS,
    DEFAULT_WINDOW_MS,
    Channel,
    Shop,
)
from app.domain.pools import Participant, Policy, Share, validate_policy
from app.domain.rates import Activity, Level
from app.domain.sinks import STREAMS, Retry, Sink
from app.records.fields import (
    MAX_BP,
    MAX_ID_CHARS,
    MAX_LIST_ITEMS,
    MAX_URL_CHARS,
    InvalidEvent,
    array,
    boolean,
    id_list,
    integer,
    optional_id,
    optional_integer,
    parse_object,
    required_id,
)


def config_id(obj: Mapping[str, Any], id_field: str, key: bytes | None) -> str:
    """The id of a config object, which must agree with the message key when there is one."""
    ident = required_id(obj, id_field)
    if key is not None and key.decode("utf-8", "replace") != ident:
        raise InvalidEvent(f"{id_field}: {ident!r} differs from the message key")
    return ident


def decode_shop(raw: bytes | None, key: bytes | None = None) -> Shop:
    obj = parse_object(raw)
    return Shop(
        shop_id=config_id(obj, "shop_id", key),
        cps_joined_ms=optional_integer(obj, "cps_joined_ms", None),
        cps_exited_ms=optional_integer(obj, "cps_exited_ms", None),
        authorized_channels=frozenset(id_list(obj, "authorized_channels")),
    )


def decode_operator(raw: bytes | None, key: bytes | None = None) -> Operator:
    """An operator (SPEC 14): assign plans give the shop's buyers to its operators."""
    obj = parse_object(raw)
    return Operator(
        operator_id=config_id(obj, "operator_id", key),
        shop_id=required_id(obj, "shop_id"),
        qualifications=frozenset(id_list(obj, "qualifications")),
        daily_cap=integer(obj, "daily_cap"),
        total_cap=integer(obj, "total_cap"),
        active=boolean(obj, "active", default=True),
    )


def decode_channel(raw: bytes | None, key: bytes | None = None) -> Channel:
    obj = parse_object(raw)
    webhook = obj.get("webhook_url")
    if webhook is not None and (type(webhook) is not str or len(webhook) > MAX_URL_CHARS
                                or not webhook.startswith(("http://", "https://"))):
        raise InvalidEvent("webhook_url: must be an http(s) URL")
    return Channel(
        channel_id=config_id(obj, "channel_id", key),
        attribution_window_ms=optional_integer(obj, "attribution_window_ms", DEFAULT_WINDOW_MS),
        site_wide=boolean(obj, "site_wide"),
        self_purchase=boolean(obj, "self_purchase"),
        settle_days=optional_integer(obj, "settle_days", DEFAULT_SETTLE_DAYS, maximum=3650),
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
            integer(value, key, maximum=maximum)
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
        shop_id=required_id(obj, "shop_id"),
        level=Level(level),
        rate_bp=integer(obj, "rate_bp", maximum=MAX_BP),
        start_ms=integer(obj, "start_ms"),
        end_ms=optional_integer(obj, "end_ms", None),
        group_leader_rate_bp=optional_integer(obj, "group_leader_rate_bp", None, maximum=MAX_BP),
        item_ids=_optional_id_set(obj, "item_ids"),
        category_ids=_optional_id_set(obj, "category_ids"),
        promoter_ids=_optional_id_set(obj, "promoter_ids"),
        base_ids=_optional_id_set(obj, "base_ids"),
        group_leader_id=optional_id(obj, "group_leader_id"),
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
    return None if obj.get(name) is None else frozenset(id_list(obj, name))


PARTICIPANTS = frozenset(p.value for p in Participant)


def decode_policy(raw: bytes | None, key: bytes | None = None) -> Policy:
    """A split policy (SPEC 6); its key is `default` or a channel id."""
    if key is None:
        raise InvalidEvent("policy: the message key must be `default` or a channel id")
    obj = parse_object(raw)
    pools = {}
    for name in ("product", "group_leader"):
        entries = array(obj, name, limit=20)
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
                share_bp = optional_integer(entry, "share_bp", 0, maximum=MAX_BP)
                rest = boolean(entry, "rest")
            except InvalidEvent as exc:
                raise InvalidEvent(f"{where}.{exc}") from None
            shares.append(Share(participant, share_bp, of == "amount", rest))
        pools[name] = tuple(shares)
    policy = Policy(pools["product"], pools["group_leader"])
    problem = validate_policy(policy)
    if problem:
        raise InvalidEvent(problem)
    return policy


SINK_STREAMS = frozenset(STREAMS)
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_SINK_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")




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
    streams = id_list(obj, "streams")
    if not streams or not set(streams) <= SINK_STREAMS:
        raise InvalidEvent(f"streams: one or more of {', '.join(sorted(SINK_STREAMS))}")
    filters = obj.get("filters") or {}
    if type(filters) is not dict or not set(filters) <= {"channel_id", "shop_id",
                                                          "promoter_id", "type"}:
        raise InvalidEvent("filters: an object of channel_id, shop_id, promoter_id, type")
    for name in filters:
        optional_id(filters, name)
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
            max_attempts=optional_integer(retry_obj, "max_attempts", 10, minimum=1, maximum=1000),
            base_ms=optional_integer(retry_obj, "base_ms", 200, minimum=1, maximum=3_600_000),
            max_ms=optional_integer(retry_obj, "max_ms", 30_000, minimum=1, maximum=86_400_000),
            max_age_s=optional_integer(retry_obj, "max_age_s", 86_400, minimum=1,
                                    maximum=30 * 86_400))
    except InvalidEvent as exc:
        raise InvalidEvent(f"retry.{exc}") from None
    return Sink(
        sink_id=ident, kind=kind, streams=frozenset(streams), url=url, topic=topic,
        secret=secret, filters=tuple(sorted(filters.items())), rate_per_s=float(rate),
        burst=optional_integer(obj, "burst", 100, minimum=1, maximum=1_000_000),
        max_in_flight=optional_integer(obj, "max_in_flight", 8, minimum=1, maximum=1000),
        timeout_ms=optional_integer(obj, "timeout_ms", 5000, minimum=1, maximum=120_000),
        retry=retry,
        enabled=obj.get("enabled", True) is not False,
        paused=boolean(obj, "paused"),
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
