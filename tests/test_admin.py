"""Admin rules: the token check, body validation with the field at fault, links, plans
that can never fire again."""

from __future__ import annotations

import orjson
import pytest

from app.admin import (
    AdminError,
    authorize,
    config_record,
    issue_link,
    kinds,
    parse_body,
    stamped_plan,
)
from app.domain.tokens import LINK, Signer
from app.records.configuration import decode_sink, encode_sink
from app.topics import Topics
from app.web.admin import refuse_never_firing

KINDS = kinds(Topics("cps."))


@pytest.mark.parametrize(("header", "status"), [
    (None, 401), ("", 401), ("Basic abc", 401), ("Bearer", 401), ("Bearer wrong", 403),
    ("Bearer secret-tokenX", 403), ("bearer secret-token", 401),
])
def test_token_check(header, status):
    with pytest.raises(AdminError) as info:
        authorize(header, "secret-token")
    assert info.value.status == status


def test_right_token_passes():
    authorize("Bearer secret-token", "secret-token")


@pytest.mark.parametrize(("kind", "ident", "body", "field"), [
    ("shops", "s1", {"shop_id": "s2"}, "shop_id"),
    ("shops", "s1", {"cps_joined_ms": "yesterday"}, "cps_joined_ms"),
    ("shops", "s1", {"authorized_channels": "kuaishou"}, "authorized_channels"),
    ("channels", "k", {"site_wide": "yes"}, "site_wide"),
    ("channels", "k", {"self_operated_rate_bp": {"*": 10_001}}, "self_operated_rate_bp.*"),
    ("activities", "a1", {"shop_id": "s1", "level": "galactic", "rate_bp": 1, "start_ms": 0},
     "level"),
    ("activities", "a1", {"shop_id": "s1", "level": "generic_product", "rate_bp": 1,
                          "start_ms": 0}, "item_ids"),
    ("activities", "a1", {"shop_id": "s1", "level": "shop_generic", "rate_bp": -5,
                          "start_ms": 0}, "rate_bp"),
    ("policy", "default", {"product": [{"participant": "promoter", "share_bp": 10}],
                           "group_leader": [{"participant": "group_leader", "rest": True}]},
     "product"),
    ("policy", "default", {"product": [{"participant": "martian", "rest": True}],
                           "group_leader": [{"participant": "group_leader", "rest": True}]},
     "product[0].participant"),
    ("sinks", "hook", {"kind": "webhook", "url": "ftp://x", "streams": ["commissions"]}, "url"),
    ("sinks", "hook", {"kind": "webhook", "url": "https://x.example.com",
                       "streams": ["gossip"]}, "streams"),
    ("sinks", "hook", {"kind": "kafka", "topic": "bad topic", "streams": ["commissions"]},
     "topic"),
])
def test_invalid_bodies_name_the_field(kind, ident, body, field):
    with pytest.raises(AdminError) as info:
        config_record(KINDS[kind], ident, body)
    assert (info.value.status, info.value.field) == (400, field)
    assert str(info.value).startswith(field)


def test_valid_bodies_get_the_id_of_the_path():
    record = orjson.loads(config_record(KINDS["shops"], "s1", {"cps_joined_ms": 5}))
    assert record == {"cps_joined_ms": 5, "shop_id": "s1"}
    policy = {"product": [{"participant": "promoter", "rest": True}],
              "group_leader": [{"participant": "group_leader", "rest": True}]}
    assert orjson.loads(config_record(KINDS["policy"], "kuaishou", policy)) == policy


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b'"x"', b"\xff"])
def test_bodies_must_be_json_objects(raw):
    with pytest.raises(AdminError) as info:
        parse_body(raw)
    assert info.value.status == 400


def test_a_body_nested_deeper_than_orjson_writes_is_refused():
    # Found by the fuzz test: orjson reads 1024 levels but writes only 255 (it was a 500).
    body = parse_body(b'{"kind": "webhook", "url": ' + b"[" * 600 + b"]" * 600 + b"}")
    with pytest.raises(AdminError) as info:
        config_record(KINDS["sinks"], "s", body)
    assert (info.value.status, str(info.value)) == (400, "body: nested too deeply")


def test_sink_round_trip():
    sink = decode_sink(orjson.dumps({"kind": "webhook", "url": "https://x.example.com/h",
                                     "streams": ["commissions"], "rate_per_s": 5}), b"hook")
    assert sink.sink_id == "hook" and sink.rate_per_s == 5.0 and not sink.paused
    assert decode_sink(encode_sink(sink), b"hook") == sink


def test_issue_link():
    signer = Signer("s")
    body = {"channel_id": "k", "promoter_id": "p", "shop_id": "s1", "item_id": "i",
            "url": "https://shop.example.com/i", "ttl_s": 60}
    link = issue_link(signer, body, now_ms=1000, default_ttl_s=10, public_url="http://h:1")
    assert link["expires_ms"] == 61_000 and link["link"] == f"/c/{link['token']}"
    assert link["url"] == f"http://h:1/c/{link['token']}"
    assert signer.verify(LINK, link["token"], now_ms=1000)["p"] == "p"
    for bad, field in (({**body, "ttl_s": 0}, "ttl_s"), ({**body, "url": "http://a b"}, "url"),
                       ({**body, "promoter_id": None}, "promoter_id")):
        with pytest.raises(AdminError) as info:
            issue_link(signer, bad, now_ms=1000, default_ttl_s=10, public_url="http://h:1")
        assert info.value.field == field


NOW_MS = 1_780_315_200_000  # 2026-06-01 12:00 UTC
PLAN = {"shop_id": "s1", "audience": {"level_gte": 1}, "tz": "Asia/Shanghai",
        "trigger": {"kind": "schedule", "cron": "0 9 * * *"},
        "action": {"kind": "grant", "sink": "hook"}}


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("fields", "field"), [
    ({"period": "0-0 0-0 0-0 24-25 4-4 * 2019-2019 2"}, "period"),  # the user's plan
    ({"period": "* * 10-11 * * ? 31"}, "trigger"),                  # 09:00 never inside
    ({"trigger": {"kind": "now"}, "period": "* * 10-11 * * ? 31"}, "trigger"),
])
def test_a_plan_that_can_never_fire_again_is_refused_naming_trigger_or_period(fields, field):
    body = stamped_plan({**PLAN, **fields}, None, NOW_MS)
    record = config_record(KINDS["plans"], "p1", body)  # well formed
    with pytest.raises(AdminError) as info:
        refuse_never_firing(record, NOW_MS, "UTC")
    assert (info.value.status, info.value.field) == (400, field)
    assert info.value.body()["error"].startswith(f"{field}: ")


def test_a_plan_that_fires_again_is_written():
    record = config_record(KINDS["plans"], "p1", stamped_plan(PLAN, None, NOW_MS))
    refuse_never_firing(record, NOW_MS, "UTC")
