"""Garbage on the topics the engine writes for itself and reads back (the internal re-keyed
topics, cps.attributions, cps.operation_records): every bad record is dead-lettered once,
with a reason naming the field at fault, and changes nothing else (SPEC 3).

The record shapes below are written out from the SPEC (sections 4, 5 and 13) and from
what the engine sends, not taken from the decoders under test. Each case starts from a
valid record and breaks one thing: the whole value, one field, or the message key.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tables.attribution
import tables.billing
import tables.operations
import tables.order_center
from agents.attribution import AttributionRules, AttributionTopics, Attributor
from agents.billing import Billing, BillingTopics
from agents.order_center import OrderCenter
from agents.plans import Operations, PlanRules, PlanTopics
from app.domain.model import Channel
from app.domain.pools import DEFAULT_POLICY
from app.domain.schedule import Schedule
from app.domain.tokens import Signer
from app.engine.memory import MemoryTables
from app.engine.partitioning import partition_for
from app.kafka.topics import Topics
from app.sinks.fanout import SinkRegistry
from tests.handlers.contexts import new_context

TOPICS = Topics("cps.")
T = 1_767_225_600_000
PARTITIONS = 4
MAX_SAFE_INT = 2**53 - 1
# What a dead letter says when the value as a whole is unreadable (no field to name).
WHOLE_VALUE = re.compile(r"^(not JSON|expected a JSON object|empty message)")

# -- what each field may hold ----------------------------------------------------------

ID, OPTIONAL_ID, TIME, OPTIONAL_TIME, FLAG = "id", "optional id", "time", "optional time", "flag"
MISSING = object()  # the field left out

# orjson writes 64-bit integers at most, and infinities as null: neither is garbage here.
numbers = st.one_of(st.integers(-(2**63), 2**63 - 1),
                  st.floats(allow_nan=False, allow_infinity=False))
containers = st.one_of(st.lists(st.integers(-9, 9), max_size=3),
                       st.dictionaries(st.text(max_size=5), st.integers(-9, 9), max_size=3))
huge_strings = st.one_of(st.text(min_size=129, max_size=400), st.just("x" * 1_000_000))


def bad_values(kind: Any) -> st.SearchStrategy:
    """Values a field of `kind` must refuse (MISSING and None only where it is required)."""
    absent = st.sampled_from([MISSING, None])
    if kind in (ID, OPTIONAL_ID):
        wrong = st.one_of(numbers, st.booleans(), containers, st.just(""), huge_strings)
        return st.one_of(absent, wrong) if kind == ID else wrong
    if kind in (TIME, OPTIONAL_TIME):
        wrong = st.one_of(st.text(max_size=20), st.floats(allow_nan=False, allow_infinity=False),
                          st.booleans(), containers, st.integers(-(2**63), -1),
                          st.integers(MAX_SAFE_INT + 1, 2**63 - 1), huge_strings)
        return st.one_of(absent, wrong) if kind == TIME else wrong
    if kind == FLAG:
        return st.one_of(numbers, st.text(max_size=10), containers)
    if isinstance(kind, Choice):
        wrong = st.one_of(st.text(max_size=20).filter(lambda text: text not in kind.values),
                          numbers, st.booleans(), containers, huge_strings)
        return wrong if kind.optional else st.one_of(absent, wrong)
    return kind.bad


@dataclass(frozen=True)
class Choice:
    values: tuple[str, ...]
    optional: bool = False


@dataclass(frozen=True)
class Special:
    """A field with its own rules: the values it must refuse."""

    bad: st.SearchStrategy


TYPES = ("cps", "self_operated", "none")
MODES = ("tracking", "last_click", "site_wide", "self_purchase", "fanstype")
REASONS = ("shop_not_cps", "no_click", "window_expired", "self_purchase_not_allowed",
           "channel_not_authorized")
ORDER_EVENTS = ("created", "paid", "refund_started", "refunded", "refund_cancelled",
                "completed", "closed")
RECORD_KINDS = ("sent", "granted", "held_out", "capped", "deferred", "missed", "failed",
                "used", "replenished", "converted")

CLICK_FIELDS = {"click_id": ID, "ts_ms": TIME, "buyer_id": ID, "shop_id": ID,
                "item_id": OPTIONAL_ID, "channel_id": ID, "promoter_id": ID,
                "activity_id": OPTIONAL_ID, "group_leader_id": OPTIONAL_ID,
                "base_id": OPTIONAL_ID}
LINES = Special(st.one_of(st.sampled_from([MISSING, None, [], "i1", {"item_id": "i1"}]),
                          numbers, st.lists(st.integers(-9, 9), min_size=1, max_size=2),
                          st.just([{"item_id": "i1", "amount": -5}]),
                          st.just([{"item_id": 7, "amount": 5}])))
# A paid event: its lines count, its refund does not (SPEC 4).
ORDER_FIELDS = {"order_id": ID, "event": Choice(ORDER_EVENTS), "ts_ms": TIME, "buyer_id": ID,
                "shop_id": ID, "channel_id": OPTIONAL_ID, "fanstype": OPTIONAL_ID,
                "tracking": Special(st.one_of(numbers, containers,
                                              st.text(min_size=2049, max_size=2100))),
                "items": LINES}
ATTRIBUTION_FIELDS = {"order_id": ID, "ts_ms": TIME, "attributed_ms": TIME, "buyer_id": ID,
                      "shop_id": ID, "type": Choice(TYPES), "mode": Choice(MODES, True),
                      "reason": Choice(REASONS, True), "click_id": OPTIONAL_ID,
                      "channel_id": OPTIONAL_ID, "promoter_id": OPTIONAL_ID,
                      "group_leader_id": OPTIONAL_ID, "base_id": OPTIONAL_ID, "delayed": FLAG}
PROMOTER_ORDER_FIELDS = {"order_id": ID, "ts_ms": TIME, "buyer_id": ID, "shop_id": ID,
                         "channel_id": OPTIONAL_ID, "promoter_id": ID, "type": Choice(TYPES),
                         "mode": Choice(MODES, True), "click_id": OPTIONAL_ID}
MEMBER_FIELDS = {"shop_id": ID, "buyer_id": ID,
                 "level": OPTIONAL_TIME,  # an optional non-negative integer, like a time
                 "tags": Special(st.one_of(numbers, st.text(min_size=1, max_size=5),
                                           st.just([5]), st.just([""]),
                                           st.just(["t"] * 101))),
                 "follower": FLAG,
                 "birthday": Special(st.one_of(st.sampled_from(["13-01", "1-1", "01-32",
                                                                 "0101", "ab-cd"]),
                                               numbers, containers)),
                 "tz": Special(st.one_of(st.sampled_from(["Mars/Base", ""]), numbers,
                                         containers, huge_strings))}
LONG_ID = Special(st.one_of(st.sampled_from([MISSING, None, ""]), numbers, containers,
                            st.text(min_size=601, max_size=700)))
RECORD_FIELDS = {"record_id": LONG_ID, "plan_id": ID, "occurrence_id": LONG_ID,
                 "buyer_id": ID, "shop_id": ID, "variant": OPTIONAL_ID,
                 "kind": Choice(RECORD_KINDS), "ts_ms": TIME,
                 "ref": Special(st.one_of(numbers, containers,
                                          st.text(min_size=257, max_size=400),
                                          st.just("x" * 1_000_000)))}

CLICK = {"click_id": "c1", "ts_ms": T, "buyer_id": "u1", "shop_id": "s1", "item_id": "i1",
         "channel_id": "kuaishou", "promoter_id": "p1", "activity_id": None,
         "group_leader_id": None, "base_id": None}
ORDER = {"order_id": "o1", "event": "paid", "ts_ms": T, "buyer_id": "u1", "shop_id": "s1",
         "channel_id": None, "fanstype": "kuaishou", "tracking": None,
         "items": [{"item_id": "i1", "category_id": "cat", "quantity": 1, "amount": 12900}],
         "refund": None}
ATTRIBUTION = {"order_id": "o1", "ts_ms": T, "attributed_ms": T + 50, "buyer_id": "u1",
               "shop_id": "s1", "type": "cps", "mode": "last_click", "reason": None,
               "click_id": "c1", "channel_id": "kuaishou", "promoter_id": "p1",
               "group_leader_id": None, "base_id": None, "delayed": False}
PROMOTER_ORDER = {name: ATTRIBUTION[name] for name in PROMOTER_ORDER_FIELDS}
MEMBER = {"shop_id": "s1", "buyer_id": "u1", "level": 2, "tags": ["vip"], "follower": True,
          "birthday": "04-30", "tz": "Asia/Shanghai"}
RECORD = {"record_id": "p1@1:u1:granted", "plan_id": "p1", "occurrence_id": "p1@1",
          "buyer_id": "u1", "shop_id": "s1", "variant": None, "kind": "granted", "ref": None,
          "ts_ms": T}


def wrapped(kind: str, key: str, value: dict | None) -> dict:
    """A cps.members or cps.lists record re-keyed by buyer, as the plans pipeline sends it."""
    return {"kind": kind, "key": key, "value": None if value is None else orjson.dumps(value)
            .decode()}


# -- the handlers, each on its own in-memory partition --------------------------------------


class World:
    """Every pipeline that reads these topics, its tables in memory, on one partition."""

    def __init__(self, partition: int) -> None:
        self.ctx = new_context(now_ms=T, partition=partition, partitions=PARTITIONS)
        catalog = SimpleNamespace(plans={}, sinks={}, channels={}, records_read=0,
                                  shop=lambda _shop_id: None, channel=Channel.unconfigured,
                                  activities=lambda _shop_id: [],
                                  policy=lambda _channel_id: DEFAULT_POLICY)
        sinks = SinkRegistry(catalog, "cps.", TOPICS.live)
        barrier = SimpleNamespace(request=lambda ctx: 1)
        self.tables = [tables.attribution.define(MemoryTables()),
                       tables.billing.define(MemoryTables()),
                       tables.order_center.define(MemoryTables()),
                       tables.operations.define(MemoryTables())]
        attribution, billing, order_center, operations = self.tables
        self.attributor = Attributor(
            topics=AttributionTopics(TOPICS.clicks, TOPICS.clicks_by_buyer,
                                     TOPICS.orders_by_buyer, TOPICS.attributions),
            tables=attribution, rules=AttributionRules(30_000, 30 * 86_400_000, 100),
            catalog=catalog, signer=Signer("secret"), catch_up=lambda _t, _hook: barrier,
            published=lambda ctx, result: None)
        self.center = OrderCenter(tables=order_center,
                                  by_promoter_topic=TOPICS.orders_by_promoter)
        self.billing = Billing(
            topics=BillingTopics(TOPICS.commissions, TOPICS.settlements), tables=billing,
            pricing=catalog, sinks=sinks, order_center=self.center,
            schedule=Schedule("0 * * * *"))
        self.operations = Operations(
            topics=PlanTopics(TOPICS.profiles_by_buyer, TOPICS.plan_actions,
                              TOPICS.operation_records, TOPICS.sinks_deadletter,
                              inputs=(TOPICS.members,)),
            tables=operations, rules=PlanRules("UTC", 3_600_000, 4), catalog=catalog,
            sinks=sinks, share=lambda: 1.0, catch_up=lambda _t, _hook: barrier,
            after_handled=lambda _t, _hook: barrier)

    def handler(self, topic: str) -> Callable[[Any, bytes | None, bytes | None], None]:
        return {
            TOPICS.clicks_by_buyer: self.attributor.on_rekeyed_click,
            TOPICS.orders_by_buyer: self.attributor.on_rekeyed_order,
            TOPICS.orders_by_order: self.billing.on_rekeyed_order,
            TOPICS.attributions: self.billing.on_attribution,
            TOPICS.orders_by_promoter: self.center.on_promoter_order,
            TOPICS.profiles_by_buyer: self.operations.on_rekeyed_profile,
            TOPICS.operation_records: self.operations.on_record,
        }[topic]

    def rows_written(self) -> int:
        return sum(len(rows) for group in self.tables for each in fields(group)
                   for rows in getattr(group, each.name).rows.values())


def deliver(topic: str, key: bytes | None, value: bytes | None, *,
            partition: int | None = None) -> World:
    """`value` handled by its topic's handler in the partition its key puts it in."""
    if partition is None:
        partition = 0 if key is None else partition_for(key, PARTITIONS)
    world = World(partition)
    world.ctx.deliver(world.handler(topic), topic, key, value)
    return world


# -- the cases: a valid record, and how it is broken --------------------------------------


@dataclass(frozen=True)
class Topic:
    name: str
    record: dict
    key: bytes
    fields: dict[str, Any]
    # Where a field's reason starts: the field itself, or inside the re-keyed profile.
    path: str = ""

    def __repr__(self) -> str:
        return self.name


REKEYED = [
    Topic(TOPICS.clicks_by_buyer, CLICK, b"u1", CLICK_FIELDS),
    Topic(TOPICS.orders_by_buyer, ORDER, b"u1", ORDER_FIELDS),
    Topic(TOPICS.orders_by_order, ORDER, b"o1", ORDER_FIELDS),
    Topic(TOPICS.attributions, ATTRIBUTION, b"o1", ATTRIBUTION_FIELDS),
    Topic(TOPICS.orders_by_promoter, PROMOTER_ORDER, b"p1", PROMOTER_ORDER_FIELDS),
    Topic(TOPICS.operation_records, RECORD, b"u1", RECORD_FIELDS),
]
PROFILE_KEYS = Special(st.one_of(st.sampled_from([MISSING, None, "", "s1-u1", "/u1", "s1/",
                                                  "s1/u1/x" * 40]),
                                 numbers, containers))
PROFILE_VALUES = Special(st.one_of(numbers, st.booleans(), containers,
                                   st.sampled_from(["not json", "[1]", '"text"', "7"])))
WRAPPER_FIELDS = {"kind": Choice(("member", "list")), "key": PROFILE_KEYS,
                  "value": PROFILE_VALUES}
PROFILES = [
    Topic(TOPICS.profiles_by_buyer, wrapped("member", "s1/u1", MEMBER), b"u1", WRAPPER_FIELDS,
          path="value."),
    Topic(TOPICS.profiles_by_buyer, wrapped("list", "l1/u1", {}), b"u1",
          {"key": PROFILE_KEYS, "value": PROFILE_VALUES}, path="value."),
]
EVERY_TOPIC = REKEYED + PROFILES


@dataclass(frozen=True)
class Garbage:
    topic: Topic
    key: bytes | None
    value: bytes | None
    field: str | None  # the field the reason must name; None: the value as a whole
    partition: int | None = None


def with_field(record: dict, name: str, value: Any) -> dict:
    changed = dict(record)
    if value is MISSING:
        del changed[name]
    else:
        changed[name] = value
    return changed


@st.composite
def broken_field(draw, topic: Topic) -> Garbage:
    name = draw(st.sampled_from(sorted(topic.fields)))
    record = with_field(topic.record, name, draw(bad_values(topic.fields[name])))
    return Garbage(topic, topic.key, orjson.dumps(record), topic.path + name)


@st.composite
def broken_profile(draw) -> Garbage:
    """A member profile re-keyed by buyer whose wrapped profile has one bad field."""
    name = draw(st.sampled_from(sorted(MEMBER_FIELDS)))
    member = with_field(MEMBER, name, draw(bad_values(MEMBER_FIELDS[name])))
    return Garbage(PROFILES[0], b"u1", orjson.dumps(wrapped("member", "s1/u1", member)),
                   "value.value." + name)


@st.composite
def broken_key(draw, topic: Topic) -> Garbage:
    """The record under another key: in the partition that key puts it in."""
    key = draw(st.one_of(st.none(), st.binary(max_size=12), st.sampled_from(
        [b"", b"u2", b"o2", b"p2", b"u1 ", b"U1", topic.key + b"\x00"])))
    if key == topic.key:
        key = topic.key + b"x"
    partition = None
    if topic.name == TOPICS.operation_records:
        # Operation records are checked by partition: a key that puts the record where its
        # buyer is not (a null key lands anywhere: here, on another partition).
        own = partition_for(topic.key, PARTITIONS)
        partition = (own + 1) % PARTITIONS if key is None else partition_for(key, PARTITIONS)
        if partition == own:
            partition = (own + 1) % PARTITIONS
    return Garbage(topic, key, orjson.dumps(topic.record), "key", partition)


def unreadable(topic: Topic) -> st.SearchStrategy:
    values = st.one_of(
        st.none(), st.binary(max_size=40).filter(_not_a_json_object),
        st.recursive(st.none() | st.booleans() | numbers | st.text(max_size=10),
                     lambda inner: st.lists(inner, max_size=3), max_leaves=6)
        .map(orjson.dumps))
    return values.map(lambda value: Garbage(topic, topic.key, value, None))


def _not_a_json_object(raw: bytes) -> bool:
    try:
        return type(orjson.loads(raw)) is not dict
    except orjson.JSONDecodeError:
        return True


garbage = st.one_of(
    st.sampled_from(EVERY_TOPIC).flatmap(unreadable),
    st.sampled_from(EVERY_TOPIC).flatmap(broken_field),
    st.sampled_from(EVERY_TOPIC).flatmap(broken_key),
    broken_profile(),
)


@settings(max_examples=600, deadline=None)
@given(garbage)
def test_garbage_is_dead_lettered_once_with_the_fields_reason_and_changes_nothing(bad):
    world = deliver(bad.topic.name, bad.key, bad.value, partition=bad.partition)

    assert len(world.ctx.dead_letters) == 1, (bad, world.ctx.dead_letters)
    reason = world.ctx.dead_letters[0]
    if bad.field is None:
        assert WHOLE_VALUE.match(reason), reason
    else:
        assert re.match(re.escape(bad.field) + r"[:.\[]", reason), (bad.field, reason)
    assert world.ctx.sent == [] and world.ctx.forwarded == []
    assert world.rows_written() == 0


@pytest.mark.parametrize("topic", EVERY_TOPIC, ids=lambda topic: topic.name)
def test_each_valid_record_is_taken(topic):
    """The cases above break records the handlers take: without the break, no dead letter."""
    world = deliver(topic.name, topic.key, orjson.dumps(topic.record))

    assert world.ctx.dead_letters == []
    assert world.rows_written() > 0


def test_a_rekeyed_member_profile_with_null_value_deletes_it():
    world = World(partition_for(b"u1", PARTITIONS))
    profiles = world.handler(TOPICS.profiles_by_buyer)
    world.ctx.deliver(profiles, TOPICS.profiles_by_buyer, b"u1",
                      orjson.dumps(wrapped("member", "s1/u1", MEMBER)))
    world.ctx.deliver(profiles, TOPICS.profiles_by_buyer, b"u1",
                      orjson.dumps(wrapped("member", "s1/u1", None)))

    assert world.ctx.dead_letters == [] and world.rows_written() == 0


@pytest.mark.parametrize(("key", "value", "reason"), [
    (b"u1", {**wrapped("member", "s1/u1", MEMBER), "kind": "profile"},
     "value.kind: must be one of member, list"),
    (b"u1", wrapped("member", "s1-u1", MEMBER), "value.key: 's1-u1' is not"),
    (b"u1", {**wrapped("member", "s1/u1", MEMBER), "key": None}, "value.key: required string"),
    (b"u2", wrapped("member", "s1/u2", MEMBER), "value.key: differs from the record's"),
    (b"u1", {**wrapped("member", "s1/u1", MEMBER), "value": MEMBER},
     "value.value: must be a string or null"),
    (b"u1", {**wrapped("list", "l1/u1", {}), "value": "{not json"}, "value.value: not JSON"),
    (b"u1", wrapped("member", "s1/u1", {**MEMBER, "tz": "Mars/Base"}),
     "value.value.tz: 'Mars/Base' is not an IANA time zone"),
    (b"u2", wrapped("member", "s1/u1", MEMBER), "key: must be the record's buyer_id"),
])
def test_a_bad_rekeyed_profile_names_the_field_from_the_message(key, value, reason):
    world = deliver(TOPICS.profiles_by_buyer, key, orjson.dumps(value))

    assert len(world.ctx.dead_letters) == 1 and world.ctx.dead_letters[0].startswith(reason), (
        world.ctx.dead_letters)
