"""Wire formats: every bad message is an InvalidEvent with a reason, never a crash."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.allocation import Operator
from app.domain.model import DAY_MS
from app.records.configuration import decode_channel, decode_operator, decode_shop
from app.records.fields import DEAD_LETTER_VALUE_BYTES, InvalidEvent
from app.records.inputs import (
    decode_click,
    decode_order,
    decode_rekeyed_click,
    decode_rekeyed_order,
)
from app.records.internal import decode_live, decode_promoter_order, decode_spool_progress
from app.records.operations import decode_operation_record, decode_rekeyed_profile
from app.records.outputs import dead_letter, decode_attribution

CLICK = {"click_id": "c-1", "ts_ms": 1763700000000, "buyer_id": "u-1", "shop_id": "s-1",
         "item_id": "i-1", "channel_id": "kuaishou", "promoter_id": "p-1", "activity_id": None}
ORDER = {"order_id": "o-1", "event": "paid", "ts_ms": 1763700000000, "buyer_id": "u-1",
         "shop_id": "s-1", "channel_id": None, "fanstype": "kuaishou", "tracking": None,
         "items": [{"item_id": "i-1", "category_id": "cat-1", "quantity": 1, "amount": 12900}],
         "refund": None}


def with_(base: dict, **changes) -> bytes:
    value = {**base, **changes}
    return orjson.dumps({k: v for k, v in value.items() if v is not ...})


def test_valid_click_and_extra_fields_ignored():
    click = decode_click(with_(CLICK, unknown_field={"x": 1}))
    assert (click.click_id, click.buyer_id, click.item_id, click.activity_id) == (
        "c-1", "u-1", "i-1", None)


def test_valid_order():
    order = decode_order(with_(ORDER))
    assert order.items[0].amount == 12900 and order.fanstype == "kuaishou"
    assert decode_order(with_(ORDER, event="completed", items=...)).items == ()


@pytest.mark.parametrize(("raw", "reason"), [
    (None, "empty message"),
    (b"", "not JSON"),
    (b"{not json", "not JSON"),
    (b"\xff\xfe\x00garbage", "not JSON"),
    (b"[1,2,3]", "expected a JSON object"),
    (b'"text"', "expected a JSON object"),
    (b"[" * 5000 + b"]" * 5000, "not JSON"),
    (with_(CLICK, ts_ms=...)[:-1] + b',"ts_ms":123456789012345678901234567890}',
     "ts_ms: must be an integer"),
    (with_(CLICK, click_id=...), "click_id: required"),
    (with_(CLICK, click_id=""), "click_id: must be 1-128"),
    (with_(CLICK, click_id="x" * 129), "click_id: must be 1-128"),
    (with_(CLICK, buyer_id="x" * 1_000_000), "buyer_id: must be 1-128"),
    (with_(CLICK, buyer_id=12), "buyer_id: must be a string"),
    (with_(CLICK, ts_ms="1763700000000"), "ts_ms: must be an integer"),
    (with_(CLICK, ts_ms=1.5), "ts_ms: must be an integer"),
    (with_(CLICK, ts_ms=True), "ts_ms: must be an integer"),
    (with_(CLICK, ts_ms=-1), "ts_ms: must be between"),
    (with_(CLICK, ts_ms=2**60), "ts_ms: must be between"),
    (with_(CLICK, item_id=["i"]), "item_id: must be a string"),
])
def test_bad_clicks(raw, reason):
    with pytest.raises(InvalidEvent, match=reason):
        decode_click(raw)


@pytest.mark.parametrize(("changes", "reason"), [
    ({"event": "shipped"}, "event: must be one of"),
    ({"event": None}, "event: must be one of"),
    ({"items": ...}, "items: required"),
    ({"items": []}, "items: required"),
    ({"items": {"item_id": "i"}}, "items: must be a list"),
    ({"items": ["i-1"]}, r"items\[0\]: must be an object"),
    ({"items": [{"item_id": "i", "amount": -1}]}, r"items\[0\].amount: must be between"),
    ({"items": [{"item_id": "i", "amount": 1.0}]}, r"items\[0\].amount: must be an integer"),
    ({"items": [{"item_id": "i", "amount": 2**63}]}, r"items\[0\].amount: must be between"),
    ({"items": [{"item_id": "i"}]}, r"items\[0\].amount: required"),
    ({"items": [{"item_id": "i", "amount": 1, "quantity": 0}]}, r"quantity: must be between"),
    ({"items": [{"item_id": "i", "amount": 1}, {"item_id": "i", "amount": 2}]}, "appears twice"),
    ({"items": [{"item_id": "i", "amount": 1}] * 1001}, "more than 1000"),
    ({"event": "refunded", "refund": None}, "refund: required object"),
    ({"event": "refunded", "refund": {"refund_id": "r", "item_id": "i"}}, "refund.amount"),
    ({"event": "refund_started", "refund": {"item_id": "i"}}, "refund.refund_id: required"),
    ({"tracking": "t" * 3000}, "tracking: must be a string of at most"),
    ({"tracking": 5}, "tracking: must be a string"),
    ({"fanstype": ""}, "fanstype: must be 1-128"),
    ({"coupon_ids": "a-1"}, "coupon_ids: must be a list"),
    ({"coupon_ids": ["a-1", 7]}, r"coupon_ids\[1\]: must be a string of 1-512"),
    ({"coupon_ids": [""]}, r"coupon_ids\[0\]: must be a string"),
    ({"coupon_ids": ["x" * 513]}, r"coupon_ids\[0\]: must be a string"),
    ({"coupon_ids": [f"a-{n}" for n in range(101)]}, "coupon_ids: more than 100"),
    ({"order_id": None}, "order_id: required"),
])
def test_bad_orders(changes, reason):
    with pytest.raises(InvalidEvent, match=reason):
        decode_order(with_(ORDER, **changes))


def test_coupon_ids_on_created_and_paid_only():
    paid = decode_order(with_(ORDER, coupon_ids=["plan@1:u-1", "c-9", "plan@1:u-1"]))
    assert paid.coupon_ids == ("c-9", "plan@1:u-1")
    assert decode_order(with_(ORDER, coupon_ids=...)).coupon_ids == ()
    assert decode_order(with_(ORDER, coupon_ids=None)).coupon_ids == ()
    completed = decode_order(with_(ORDER, event="completed", items=..., coupon_ids=["c-9"]))
    assert completed.coupon_ids == ()


def test_refund_events():
    refunded = decode_order(with_(ORDER, event="refunded", items=...,
                                  refund={"refund_id": "r-1", "item_id": "i-1", "amount": 5000}))
    assert refunded.refund.amount == 5000 and refunded.items == ()
    cancelled = decode_order(with_(ORDER, event="refund_cancelled",
                                   refund={"refund_id": "r-1", "item_id": "i-1"}))
    assert cancelled.refund.amount == 0


def test_shops_and_channels():
    shop = decode_shop(b'{"shop_id": "s1", "cps_joined_ms": 5, "authorized_channels": ["a"]}',
                       b"s1")
    assert shop.authorized_channels == frozenset({"a"}) and shop.cps_exited_ms is None
    channel = decode_channel(b'{"channel_id": "k", "site_wide": true}', None)
    assert channel.site_wide and channel.attribution_window_ms == 7 * DAY_MS
    assert channel.settle_days == 15 and not channel.self_purchase


@pytest.mark.parametrize(("decoder", "raw", "key", "reason"), [
    (decode_shop, b'{"shop_id": "s1"}', b"s2", "differs from the message key"),
    (decode_shop, b'{"shop_id": "s1", "authorized_channels": "a"}', None, "must be a list"),
    (decode_shop, b'{"shop_id": "s1", "cps_joined_ms": "yesterday"}', None, "integer"),
    (decode_channel, b'{"channel_id": "k", "site_wide": "yes"}', None, "true or false"),
    (decode_channel, b'{"channel_id": "k", "webhook_url": "ftp://x"}', None, "http"),
    (decode_channel, b'{"channel_id": "k", "self_operated_rate_bp": {"*": 20000}}', None,
     "between"),
    (decode_channel, b'{"channel_id": "k", "settle_days_by_participant": {"promoter": "7"}}',
     None, "integer"),
])
def test_bad_configuration(decoder, raw, key, reason):
    with pytest.raises(InvalidEvent, match=reason):
        decoder(raw, key)


OPERATOR = {"operator_id": "op1", "shop_id": "s1", "qualifications": ["refunds", "vip"],
            "daily_cap": 20, "total_cap": 300, "active": False}


def test_operators():
    assert decode_operator(orjson.dumps(OPERATOR), b"op1") == Operator(
        "op1", "s1", frozenset({"refunds", "vip"}), 20, 300, active=False)
    # No qualifications and no `active`: qualified for plans requiring nothing, and active.
    bare = {"operator_id": "op1", "shop_id": "s1", "daily_cap": 20, "total_cap": 300}
    for extra in ({}, {"qualifications": [], "active": None}, {"qualifications": None}):
        assert decode_operator(orjson.dumps({**bare, **extra}), None) == Operator(
            "op1", "s1", frozenset(), 20, 300, active=True)
    # Caps of 0 are an operator who takes no more buyers (today, or at all).
    assert decode_operator(orjson.dumps({**OPERATOR, "daily_cap": 0, "total_cap": 0}),
                           None).daily_cap == 0


@pytest.mark.parametrize(("change", "key", "field"), [
    ({"operator_id": None}, None, "operator_id"),
    ({"operator_id": ""}, None, "operator_id"),
    ({"operator_id": 7}, None, "operator_id"),
    ({}, b"op2", "operator_id"),                       # differs from the message key
    ({"shop_id": None}, None, "shop_id"),
    ({"shop_id": "x" * 129}, None, "shop_id"),
    ({"qualifications": "vip"}, None, "qualifications"),
    ({"qualifications": ["vip", ""]}, None, "qualifications[1]"),
    ({"qualifications": [["vip"]]}, None, "qualifications[0]"),
    ({"daily_cap": None}, None, "daily_cap"),
    ({"daily_cap": -1}, None, "daily_cap"),
    ({"daily_cap": "20"}, None, "daily_cap"),
    ({"daily_cap": 2.5}, None, "daily_cap"),
    ({"daily_cap": True}, None, "daily_cap"),
    ({"total_cap": None}, None, "total_cap"),
    ({"total_cap": -300}, None, "total_cap"),
    ({"total_cap": 2**53}, None, "total_cap"),
    ({"active": "yes"}, None, "active"),
    ({"active": 1}, None, "active"),
])
def test_bad_operators_name_the_field(change, key, field):
    with pytest.raises(InvalidEvent) as refused:
        decode_operator(orjson.dumps({**OPERATOR, **change}), key)
    assert str(refused.value).startswith(f"{field}: ")


def test_dead_letter_keeps_the_original_text_cut_at_64_kib():
    record = orjson.loads(dead_letter(topic="cps.clicks", partition=3, offset=42, key=b"k",
                                      value=b"\xff" + b"x" * 100_000, error="bad", ts_ms=7))
    assert set(record) == {"topic", "partition", "offset", "key", "value", "error", "ts_ms"}
    assert (record["topic"], record["partition"], record["offset"], record["key"]) == (
        "cps.clicks", 3, 42, "k")
    assert record["value"].startswith("\ufffdxxx")
    assert len(record["value"].encode()) <= DEAD_LETTER_VALUE_BYTES + 2
    null = orjson.loads(dead_letter(topic="t", partition=0, offset=0, key=None, value=None,
                                    error="e", ts_ms=1))
    assert null["key"] is None and null["value"] is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=6),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: orjson.dumps(v)),
                 st.fixed_dictionaries({}, optional={**{k: json_values for k in ORDER},
                                                     **{k: json_values for k in CLICK},
                                                     **{k: json_values for k in OPERATOR}})
                 .map(orjson.dumps)))
def test_decoders_raise_only_invalid_event(raw):
    for decoder in (decode_click, decode_order, decode_shop, decode_channel, decode_operator):
        with contextlib.suppress(InvalidEvent):
            decoder(raw) if decoder in (decode_click, decode_order) else decoder(raw, None)


ATTRIBUTION_KEYS = ("order_id", "ts_ms", "attributed_ms", "buyer_id", "shop_id", "type", "mode",
                    "reason", "click_id", "channel_id", "promoter_id", "group_leader_id",
                    "base_id", "delayed", "click_ts_ms", "activity_id", "item_id")
RECORD_KEYS = ("record_id", "plan_id", "occurrence_id", "buyer_id", "shop_id", "variant",
               "kind", "ref", "ts_ms")
MEMBER_KEYS = ("shop_id", "buyer_id", "level", "tags", "follower", "birthday", "tz")
ids = st.sampled_from(["u1", "s1", "o1", "p1", "s1/u1", "l1/u1", "cps", "member", "list"])
loose_values = ids | json_values
members = st.fixed_dictionaries({}, optional={k: loose_values for k in MEMBER_KEYS})
profile_wrappers = st.fixed_dictionaries({}, optional={
    "kind": loose_values, "key": loose_values,
    "value": st.one_of(loose_values, members.map(lambda m: orjson.dumps(m).decode()))})


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), json_values.map(orjson.dumps),
                 st.fixed_dictionaries({}, optional={
                     k: loose_values for k in (*ATTRIBUTION_KEYS, *RECORD_KEYS, *CLICK, *ORDER,
                                               "stream", "event", "facts")}).map(orjson.dumps),
                 profile_wrappers.map(orjson.dumps)),
       st.one_of(st.none(), st.binary(max_size=12), ids.map(str.encode)))
def test_decoders_of_what_the_engine_reads_back_raise_only_invalid_event(raw, key):
    decoders = (decode_attribution, decode_promoter_order, decode_rekeyed_profile,
                decode_rekeyed_click, lambda k, r: decode_rekeyed_order(k, r, "buyer_id"),
                lambda k, r: decode_rekeyed_order(k, r, "order_id"),
                lambda _k, r: decode_operation_record(r), lambda _k, r: decode_live(r),
                lambda _k, r: decode_spool_progress(r))
    for decoder in decoders:
        with contextlib.suppress(InvalidEvent):
            decoder(key, raw)
