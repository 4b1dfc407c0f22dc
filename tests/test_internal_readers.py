"""The readers of the engine's own topics outside its pipelines (live subscriptions, the click
spool's progress, `cps reconcile`): a record that is not what the engine writes is skipped
with a warning, or reported, and reading goes on."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import orjson
import pytest
from aiokafka import TopicPartition

from app.kafka.topics import Topics
from app.services.reconcile import ConsumedRecord, reconcile
from app.services.spool import ClickSpool, SpoolPublisher
from app.sinks.subscriptions import Subscriptions, parse

TOPICS = Topics("cps.")
T = 1_767_225_600_000


class Consumer:
    """A consumer of one partition that hands out `messages` in one batch, then nothing."""

    def __init__(self, topic: str, values: list[bytes | None], key: bytes | None = None):
        self.tp = TopicPartition(topic, 0)
        self.batches = [[SimpleNamespace(topic=topic, partition=0, offset=offset, key=key,
                                         value=value) for offset, value in enumerate(values)]]
        self.read = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assign(self, partitions) -> None: ...

    def seek(self, tp, offset: int) -> None: ...

    def assignment(self) -> set[TopicPartition]:
        return {self.tp}

    async def end_offsets(self, partitions) -> dict[TopicPartition, int]:
        return {tp: sum(len(batch) for batch in self.batches) for tp in partitions}

    async def position(self, tp) -> int:
        return self.read

    async def getmany(self, **_options) -> dict:
        if not self.batches:
            return {}
        batch = self.batches.pop(0)
        self.read += len(batch)
        return {self.tp: batch}


def connection_to(consumer: Consumer) -> SimpleNamespace:
    return SimpleNamespace(consumer=lambda *topics, **options: consumer)


LIVE_ATTRIBUTION = orjson.dumps({"stream": "attributions", "event_id": "attribution:o1",
                                 "ts_ms": T, "event": {"order_id": "o1"},
                                 "facts": {"shop_id": "s1"}})
NOT_LIVE = [b"not json", b"[1]", None, orjson.dumps({"event": {"order_id": "o2"}}),
            orjson.dumps({"stream": "gossip", "event": {}}),
            orjson.dumps({"stream": "attributions", "event": "o3"}),
            orjson.dumps({"stream": "attributions", "event": {}, "facts": ["shop_id"]})]


def test_a_live_subscriber_skips_what_is_not_a_live_result_and_goes_on(caplog):
    consumer = Consumer(TOPICS.live, [*NOT_LIVE, LIVE_ATTRIBUTION])
    subscriptions = Subscriptions(connection_to(consumer), topic=TOPICS.live,
                                  partitions=lambda _topic: 1, limit=1, own_topics={})

    async def first_event():
        stream = subscriptions.follow(parse({"stream": "attributions"}, None))
        try:
            return await anext(stream)
        finally:
            await stream.aclose()

    with caplog.at_level(logging.WARNING):
        event_id, data = asyncio.run(first_event())

    assert orjson.loads(data) == {"order_id": "o1"}
    assert orjson.loads(_position(event_id)) == {"0": len(NOT_LIVE) + 1}
    skipped = [r.getMessage() for r in caplog.records if "not a live result" in r.getMessage()]
    assert len(skipped) == len(NOT_LIVE), skipped


def _position(event_id: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(event_id + "=" * (-len(event_id) % 4))


@pytest.mark.parametrize(("values", "progress"), [
    ([b"5", b"9"], 9),
    ([b"5", b"not a number"], 5),
    ([b"5", b"-7"], 5),
    ([b"5", b""], 5),
    ([b"5", b"1" * 40], 5),
    ([b"[12]", b"5", b"{}"], 5),
])
def test_the_spool_reads_its_progress_past_records_it_cannot_read(tmp_path, caplog, values,
                                                                  progress):
    spool = ClickSpool(tmp_path)
    consumer = Consumer(TOPICS.spool_progress, values, key=spool.spool_id.encode())
    publisher = SpoolPublisher(spool, connection_to(consumer), clicks_topic=TOPICS.clicks,
                               positions_topic=TOPICS.spool_progress, app_id="cps-engine")

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(publisher._read_progress()) == progress

    unreadable = sum(not value.isdigit() or len(value) > 16 for value in values)
    assert sum("skipped" in r.getMessage() for r in caplog.records) == unreadable


def test_reconcile_reports_a_record_on_the_attributions_topic_that_is_not_one():
    order = orjson.dumps({"order_id": "o1", "event": "created", "ts_ms": T, "buyer_id": "u1",
                          "shop_id": "s1", "items": [{"item_id": "i1", "amount": 100}]})
    records = [ConsumedRecord(TOPICS.orders, 0, 0, T, b"o1", order),
               ConsumedRecord(TOPICS.attributions, 2, 7, T, b"o1", b'{"order_id": "o1"}'),
               ConsumedRecord(TOPICS.attributions, 2, 8, T, b"o1", b"not json")]

    report = reconcile(records, TOPICS, now_ms=T + 3_600_000)

    reported = [text for text in report.differences if "not an attribution" in text]
    assert reported[0] == ("cps.attributions partition 2 offset 7: not an attribution "
                           "(ts_ms: required integer)")
    assert reported[1].startswith("cps.attributions partition 2 offset 8: not an attribution "
                                  "(not JSON")
    assert len(reported) == 2
    assert "order o1: 0 attributions, expected exactly 1" in report.differences
