"""Admin rules: body validation with the field at fault, links, the
fields a plan's PUT stamps, plans that can never fire again, and what replacing or
emptying an audience list writes."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.allocation import Operator
from app.domain.plans import parse_plan
from app.domain.tokens import LINK, Signer
from app.kafka.topics import Topics
from app.records.configuration import decode_sink, encode_sink
from app.services.admin import (
    SECRET_SET,
    AdminError,
    buyers_on_list,
    checked_list_id,
    config_record,
    issue_link,
    kinds,
    list_buyer,
    list_change,
    list_members,
    parse_body,
    refuse_moving_operator,
    refuse_never_firing,
    stamped_plan,
)

KINDS = kinds(Topics("cps."))


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
    ("plans", "p1", {"shop_id": "s1", "audience": {"level_gte": 1}, "trigger": {"kind": "now"},
                     "created_ms": 1, "action": {"kind": "assign", "sink": "crm", "payload": {
                         "exclude": {"all": [{"tag": "blocked"}, ["vip"]]}}}},
     "action.payload.exclude.all[1]"),
    ("operators", "op1", {"operator_id": "op2", "shop_id": "s1", "daily_cap": 5,
                          "total_cap": 50}, "operator_id"),
    ("operators", "op1", {"daily_cap": 5, "total_cap": 50}, "shop_id"),
    ("operators", "op1", {"shop_id": "s1", "qualifications": ["vip", 3], "daily_cap": 5,
                          "total_cap": 50}, "qualifications[1]"),
    ("operators", "op1", {"shop_id": "s1", "total_cap": 50}, "daily_cap"),
    ("operators", "op1", {"shop_id": "s1", "daily_cap": 5, "total_cap": -1}, "total_cap"),
    ("operators", "op1", {"shop_id": "s1", "daily_cap": 5, "total_cap": 50, "active": "no"},
     "active"),
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
    operator = {"shop_id": "s1", "qualifications": ["vip"], "daily_cap": 5, "total_cap": 50}
    assert KINDS["operators"].topic == "cps.operators"
    assert orjson.loads(config_record(KINDS["operators"], "op1", operator)) == {
        **operator, "operator_id": "op1"}


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


def test_an_answer_shows_urls_as_scheme_host_and_port_and_no_secret():
    sink = {"kind": "webhook", "url": "https://u:pw@hooks.example.com/in?access_token=tok",
            "secret": "s3cret", "streams": ["commissions"]}
    shown = KINDS["sinks"].shown(orjson.loads(config_record(KINDS["sinks"], "hook", sink)))
    assert shown == {**sink, "sink_id": "hook", "url": "https://hooks.example.com:443",
                     "secret": SECRET_SET}
    channel = {"webhook_url": "http://hooks.example.com:81/k?key=k3y", "settle_days": 3}
    assert KINDS["channels"].shown(channel) == {**channel,
                                                "webhook_url": "http://hooks.example.com:81"}
    # Nothing set, nothing shown; a kafka sink keeps its topic.
    kafka = {"kind": "kafka", "topic": "out", "streams": ["commissions"], "secret": None}
    assert KINDS["sinks"].shown(kafka) == kafka
    assert KINDS["channels"].shown({"webhook_url": None}) == {"webhook_url": None}


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


# -- a plan's PUT: created_ms and state given, else kept, else new ----------------------

PLAN = {"plan_id": "p1", "shop_id": "s1", "audience": {"level_gte": 1},
        "trigger": {"kind": "now"}, "action": {"kind": "grant", "sink": "rights"}}


@pytest.mark.parametrize(("given_state", "existing_state", "state"), [
    (None, None, "active"),          # a new plan
    ("paused", None, "paused"),
    (None, "paused", "paused"),      # a re-PUT (a new rate) keeps the pause
    (None, "stopped", "stopped"),
    (None, "active", "active"),
    ("active", "paused", "active"),  # a state given is the state written
    ("stopped", "active", "stopped"),
])
def test_a_plans_state_is_given_else_kept_else_active(given_state, existing_state, state):
    existing = None if existing_state is None else parse_plan(
        {**PLAN, "created_ms": 5, "state": existing_state})
    bodies = [{**PLAN, "state": given_state}]  # null is omitted
    if given_state is None:
        bodies.append(PLAN)
    for body in bodies:
        assert stamped_plan(body, existing, now_ms=9)["state"] == state


def test_a_plans_created_ms_is_given_else_kept_else_now():
    existing = parse_plan({**PLAN, "created_ms": 5, "state": "paused"})
    assert stamped_plan(PLAN, None, now_ms=9)["created_ms"] == 9
    assert stamped_plan(PLAN, existing, now_ms=9)["created_ms"] == 5
    assert stamped_plan({**PLAN, "created_ms": 7}, existing, now_ms=9)["created_ms"] == 7
    assert stamped_plan({**PLAN, "rate_per_s": 5}, existing, now_ms=9) == {
        **PLAN, "rate_per_s": 5, "created_ms": 5, "state": "paused"}


# -- audience lists -------------------------------------------------------------------

@pytest.mark.parametrize("ident", ["", "a/b", "x" * 129])
def test_a_list_id_is_1_to_128_characters_without_a_slash(ident):
    with pytest.raises(AdminError) as info:
        checked_list_id(ident)
    assert (info.value.status, info.value.field) == (400, "id")


@pytest.mark.parametrize(("list_id", "key", "buyer"), [
    ("a", b"a/x", "x"),
    ("a", b"ab/x", None),        # another list, whose id starts with this one's
    ("ab", b"a/bx", None),
    ("a", b"a/b/x", "b/x"),      # the list id ends at the first '/', as the engine reads it
    ("a", b"b/a/x", None),
    ("a", b"a/", None),          # keys the engine refuses are on no list
    ("a", b"a/" + b"x" * 129, None),
    ("a", b"a", None),
    ("a", None, None),
    ("a/b", b"a/b/x", None),     # no list's id has a '/' (checked_list_id)
])
def test_the_buyer_of_a_key_of_a_list(list_id, key, buyer):
    assert list_buyer(list_id, key) == buyer


def _applied(on_list: set[str], list_id: str, records) -> set[str]:
    """The list after `records`, as the engine applies `cps.lists` records."""
    after = set(on_list)
    for key, value in records:
        head, _slash, buyer = key.partition("/")
        assert head == list_id
        if value is None:
            after.discard(buyer)
        else:
            assert orjson.loads(value) == {}
            after.add(buyer)
    return after


def test_a_put_replaces_the_list_and_a_delete_empties_it():
    put = list_change("L", {"a", "b", "c"}, ["b", "d", "b"])
    assert (put.buyers, put.removed) == (("b", "d"), ("a", "c"))
    assert sorted(put.records(), key=str) == sorted(
        [("L/a", None), ("L/c", None), ("L/b", b"{}"), ("L/d", b"{}")], key=str)
    emptied = list_change("L", {"b", "d"}, [])
    assert (emptied.buyers, emptied.removed) == ((), ("b", "d"))
    assert emptied.records() == [("L/b", None), ("L/d", None)]


BUYERS = [f"b{n}" for n in range(12)] + ["x/y"]


@given(current=st.sets(st.sampled_from(BUYERS)), wanted=st.lists(st.sampled_from(BUYERS)))
def test_after_the_change_the_list_holds_exactly_the_buyers_put(current, wanted):
    change = list_change("L", current, wanted)
    assert _applied(current, "L", change.records()) == set(wanted)
    assert len(change.buyers) == len(set(wanted))
    assert set(change.removed) == current - set(wanted)
    assert len(change.records()) == len(set(wanted)) + len(current - set(wanted))


def test_an_empty_put_is_refused_and_points_at_delete():
    with pytest.raises(AdminError) as info:
        list_members(b"[]")
    assert info.value.status == 400 and "DELETE" in str(info.value)


class _NeverAssigned:
    """A consumer whose partitions never arrive (a broker too slow to answer)."""

    stopped = False

    async def start(self) -> None: ...

    async def stop(self) -> None:
        self.stopped = True

    def assignment(self) -> set:
        return set()


class _Connection:
    def __init__(self) -> None:
        self.made = _NeverAssigned()

    def consumer(self, *topics: str, **options) -> _NeverAssigned:
        return self.made


def test_a_list_not_read_to_its_end_in_time_is_a_503_and_the_consumer_is_stopped():
    connection = _Connection()
    with pytest.raises(AdminError) as info:
        asyncio.run(buyers_on_list(connection, "cps.lists", "L", timeout_s=0.2))
    assert info.value.status == 503 and "'L' is unchanged; try again" in str(info.value)
    assert connection.made.stopped


DAILY_NOW_MS = 1_780_315_200_000  # 2026-06-01 12:00 UTC
DAILY_PLAN = {"shop_id": "s1", "audience": {"level_gte": 1}, "tz": "Asia/Shanghai",
        "trigger": {"kind": "schedule", "cron": "0 9 * * *"},
        "action": {"kind": "grant", "sink": "hook"}}


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("fields", "field"), [
    ({"period": "0-0 0-0 0-0 24-25 4-4 * 2019-2019 2"}, "period"),  # the user's plan
    ({"period": "* * 10-11 * * ? 31"}, "trigger"),                  # 09:00 never inside
    ({"trigger": {"kind": "now"}, "period": "* * 10-11 * * ? 31"}, "trigger"),
])
def test_a_plan_that_can_never_fire_again_is_refused_naming_trigger_or_period(fields, field):
    body = stamped_plan({**DAILY_PLAN, **fields}, None, DAILY_NOW_MS)
    record = config_record(KINDS["plans"], "p1", body)  # well formed
    with pytest.raises(AdminError) as info:
        refuse_never_firing(record, DAILY_NOW_MS, "UTC")
    assert (info.value.status, info.value.field) == (400, field)
    assert info.value.body()["error"].startswith(f"{field}: ")


def test_a_plan_that_fires_again_is_written():
    record = config_record(KINDS["plans"], "p1", stamped_plan(DAILY_PLAN, None, DAILY_NOW_MS))
    refuse_never_firing(record, DAILY_NOW_MS, "UTC")


def test_an_operator_is_not_moved_to_another_shop():
    existing = Operator("op-1", "s1", frozenset(), 5, 50)
    body = {"operator_id": "op-1", "shop_id": "s1", "daily_cap": 9, "total_cap": 90}
    refuse_moving_operator(orjson.dumps(body), existing)  # a new cap: fine
    refuse_moving_operator(orjson.dumps({**body, "shop_id": "s2"}), None)  # a new operator
    with pytest.raises(AdminError) as refused:
        refuse_moving_operator(orjson.dumps({**body, "shop_id": "s2"}), existing)
    assert refused.value.status == 409 and refused.value.field == "shop_id"
