"""A sink queue holds what the engine wrote there; anything else is dead-lettered with the
reason and the queue goes on behind it."""

from __future__ import annotations

import asyncio
from collections import deque
from types import SimpleNamespace

import orjson
import pytest

from app.domain.sinks import Sink
from app.sinks import delivery
from app.sinks.delivery import SinkDelivery
from app.sinks.fanout import queue_record
from app.sinks.plan_actions import PlanActionGate


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    async def send_and_wait(self, topic, value, key=None):
        self.sent.append((topic, key, value))


ACTION = {"action_id": "p1@1:b1", "plan_id": "p1", "occurrence_id": "p1@1", "buyer_id": "b1",
          "shop_id": "s1", "kind": "grant", "variant": None, "sink": "out", "payload": {}}
GOOD = queue_record("commissions", "e-1", {"delta": 5}, 1)

GARBAGE = [
    (b"{not json", "value: not JSON"),
    (b"[1, 2]", "value: not a queue record"),
    (None, "value: not a queue record"),
    (orjson.dumps({"stream": "commissions", "event": {}}), "event_id: required string"),
    (orjson.dumps({"event_id": "e", "event": {}}), "stream: required string"),
    (orjson.dumps({"stream": "plan_actions", "event_id": "e", "event": [1]}),
     "event: a plan action must be an object"),
    (orjson.dumps({"stream": "plan_actions", "event_id": "e",
                   "event": {**ACTION, "buyer_id": None}}), "event.buyer_id: required string"),
]


@pytest.mark.parametrize(("value", "reason"), GARBAGE)
def test_garbage_on_a_sink_queue_is_dead_lettered_and_the_next_record_delivered(
        monkeypatch, value, reason):
    producer = Producer()
    sink = Sink("out", "kafka", frozenset({"commissions"}), topic="elsewhere")
    plans = SimpleNamespace(plans={"p1": SimpleNamespace(state="active")})
    worker = SinkDelivery(sink_id="out", topic="q", current=lambda: sink, connection=None,
                          group_id="g", deadletter_topic="dl", webhooks=None,
                          producer=producer, plan_actions=PlanActionGate(plans, "records"))

    async def known(_producer, _topics):
        return None

    monkeypatch.setattr(delivery, "track_topics", known)
    records = deque((("q", 0), SimpleNamespace(key=b"k", value=v, offset=n))
                    for n, v in enumerate([value, GOOD]))
    worker._orders[b"k"] = records
    worker._order_tasks[b"k"] = None
    asyncio.run(worker._deliver_order(b"k", records))

    (dead_topic, _key, letter), (topic, _k, delivered) = producer.sent
    assert (dead_topic, topic, delivered) == ("dl", "elsewhere", GOOD)
    letter = orjson.loads(letter)
    assert letter["error"].startswith(reason), letter
    assert letter["sink_id"] == "out" and letter["key"] == "k"
    assert worker.stats.dead_lettered == 1 and b"k" not in worker._orders
