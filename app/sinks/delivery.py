"""Delivery of one sink's queue: rate-limited, retried, in order per order, at least once.

Each worker consumes its share of the sink's queue topic in the sink's own
consumer group, so a slow or dead sink delays nobody else. Records of one
key (order) are delivered one after the other; up to `max_in_flight` keys
at a time. After the last retry (or a refusal no retry can fix) a record
goes to the sinks' dead-letter topic; offsets are committed only once every
record of a batch is delivered or dead-lettered, so a restart loses nothing
(and may deliver a few records twice: receivers de-duplicate by the
`Idempotency-Key` header, the event id).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from app.connection import KafkaConnection
from app.domain.sinks import Sink, Throttle, TokenBucket, backoff_s, retry_after_s
from app.topology import track_topics

logger = logging.getLogger(__name__)


class Retryable(Exception):
    def __init__(self, error: str, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.retry_after = retry_after


class Refused(Exception):
    """The receiver refused the event for good (a 4xx other than 408/429)."""


@dataclass
class SinkStats:
    sent: int = 0
    retried: int = 0
    dead_lettered: int = 0
    depth: int = 0
    rate_per_s: float = 0.0
    last_error: str | None = None
    last_error_ms: int | None = None
    paused: bool = False
    throttle: Throttle = field(default_factory=Throttle)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "retried": self.retried, "dead_lettered": self.dead_lettered,
                "depth": self.depth, "rate_per_s": round(self.rate_per_s, 3),
                "throttle": round(self.throttle.factor, 4), "paused": self.paused,
                "last_error": self.last_error, "last_error_ms": self.last_error_ms}


class SinkDelivery:
    def __init__(self, *, sink_id: str, topic: str, current: Callable[[], Sink | None],
                 connection: KafkaConnection, group_id: str, deadletter_topic: str,
                 session: aiohttp.ClientSession, producer: AIOKafkaProducer) -> None:
        self.sink_id = sink_id
        self.topic = topic
        self.current = current
        self.connection = connection
        self.group_id = group_id
        self.deadletter_topic = deadletter_topic
        self.session = session
        self.producer = producer
        self.stats = SinkStats()
        self.rnd = random.Random()
        self._bucket: TokenBucket | None = None
        self._share = 1.0
        self._in_flight = 0

    async def run(self) -> None:
        """Deliver until cancelled; reconnects on Kafka errors."""
        while True:
            consumer = self.connection.consumer(
                self.topic, group_id=self.group_id,
                enable_auto_commit=False, auto_offset_reset="earliest",
                isolation_level="read_committed", max_poll_records=500)
            try:
                await consumer.start()
                await self._consume(consumer)
            except KafkaError as exc:
                self._error(f"kafka: {exc!r}")
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            sink = self.current()
            if sink is None:
                return
            paused = sink.paused or not sink.enabled
            self.stats.paused = paused
            assignment = consumer.assignment()
            if paused:
                consumer.pause(*assignment)
                await asyncio.sleep(0.2)
                continue
            consumer.resume(*assignment)
            total = len(consumer.partitions_for_topic(self.topic) or ()) or 1
            self._share = max(len(assignment), 1) / total
            batch = await consumer.getmany(timeout_ms=300)
            self._in_flight = sum(len(messages) for messages in batch.values())
            await self._update_depth(consumer)
            if not batch:
                continue
            await self._deliver_batch(batch)
            await consumer.commit({tp: messages[-1].offset + 1 for tp, messages in batch.items()})
            await self._update_depth(consumer)

    async def _update_depth(self, consumer: AIOKafkaConsumer) -> None:
        """Records of this worker's partitions not delivered yet: in flight and not fetched."""
        depth = self._in_flight
        for tp in consumer.assignment():
            end = consumer.last_stable_offset(tp)
            if end is not None:
                depth += max(0, end - await consumer.position(tp))
        self.stats.depth = depth

    async def _deliver_batch(self, batch: dict) -> None:
        by_key: dict[bytes | None, list] = {}
        for messages in batch.values():
            for message in messages:
                by_key.setdefault(message.key, []).append(message)
        sink = self.current()
        limit = asyncio.Semaphore(sink.max_in_flight if sink else 1)
        self._in_flight = sum(len(messages) for messages in by_key.values())

        async def one_key(messages: list) -> None:
            async with limit:
                for message in messages:
                    await self._deliver(message)
                    self._in_flight -= 1
                    self.stats.depth = max(0, self.stats.depth - 1)

        await asyncio.gather(*(one_key(messages) for messages in by_key.values()))

    async def _deliver(self, message) -> None:
        first_ms = int(time.time() * 1000)
        attempt = 0
        while True:
            sink = self.current()
            if sink is None:
                return
            await self._take_token(sink)
            try:
                await self._send(sink, message)
            except Retryable as exc:
                attempt += 1
                self.stats.retried += 1
                self._error(str(exc))
                age_s = (time.time() * 1000 - first_ms) / 1000
                if attempt >= sink.retry.max_attempts or age_s >= sink.retry.max_age_s:
                    await self._dead_letter(sink, message, str(exc), attempt, first_ms)
                    return
                if exc.retry_after is not None:
                    self.stats.throttle.pushed_back()
                    delay = exc.retry_after
                else:
                    delay = backoff_s(attempt, base_ms=sink.retry.base_ms,
                                      max_ms=sink.retry.max_ms, rnd=self.rnd)
                await asyncio.sleep(delay)
                continue
            except Refused as exc:
                self._error(str(exc))
                await self._dead_letter(sink, message, str(exc), attempt + 1, first_ms)
                return
            self.stats.sent += 1
            self.stats.throttle.succeeded()
            return

    async def _take_token(self, sink: Sink) -> None:
        rate = max(sink.rate_per_s * self.stats.throttle.factor * self._share, 0.001)
        burst = max(1, int(sink.burst * self._share))
        now = time.monotonic()
        if self._bucket is None:
            self._bucket = TokenBucket(rate, burst, now)
        else:
            self._bucket.reconfigure(rate, burst, now)
        self.stats.rate_per_s = rate
        wait = self._bucket.take(now)
        if wait > 0:
            await asyncio.sleep(wait)

    async def _send(self, sink: Sink, message) -> None:
        if sink.kind == "kafka":
            try:
                await track_topics(self.producer, (sink.topic,))  # the producer is shared
                await self.producer.send_and_wait(sink.topic, message.value, key=message.key)
            except KafkaError as exc:
                raise Retryable(f"kafka: {exc!r}") from exc
            return
        record = orjson.loads(message.value)
        headers = {"Content-Type": "application/json", "Idempotency-Key": record["event_id"],
                   "X-CPS-Stream": record["stream"], "X-CPS-Sink": sink.sink_id}
        if sink.secret:
            digest = hmac.new(sink.secret.encode(), message.value, hashlib.sha256).hexdigest()
            headers["X-CPS-Signature"] = f"sha256={digest}"
        try:
            async with self.session.post(
                    sink.url, data=message.value, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=sink.timeout_ms / 1000)) as response:
                status = response.status
                retry_after = retry_after_s(response.headers.get("Retry-After"), time.time())
                await response.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise Retryable(f"webhook: {exc!r}") from exc
        if 200 <= status < 300:
            return
        if status in (429, 503):
            raise Retryable(f"webhook answered {status}", retry_after if retry_after is not None
                            else 1.0)
        if status == 408 or status >= 500:
            raise Retryable(f"webhook answered {status}")
        raise Refused(f"webhook refused with {status}")

    async def _dead_letter(self, sink: Sink, message, error: str, attempts: int,
                           first_ms: int) -> None:
        record = orjson.loads(message.value)
        letter = orjson.dumps({
            "sink_id": self.sink_id, "event_id": record.get("event_id"),
            "stream": record.get("stream"),
            "key": message.key.decode() if message.key is not None else None,
            "record": record, "error": error, "attempts": attempts,
            "first_attempt_ms": first_ms, "ts_ms": int(time.time() * 1000)})
        while True:
            try:
                await track_topics(self.producer, (self.deadletter_topic,))
                await self.producer.send_and_wait(self.deadletter_topic, letter,
                                                  key=self.sink_id.encode())
                break
            except KafkaError as exc:
                self._error(f"dead letter not written yet: {exc!r}")
                await asyncio.sleep(1.0)
        self.stats.dead_lettered += 1

    def _error(self, text: str) -> None:
        self.stats.last_error = text[:500]
        self.stats.last_error_ms = int(time.time() * 1000)
