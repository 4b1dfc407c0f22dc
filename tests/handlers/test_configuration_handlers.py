"""The configuration pipeline: each config topic's records are checked once, bad ones
dead-lettered, deletions (null values) let through."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from agents import configuration
from app.kafka.topics import Topics
from tests.handlers.contexts import new_context

TOPICS = Topics("cps.")
POLICY = {"product": [{"participant": "youzan_platform", "share_bp": 1000},
                      {"participant": "promoter", "rest": True}],
          "group_leader": [{"participant": "youzan_platform", "share_bp": 1000},
                           {"participant": "group_leader", "rest": True}]}
# topic: (key, a valid record, an invalid one, the start of its dead-letter reason)
CASES = {
    TOPICS.shops: (b"s1", {"shop_id": "s1", "cps_joined_ms": 0},
                   {"shop_id": "s2"}, "shop_id: 's2' differs from the message key"),
    TOPICS.channels: (b"kuaishou", {"channel_id": "kuaishou", "settle_days": 7},
                      {"channel_id": "kuaishou", "webhook_url": "ftp://hooks"},
                      "webhook_url: must be an http(s) URL"),
    TOPICS.activities: (b"a1", {"activity_id": "a1", "shop_id": "s1", "level": "shop_generic",
                                "rate_bp": 1000, "start_ms": 0},
                        {"activity_id": "a1", "shop_id": "s1", "level": "shop_generic",
                         "rate_bp": 10_001, "start_ms": 0},
                        "rate_bp: must be between 0 and 10000"),
    TOPICS.policy: (b"default", POLICY, {**POLICY, "group_leader": []},
                    "group_leader: required"),
    TOPICS.sinks: (b"hook", {"sink_id": "hook", "kind": "webhook", "url": "https://example.com",
                             "streams": ["commissions"]},
                   {"sink_id": "hook", "kind": "email", "streams": ["commissions"]},
                   "kind: must be webhook or kafka"),
    TOPICS.plans: (b"p1", {"plan_id": "p1", "shop_id": "s1", "audience": {"level_gte": 1},
                           "trigger": {"kind": "now"}, "created_ms": 1,
                           "action": {"kind": "notify", "sink": "hook"}},
                   {"plan_id": "p1", "shop_id": "s1", "audience": {"all": [{"lvl": 1}]},
                    "trigger": {"kind": "now"}, "created_ms": 1,
                    "action": {"kind": "notify", "sink": "hook"}},
                   "audience.all[0].lvl: unknown"),
    TOPICS.operators: (b"op1", {"operator_id": "op1", "shop_id": "s1", "daily_cap": 5,
                                "total_cap": 50},
                       {"operator_id": "op1", "shop_id": "s1", "daily_cap": -1,
                        "total_cap": 50},
                       "daily_cap: must be between 0 and"),
}


class Engine:
    """Records the pipelines a module registers."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def pipeline(self, name: str, handlers: dict[str, Any], ticks=(), **_declared: Any) -> None:
        self.handlers.update(handlers)


@pytest.fixture(scope="module")
def handlers() -> dict[str, Any]:
    engine = Engine()
    configuration.register(topics=TOPICS, engine=engine)
    return engine.handlers


def test_every_config_topic_is_checked(handlers):
    assert set(handlers) == set(TOPICS.config_topics) == set(CASES)


@pytest.mark.parametrize("topic", CASES)
def test_a_valid_record_and_a_deletion_pass(handlers, topic):
    key, valid, _invalid, _reason = CASES[topic]
    ctx = new_context()

    ctx.deliver(handlers[topic], topic, key, orjson.dumps(valid))
    ctx.deliver(handlers[topic], topic, key, None)

    assert ctx.dead_letters == []
    assert ctx.sent == []


@pytest.mark.parametrize("topic", CASES)
def test_an_invalid_record_is_dead_lettered_with_its_reason(handlers, topic):
    key, _valid, invalid, reason = CASES[topic]
    ctx = new_context()

    ctx.deliver(handlers[topic], topic, key, orjson.dumps(invalid))
    ctx.deliver(handlers[topic], topic, key, b"{not json")

    first, second = ctx.dead_letters
    assert first.startswith(reason)
    assert second.startswith("not JSON")
