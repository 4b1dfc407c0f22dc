"""Live subscriptions: new results as Server-Sent Events, resumable by `Last-Event-ID`.

Every published result is also written, with the facts filters name, to
the internal live topic, except the streams whose own output topic holds
each event once already (plan actions: `own_topics`), which are read from
there, each record the event itself and its fields the facts. A subscriber
gets its own consumer of its stream's topic (no group), starting at the end,
or where its `Last-Event-ID` says. Each event's id is the position of the
whole stream after it (next offset per partition), so a reconnecting client
resumes exactly, as long as the topic still holds the records (its
retention). A client that does not read is cut off instead of buffered:
writes wait at most `write_timeout_s`.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import TopicPartition

from app.kafka.connection import KafkaConnection, started
from app.records.fields import InvalidEvent
from app.records.internal import decode_live

logger = logging.getLogger(__name__)

FILTERS = ("channel_id", "promoter_id", "shop_id")
STREAMS = ("attributions", "commissions", "settlements", "order_status", "plan_actions",
           "operation_records", "assignments")


class SubscriptionError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Subscription:
    stream: str
    filters: tuple[tuple[str, str], ...]
    resume_from: dict[int, int] | None

    def wants(self, stream: str, facts: Mapping[str, Any]) -> bool:
        return stream == self.stream and all(facts.get(name) == value
                                             for name, value in self.filters)


def parse(query: Mapping[str, str], last_event_id: str | None) -> Subscription:
    stream = query.get("stream")
    if stream not in STREAMS:
        raise SubscriptionError(400, f"stream: one of {', '.join(STREAMS)}")
    filters = tuple((name, query[name]) for name in FILTERS if query.get(name))
    return Subscription(stream, filters, decode_position(last_event_id))


def encode_position(position: Mapping[int, int]) -> str:
    raw = orjson.dumps({str(p): o for p, o in sorted(position.items())})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_position(text: str | None) -> dict[int, int] | None:
    if not text:
        return None
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        position = {int(p): int(o) for p, o in raw.items()}
    except (binascii.Error, ValueError, AttributeError, orjson.JSONDecodeError, TypeError):
        raise SubscriptionError(400, "Last-Event-ID: not an id this stream gave") from None
    if any(p < 0 or o < 0 for p, o in position.items()):
        raise SubscriptionError(400, "Last-Event-ID: not an id this stream gave")
    return position


class Subscriptions:
    """Counts live subscribers (at most `limit` per worker) and feeds each one."""

    def __init__(self, connection: KafkaConnection, *, topic: str, partitions, limit: int,
                 own_topics: Mapping[str, str]) -> None:
        self.connection = connection
        self.topic = topic
        self.own_topics = own_topics  # stream -> the output topic it is read from
        self.partitions = partitions  # (topic) -> the topic's partition count
        self.limit = limit
        self.active = 0
        self.cut_off = 0

    def admit(self) -> None:
        if self.active >= self.limit:
            raise SubscriptionError(503, f"too many subscribers on this worker ({self.limit})")
        self.active += 1

    def leave(self) -> None:
        self.active -= 1

    async def follow(self, subscription: Subscription) -> AsyncIterator[tuple[str, bytes]]:
        """(event id, data) of every new matching result, forever."""
        consumer = self.connection.consumer(group_id=None, enable_auto_commit=False,
                                            isolation_level="read_committed",
                                            auto_offset_reset="earliest")
        own = self.own_topics.get(subscription.stream)
        async with started(consumer):
            topic = own or self.topic
            partitions = [TopicPartition(topic, p) for p in range(self.partitions(topic))]
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            position = {}
            for tp in partitions:
                start = ends[tp]
                if subscription.resume_from is not None and tp.partition in \
                        subscription.resume_from:
                    start = subscription.resume_from[tp.partition]
                consumer.seek(tp, start)
                position[tp.partition] = start
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=500)
                for tp, messages in sorted(batch.items()):
                    for message in messages:
                        position[tp.partition] = message.offset + 1
                        found = (_own_event(subscription.stream, message.value) if own
                                 else _live_event(message))
                        if found is not None and subscription.wants(found[0], found[2]):
                            yield encode_position(position), orjson.dumps(found[1])
                if not batch:
                    yield "", b""  # a heartbeat: lets the caller keep the connection alive


def _live_event(message: Any) -> tuple[str, Any, Mapping[str, Any]] | None:
    """(stream, event, facts) of a live topic record (the engine wrote it); None for
    anything else, which no subscriber can be given (and which must not end the stream)."""
    try:
        return decode_live(message.value)
    except InvalidEvent as exc:
        logger.warning("%s partition %d offset %d is not a live result, skipped (%s)",
                       message.topic, message.partition, message.offset, exc)
        return None


def _own_event(stream: str, value: bytes | None) -> tuple[str, Any, Mapping[str, Any]] | None:
    """(stream, event, facts) of a record on `stream`'s own topic: the event, whose fields
    are its facts; None for anything else (others may write to an output topic)."""
    try:
        event = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return None
    return (stream, event, event) if isinstance(event, dict) else None
