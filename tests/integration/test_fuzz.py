"""Garbage on every input topic and HTTP endpoint of a running worker (hypothesis-made).

Every malformed message must land in the dead-letter topic (each one: the
dead letters' offsets are exactly the malformed messages' offsets), every
malformed request must get a 4xx, the worker must stay up, and the valid
events fed between the garbage must be attributed as if it were not there.

`make test` throws 10,000 messages and 2,000 requests; `make chaos`
(CPS_CHAOS=full) five times as many.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.parse
from collections import Counter

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tokens import ADMIN_TOKEN, VIEW_TOKEN

from app.domain.model import DAY_MS
from app.kafka.connection import started
from app.sinks.subscriptions import STREAMS

FULL = os.environ.get("CPS_CHAOS") == "full"
pytestmark = pytest.mark.timeout(1800 if FULL else 300)
MESSAGES = 50_000 if FULL else 10_000
REQUESTS = 10_000 if FULL else 2_000
MEGABYTE_FIELDS_PER_TOPIC = 2

NOW = int(time.time() * 1000)

# One valid message per input topic; the garbage is made from them.
VALID: dict[str, tuple[str, dict]] = {
    "clicks": ("fz-buyer", {"click_id": "fz-c", "ts_ms": NOW, "buyer_id": "fz-buyer",
                            "shop_id": "fz-shop", "channel_id": "fz-ch", "promoter_id": "fz-p"}),
    "orders": ("fz-o", {"order_id": "fz-o", "event": "created", "ts_ms": NOW,
                        "buyer_id": "fz-buyer", "shop_id": "fz-shop",
                        "items": [{"item_id": "i1", "category_id": "c1", "quantity": 1,
                                   "amount": 100}]}),
    "shops": ("fz-shop", {"shop_id": "fz-shop", "cps_joined_ms": NOW, "authorized_channels": []}),
    "channels": ("fz-ch", {"channel_id": "fz-ch", "attribution_window_ms": DAY_MS,
                           "site_wide": False, "settle_days": 15}),
    "activities": ("fz-a", {"activity_id": "fz-a", "shop_id": "fz-shop", "level": "shop_generic",
                            "rate_bp": 100, "start_ms": NOW}),
    "policy": ("fz-ch", {"product": [{"participant": "promoter", "rest": True}],
                         "group_leader": [{"participant": "group_leader", "rest": True}]}),
    "sinks": ("fz-sink", {"kind": "webhook", "url": "http://127.0.0.1:9/x",
                          "streams": ["attributions"]}),
}
# Fields whose absence makes the message invalid, and fields whose every non-null value of
# another type does, per topic (by the type they must have).
REQUIRED = {
    "clicks": ("click_id", "ts_ms", "buyer_id", "shop_id", "channel_id", "promoter_id"),
    "orders": ("order_id", "event", "ts_ms", "buyer_id", "shop_id", "items"),
    "shops": ("shop_id",), "channels": ("channel_id",),
    "activities": ("activity_id", "shop_id", "level", "rate_bp", "start_ms"),
    "policy": ("product", "group_leader"), "sinks": ("kind", "streams"),
}
TYPED = {
    "clicks": {"click_id": str, "ts_ms": int, "buyer_id": str, "shop_id": str,
               "channel_id": str, "promoter_id": str},
    "orders": {"order_id": str, "event": str, "ts_ms": int, "buyer_id": str, "shop_id": str,
               "items": list},
    "shops": {"shop_id": str, "cps_joined_ms": int, "authorized_channels": list},
    "channels": {"channel_id": str, "attribution_window_ms": int, "site_wide": bool,
                 "settle_days": int},
    "activities": {"activity_id": str, "shop_id": str, "level": str, "rate_bp": int,
                   "start_ms": int},
    "policy": {"product": list, "group_leader": list},
    "sinks": {"kind": str, "url": str, "streams": list},
}

int64 = st.integers(-(2**63), 2**63 - 1)  # what orjson writes; bigger ones: "huge_number"
finite = st.floats(allow_nan=False, allow_infinity=False)  # orjson writes inf as null
scalars = st.none() | st.booleans() | int64 | finite | st.text(max_size=30)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=10), inner, max_size=4), max_leaves=6)
# Longer than an id may be (128), up to past the dead letter's 64 KiB cut.
too_long = st.tuples(st.text(min_size=1, max_size=4), st.integers(129, 70_000)).map(
    lambda piece_length: (piece_length[0] * piece_length[1])[:piece_length[1]])


def _other_type(kind: type) -> st.SearchStrategy:
    """Values that are not of `kind`, nor null, nor (for ids) a valid id."""
    pick = {
        str: int64 | finite | st.booleans()
        | st.lists(scalars, max_size=3) | st.just("") | too_long,
        int: st.text(max_size=20) | finite | st.booleans()
        | st.integers(2**53, 2**63 - 1) | st.integers(-(2**63), -1) | st.lists(scalars, max_size=3),
        bool: int64 | st.text(max_size=10) | st.lists(scalars, max_size=2),
        list: int64 | st.text(max_size=10) | st.dictionaries(
            st.text(max_size=5), scalars, max_size=3) | st.booleans(),
    }[kind]
    return pick.filter(lambda v: v is not None)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# The admin API takes a configuration object's id from the path when the body has none.
ID_FIELDS = {"shop_id", "channel_id", "activity_id"}


@st.composite
def malformed(draw, topic: str, *, admin: bool = False) -> tuple[str, bytes | None]:
    """(key, value) of one message of `topic` that the engine must dead-letter.

    With `admin`, a body the admin API must refuse for that kind.
    """
    key, valid = VALID[topic]
    required = [name for name in REQUIRED[topic] if not (admin and name in ID_FIELDS)]
    raw = orjson.dumps(valid)
    how = draw(st.sampled_from(["binary", "bad_utf8", "truncated", "not_object", "missing",
                                "wrong_type", "huge_number", "deep", "null"]))
    if how == "null" and topic not in ("clicks", "orders"):
        how = "missing"  # a null value deletes a configuration entry: valid there
    if how == "missing" and not required:
        how = "wrong_type"
    if how == "binary":
        return key, b"\xff" + draw(st.binary(max_size=300))
    if how == "bad_utf8":
        at = draw(st.integers(1, len(raw) - 1))
        return key, raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])) + (
            raw[at:])
    if how == "truncated":
        return key, raw[:draw(st.integers(0, len(raw) - 1))]
    if how == "not_object":
        return key, orjson.dumps(draw(json_values.filter(lambda v: not isinstance(v, dict))))
    if how == "null":
        return key, None
    field = draw(st.sampled_from(required if how == "missing" else sorted(TYPED[topic])))
    changed = dict(valid)
    if how == "missing":
        del changed[field]
        return key, orjson.dumps(changed)
    if how == "deep":
        depth = draw(st.integers(10, 5000))
        changed[field] = "DEEP"
        return key, orjson.dumps(changed).replace(b'"DEEP"', _nested(depth))
    if how == "huge_number":
        changed[field] = "HUGE"
        number = draw(st.sampled_from([b"1e400", b"-1e400", b"18446744073709551616",
                                       b"-99999999999999999999999", b"1.5", b"9007199254740992"]))
        return key, orjson.dumps(changed).replace(b'"HUGE"', number)
    changed[field] = draw(_other_type(TYPED[topic][field]))
    return key, orjson.dumps(changed, option=orjson.OPT_NON_STR_KEYS)


def collect(strategy: st.SearchStrategy, count: int) -> list:
    """`count` examples of `strategy`, the same on every run."""
    found: list = []

    @settings(max_examples=count, database=None, derandomize=True, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def gather(example) -> None:
        found.append(example)

    gather()
    return found


def test_the_garbage_is_invalid_for_the_decoders():
    from app.records.configuration import (
        decode_activity,
        decode_channel,
        decode_policy,
        decode_shop,
        decode_sink,
    )
    from app.records.fields import InvalidEvent
    from app.records.inputs import decode_click, decode_order

    decoders = {"clicks": lambda raw, key: decode_click(raw),
                "orders": lambda raw, key: decode_order(raw), "shops": decode_shop,
                "channels": decode_channel, "activities": decode_activity,
                "policy": decode_policy, "sinks": decode_sink}
    for topic, (key, valid) in VALID.items():
        decoders[topic](orjson.dumps(valid), key.encode())
        for key, raw in collect(malformed(topic), 100):
            try:
                decoders[topic](raw, key.encode())
            except InvalidEvent:
                continue
            raise AssertionError(f"{topic}: accepted {raw[:300]!r}")


def test_garbage_on_every_input_topic_and_endpoint_is_refused(kafka, make_worker, events):
    worker = make_worker().launch()  # starts while the garbage is made
    per_topic = -(-MESSAGES // len(VALID))
    stream: list[tuple[str, str, bytes | None, bool]] = []  # topic, key, value, malformed
    for topic in VALID:
        garbage = collect(malformed(topic), per_topic - MEGABYTE_FIELDS_PER_TOPIC)
        key, valid = VALID[topic]
        for n in range(MEGABYTE_FIELDS_PER_TOPIC):  # 1 MB in a required field
            field = REQUIRED[topic][n % len(REQUIRED[topic])]
            garbage.append((key, orjson.dumps({**valid, field: "x" * 1_000_000})))
        stream += [(topic, key, value, True) for key, value in garbage]
    # Valid events among the garbage: a click and an order per buyer.
    buyers = [f"fuzz-b{i}" for i in range(50)]
    valid_events = [("clicks", b, orjson.dumps(events.click(f"c-{b}", b, NOW - 1000,
                                                            promoter=f"p-{b}")), False)
                    for b in buyers]
    valid_events += [("orders", f"o-{b}", orjson.dumps(events.order(f"o-{b}", b, NOW)), False)
                     for b in buyers]
    step = len(stream) // len(valid_events)
    for n, event in enumerate(valid_events):
        stream.insert(n * (step + 1), event)
    assert sum(1 for *_, bad in stream if bad) >= MESSAGES
    worker.wait_ready()
    kafka.produce("shops", [("s1", {"shop_id": "s1", "cps_joined_ms": NOW - DAY_MS})])
    time.sleep(1.0)

    offsets = asyncio.run(_produce_all(kafka, stream))
    wanted = {(kafka.prefix + topic, offset)
              for (topic, _, _, bad), offset in zip(stream, offsets, strict=True) if bad}
    dead = kafka.read("deadletter", timeout=180, settle=3.0,
                      until=lambda rs: len(rs) >= len(wanted))
    letters = {(r["value"]["topic"], r["value"]["offset"]): r["value"] for r in dead}
    assert len(dead) == len(letters) == len(wanted), (len(dead), len(wanted), worker.tail())
    assert set(letters) == wanted
    assert all(letter["error"] for letter in letters.values())
    assert max(len(r["raw"]) for r in dead) < 200 * 1024  # originals cut at 64 KiB
    reasons = Counter(letter["error"].split(":")[0] for letter in letters.values())
    assert len(reasons) > 20, reasons

    results = kafka.read("attributions", timeout=60, settle=2.0,
                         until=lambda rs: len(rs) >= len(buyers))
    assert sorted((r["key"], r["value"]["click_id"]) for r in results) == sorted(
        (f"o-{b}", f"c-{b}") for b in buyers)
    assert worker.process.poll() is None and worker.get("/health")[0] == 200

    # The HTTP endpoints: each malformed request gets a 4xx and records nothing.
    status, link = worker.admin("POST", "/admin/links", LINK)
    assert status == 201, link
    requests = collect(bad_request(link["token"]), REQUESTS)
    answers = Counter()
    for method, path, body, token in requests:
        status, _headers, _body = worker.request(method, path, body, token=token)
        assert 400 <= status < 500, (method, path[:200], body and body[:200], status)
        answers[status] += 1
    assert len(answers) >= 4, answers
    clicks = kafka.read("clicks", timeout=30, settle=1.0,
                        until=lambda rs: len(rs) >= sum(t == "clicks" for t, *_ in stream))
    assert len(clicks) == sum(t == "clicks" for t, *_ in stream)  # no click from a bad link
    assert worker.process.poll() is None and worker.get("/health")[0] == 200


async def _produce_all(kafka, stream: list) -> list[int]:
    """Produce in order; the offset of each record."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all",
                                enable_idempotence=True, max_request_size=2 * 1024 * 1024)
    async with started(producer):
        futures = [await producer.send(kafka.prefix + topic, value, key=key.encode())
                   for topic, key, value, _ in stream]
        return [(await future).offset for future in futures]


LINK = {"channel_id": "fz-ch", "promoter_id": "fz-p", "shop_id": "fz-shop", "item_id": "i1",
        "url": "https://shop.example/item/1"}
CONFIG_KINDS = ("shops", "channels", "activities", "policy", "sinks")


@st.composite
def bad_request(draw, token: str) -> tuple[str, str, bytes | None, str | None]:
    """(method, path, body, token) of a request every endpoint must refuse with a 4xx."""
    how = draw(st.sampled_from(["link_junk", "link_tampered", "admin_body", "admin_token",
                                "admin_kind", "link_body", "subscribe", "views"]))
    if how == "link_junk":
        junk = draw(st.text(min_size=1, max_size=300) | too_long)
        return "GET", "/c/" + urllib.parse.quote(junk, safe=""), None, None
    if how == "link_tampered":
        at = draw(st.integers(0, len(token) - 1))
        swapped = draw(st.sampled_from("AbZ09-_.").filter(lambda c: c != token[at]))
        cut = draw(st.integers(1, len(token)))
        tampered = draw(st.sampled_from([token[:at] + swapped + token[at + 1:], token[:cut - 1],
                                         token + swapped]))
        return "GET", "/c/" + urllib.parse.quote(tampered, safe=""), None, None
    if how == "admin_body":
        kind = draw(st.sampled_from(CONFIG_KINDS))
        key, body = draw(malformed(kind, admin=True))
        return "PUT", f"/admin/{kind}/{key}", body, ADMIN_TOKEN
    if how == "admin_token":
        kind = draw(st.sampled_from(CONFIG_KINDS))
        key, valid = VALID[kind]
        wrong = draw(st.none() | st.text(alphabet="abcdef0123456789", max_size=40).filter(
            lambda t: t != ADMIN_TOKEN))
        method = draw(st.sampled_from(["PUT", "DELETE"]))
        return method, f"/admin/{kind}/{key}", orjson.dumps(valid), wrong
    if how == "admin_kind":
        kind = draw(st.text(alphabet="abcxyz", min_size=1, max_size=12).filter(
            lambda k: k not in CONFIG_KINDS and k not in ("links", "engine")))
        return "PUT", f"/admin/{kind}/x", orjson.dumps({"x": 1}), ADMIN_TOKEN
    if how == "link_body":
        field = draw(st.sampled_from(sorted(LINK)))
        body = {**LINK, field: draw(_other_type(str))}
        raw = draw(st.sampled_from([orjson.dumps(body), orjson.dumps(body)[:-1], b"\xff{}"]))
        return "POST", "/admin/links", raw, ADMIN_TOKEN
    if how == "subscribe":
        # Hypothesis also draws the project's own string constants: a valid stream's name
        # would open a live stream that never ends.
        stream = draw(st.text(max_size=30).filter(lambda t: t not in STREAMS))
        return "GET", "/subscribe?stream=" + urllib.parse.quote(stream, safe=""), None, VIEW_TOKEN
    junk = urllib.parse.quote(draw(st.text(min_size=1, max_size=200)), safe="")
    return "GET", draw(st.sampled_from([
        "/clicks", f"/clicks?shop_id={junk}",                       # no buyer: 400
        f"/orders/no-such-order-{junk}",                            # 404
        f"/promoters/p1/orders?cursor={junk}",                      # not a cursor: 400
    ])), None, VIEW_TOKEN
