"""The catalog applies configuration records as every worker reads them: latest valid value
per id, a null deleting it."""

from __future__ import annotations

import orjson
import pytest

from app.catalog import Catalog
from app.connection import KafkaConnection
from app.topics import Topics

TOPICS = Topics("cps.")


def catalog() -> Catalog:
    return Catalog(KafkaConnection(""), topics=TOPICS)


ACTIVITY = {"activity_id": "a1", "shop_id": "s1", "level": "shop_generic", "rate_bp": 100,
            "start_ms": 0}
PLAN = {"plan_id": "p1", "shop_id": "s1", "audience": {"level_gte": 1},
        "trigger": {"kind": "now"}, "created_ms": 1, "action": {"kind": "notify", "sink": "hook"}}


@pytest.mark.parametrize(("topic", "record", "ident", "view"), [
    (TOPICS.activities, orjson.dumps(ACTIVITY), "a1",
     lambda config: [each.activity_id for each in config.activities("s1")]),
    (TOPICS.plans, orjson.dumps(PLAN), "p1", lambda config: list(config.plans)),
], ids=["activity", "plan"])
def test_a_record_without_a_key_is_kept_under_its_own_id_not_its_shops(topic, record, ident,
                                                                        view):
    # Each also names a shop_id, which was taken for its id: a null under its own id then
    # deleted nothing.
    config = catalog()
    config.apply(topic, None, record)
    assert view(config) == [ident]
    config.apply(topic, ident.encode(), None)
    assert view(config) == []
