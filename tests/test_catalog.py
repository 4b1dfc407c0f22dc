"""The catalog applies configuration records as every worker reads them: latest valid value
per id, a null deleting it, entries indexed by shop where the engine asks per shop."""

from __future__ import annotations

import orjson
import pytest

from app.domain.allocation import Operator
from app.kafka.connection import KafkaConnection
from app.kafka.topics import Topics
from app.services.catalog import Catalog

TOPICS = Topics("cps.")


def catalog() -> Catalog:
    return Catalog(KafkaConnection(""), topics=TOPICS)


def operator(operator_id: str, shop_id: str, **fields) -> bytes:
    return orjson.dumps({"operator_id": operator_id, "shop_id": shop_id, "daily_cap": 3,
                         "total_cap": 10, **fields})


def ids(operators: list[Operator]) -> list[str]:
    return [each.operator_id for each in operators]


def test_operators_are_kept_per_shop_in_id_order():
    config = catalog()
    for ident, shop in (("op-c", "s1"), ("op-a", "s1"), ("op-z", "s2"), ("op-b", "s1")):
        config.apply(TOPICS.operators, ident.encode(), operator(ident, shop))

    assert ids(config.operators_of("s1")) == ["op-a", "op-b", "op-c"]
    assert ids(config.operators_of("s2")) == ["op-z"]
    assert config.operators_of("s3") == []
    assert config.operators["op-b"] == Operator("op-b", "s1", frozenset(), 3, 10, active=True)


def test_a_new_value_replaces_the_operator_and_may_move_it_to_another_shop():
    config = catalog()
    config.apply(TOPICS.operators, b"op-a", operator("op-a", "s1"))
    config.apply(TOPICS.operators, b"op-b", operator("op-b", "s1"))

    config.apply(TOPICS.operators, b"op-a", operator("op-a", "s2", active=False,
                                                     qualifications=["vip"]))

    assert ids(config.operators_of("s1")) == ["op-b"]
    assert config.operators_of("s2") == [Operator("op-a", "s2", frozenset({"vip"}), 3, 10,
                                                  active=False)]


def test_a_null_deletes_the_operator_and_an_invalid_record_changes_nothing():
    config = catalog()
    config.apply(TOPICS.operators, b"op-a", operator("op-a", "s1"))
    config.apply(TOPICS.operators, b"op-b", operator("op-b", "s1"))

    config.apply(TOPICS.operators, b"op-a", None)
    config.apply(TOPICS.operators, b"op-b", operator("op-b", "s1", daily_cap=-1))
    config.apply(TOPICS.operators, b"op-c", b"{not json")

    assert set(config.operators) == {"op-b"}
    assert config.operators_of("s1") == [Operator("op-b", "s1", frozenset(), 3, 10)]


ACTIVITY = {"activity_id": "a1", "shop_id": "s1", "level": "shop_generic", "rate_bp": 100,
            "start_ms": 0}
PLAN = {"plan_id": "p1", "shop_id": "s1", "audience": {"level_gte": 1},
        "trigger": {"kind": "now"}, "created_ms": 1, "action": {"kind": "notify", "sink": "hook"}}


@pytest.mark.parametrize(("topic", "record", "ident", "view"), [
    (TOPICS.activities, orjson.dumps(ACTIVITY), "a1",
     lambda config: [each.activity_id for each in config.activities("s1")]),
    (TOPICS.plans, orjson.dumps(PLAN), "p1", lambda config: list(config.plans)),
    (TOPICS.operators, operator("op-a", "s1"), "op-a", lambda config: list(config.operators)),
], ids=["activity", "plan", "operator"])
def test_a_record_without_a_key_is_kept_under_its_own_id_not_its_shops(topic, record, ident,
                                                                        view):
    # Each also names a shop_id, which was taken for its id: a null under its own id then
    # deleted nothing.
    config = catalog()
    config.apply(topic, None, record)
    assert view(config) == [ident]
    config.apply(topic, ident.encode(), None)
    assert view(config) == []
