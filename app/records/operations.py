"""Wire formats of operation plans (SPEC 13): member profiles, list entries and plans in;
plan actions and operation records out (and read back)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from app.domain.audience import Member
from app.domain.periods import PeriodError, time_zone
from app.domain.plans import Plan, PlanError, parse_plan
from app.records.fields import (
    MAX_ID_CHARS,
    MAX_SAFE_INT,
    InvalidEvent,
    boolean,
    choice,
    id_list,
    integer,
    keyed_by,
    optional_id,
    optional_integer,
    parse_object,
    required_id,
    text,
    within,
)

RECORD_KINDS = ("sent", "granted", "held_out", "capped", "deferred", "missed", "failed",
                "used", "replenished", "converted")
MAX_TAGS = 100
# A record's ref is an order id, a sink's name in "no sink ... to deliver it", or a delivery
# error cut at 200 characters.
MAX_REF_CHARS = 256
# Record and occurrence ids are built of other ids (plan, fire time or event, buyer, kind).
MAX_COMPOSED_ID_CHARS = 600


@dataclass(frozen=True, slots=True)
class OperationRecord:
    record_id: str
    plan_id: str
    occurrence_id: str
    buyer_id: str
    shop_id: str
    variant: str | None
    kind: str
    ref: str | None
    ts_ms: int

    def encode(self) -> bytes:
        return orjson.dumps(self)


def split_key(key: bytes | None, first: str) -> tuple[str, str]:
    """`"<first>/<buyer_id>"` keys of cps.members and cps.lists."""
    if key is None:
        raise InvalidEvent(f"key: required, \"<{first}>/<buyer_id>\"")
    try:
        text = key.decode()
    except UnicodeDecodeError:
        raise InvalidEvent("key: not UTF-8") from None
    head, slash, buyer = text.partition("/")
    if not slash or not head or not buyer or max(len(head), len(buyer)) > MAX_ID_CHARS:
        raise InvalidEvent(f"key: {text[:80]!r} is not \"<{first}>/<buyer_id>\"")
    return head, buyer


def decode_member(key: bytes | None, raw: bytes | None) -> tuple[str, str, Member | None]:
    """(shop_id, buyer_id, profile); a null value (no profile) deletes it."""
    shop_id, buyer_id = split_key(key, "shop_id")
    if raw is None:
        return shop_id, buyer_id, None
    named, member = _profile(parse_object(raw))
    _same_buyer((shop_id, buyer_id), named)
    return shop_id, buyer_id, member


def _profile(obj: Mapping[str, Any]) -> tuple[tuple[str, str], Member]:
    """The (shop_id, buyer_id) a profile names, and the profile."""
    named = required_id(obj, "shop_id"), required_id(obj, "buyer_id")
    tags = id_list(obj, "tags", limit=MAX_TAGS)
    birthday = obj.get("birthday")
    if birthday is not None and not _month_day(birthday):
        raise InvalidEvent("birthday: must be \"MM-DD\" or null")
    tz = optional_id(obj, "tz")
    if tz is not None:
        try:
            time_zone(tz)
        except PeriodError:
            raise InvalidEvent(f"tz: {tz!r} is not an IANA time zone") from None
    level = optional_integer(obj, "level", 0, maximum=MAX_SAFE_INT)
    return named, Member(level=level or 0, tags=frozenset(tags),
                         follower=boolean(obj, "follower"), birthday=birthday, tz=tz)


def _same_buyer(keyed: tuple[str, str], named: tuple[str, str]) -> None:
    if keyed != named:
        raise InvalidEvent("key: differs from the record's shop_id/buyer_id")


def encode_member(member: Member) -> bytes:
    return orjson.dumps([member.level, sorted(member.tags), member.follower, member.birthday,
                         member.tz])


def decode_stored_member(raw: bytes) -> Member:
    level, tags, follower, birthday, tz = orjson.loads(raw)
    return Member(level, frozenset(tags), follower, birthday, tz)


def decode_list_entry(key: bytes | None, raw: bytes | None) -> tuple[str, str, bool]:
    """(list_id, buyer_id, on the list); a null value takes the buyer off."""
    list_id, buyer_id = split_key(key, "list_id")
    if raw is not None:
        parse_object(raw)
    return list_id, buyer_id, raw is not None


# What the plans pipeline re-keys by buyer: the kind of record, and what its key names first.
PROFILE_KINDS = {"member": "shop_id", "list": "list_id"}


def decode_rekeyed_profile(key: bytes | None, raw: bytes | None
                           ) -> tuple[str, tuple[str, str, Member | bool | None]]:
    """A cps.members or cps.lists record re-keyed by buyer (internal.profiles-by-buyer):
    its kind ("member", "list") and what `decode_member` or `decode_list_entry` gives.

    The value wraps the original record as `{"kind", "key", "value"}`; as the wrapper has
    its own `key` and `value`, reasons name its fields from the message: `value.kind`,
    `value.key`, `value.value.shop_id` (`key` alone is the message's key, the buyer).
    """
    wrapper = parse_object(raw)
    original_key, original = wrapper.get("key"), wrapper.get("value")
    with within("value"):
        kind = choice(wrapper, "kind", tuple(PROFILE_KINDS))
        if type(original_key) is not str:
            raise InvalidEvent("key: required string" if original_key is None
                               else "key: must be a string")
        first, buyer_id = split_key(original_key.encode(), PROFILE_KINDS[kind])
        if original is not None and type(original) is not str:
            raise InvalidEvent("value: must be a string or null")
    keyed_by(key, buyer_id, "buyer_id")
    if original is None:  # the profile deleted, or the buyer taken off the list
        return kind, (first, buyer_id, None if kind == "member" else False)
    with within("value.value", whole=True):
        obj = parse_object(original.encode())
    if kind == "list":
        return kind, (first, buyer_id, True)
    with within("value.value"):
        named, member = _profile(obj)
    with within("value"):
        _same_buyer((first, buyer_id), named)
    return kind, (first, buyer_id, member)


def decode_plan(raw: bytes | None, key: bytes | None = None) -> Plan:
    obj = parse_object(raw)
    try:
        plan = parse_plan(obj)
    except PlanError as exc:
        raise InvalidEvent(str(exc)) from None
    if key is not None and key.decode("utf-8", "replace") != plan.plan_id:
        raise InvalidEvent(f"plan_id: {plan.plan_id!r} differs from the message key")
    return plan


def encode_action(*, action_id: str, plan: Plan, occurrence_id: str, buyer_id: str,
                  variant: str | None, ts_ms: int) -> dict[str, Any]:
    action = plan.action_for(variant)
    return {"action_id": action_id, "plan_id": plan.plan_id, "occurrence_id": occurrence_id,
            "buyer_id": buyer_id, "shop_id": plan.shop_id, "variant": variant,
            "kind": action.kind, "sink": action.sink, "payload": action.payload,
            "ts_ms": ts_ms}


def record_for_action(action: Mapping[str, Any], kind: str, record_id: str, ts_ms: int,
                      ref: str | None = None) -> OperationRecord:
    """The operation record of what became of a plan action (sent, granted, failed)."""
    return OperationRecord(record_id=record_id, plan_id=action["plan_id"],
                           occurrence_id=action["occurrence_id"], buyer_id=action["buyer_id"],
                           shop_id=action["shop_id"], variant=action.get("variant"), kind=kind,
                           ref=ref, ts_ms=ts_ms)


def decode_operation_record(raw: bytes | None) -> OperationRecord:
    obj = parse_object(raw)
    ref = obj.get("ref")
    if ref is not None and (type(ref) is not str or len(ref) > MAX_REF_CHARS):
        raise InvalidEvent(f"ref: must be a string of at most {MAX_REF_CHARS} characters "
                           "or null")
    return OperationRecord(
        record_id=text(obj, "record_id", MAX_COMPOSED_ID_CHARS),
        plan_id=required_id(obj, "plan_id"),
        occurrence_id=text(obj, "occurrence_id", MAX_COMPOSED_ID_CHARS),
        buyer_id=required_id(obj, "buyer_id"),
        shop_id=required_id(obj, "shop_id"), variant=optional_id(obj, "variant"),
        kind=choice(obj, "kind", RECORD_KINDS), ref=ref, ts_ms=integer(obj, "ts_ms"))


def _month_day(text: Any) -> bool:
    if type(text) is not str or len(text) != 5 or text[2] != "-":
        return False
    month, day = text[:2], text[3:]
    return (month.isdigit() and day.isdigit() and 1 <= int(month) <= 12
            and 1 <= int(day) <= 31)
