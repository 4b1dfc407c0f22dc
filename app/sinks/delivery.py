"""Delivery of one sink's queue: rate-limited, retried, in order per order, at least once.

Each worker consumes its share of the sink's queue topic in the sink's own
consumer group, so a slow or dead sink delays nobody else. Records of one
key (order) are delivered one after the other, each order by a task of its
own; up to `max_in_flight` requests are out at a time, and an order waiting
out a backoff holds none, so it delays only its own later events. Fetching
goes on while orders wait, up to `BUFFERED` records held. The offset
committed for a partition is its oldest undelivered record
(`DeliveryProgress`), so a restart re-delivers from there and skips nothing
(receivers drop repeats by the `Idempotency-Key` header, the event id).
After the last retry (or a refusal no retry can fix) a record goes to the
sinks' dead-letter topic. The rate is the sink's `AdaptiveRate` (a receiver's
`Retry-After` holds the whole sink exactly that long; docs/sinks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

from app.domain.sinks import (
    AdaptiveRate,
    DeliveryProgress,
    Sink,
    backoff_s,
    retry_after_s,
)
from app.domain.throttle import TokenBucket
from app.kafka.connection import KafkaConnection
from app.kafka.topology import track_topics
from app.records.fields import DEAD_LETTER_VALUE_BYTES
from app.sinks.fanout import sink_dead_letter
from app.sinks.plan_actions import DROP, SEND, STREAM, WAIT, PlanActionGate
from app.sinks.webhook_client import WebhookClient, WebhookError

logger = logging.getLogger(__name__)

BUFFERED = 2000  # fetched records held at most; at this many it takes no more
IDLE_IN_GROUP_MS = 24 * 3600 * 1000  # how long a consumer may go without polling
COMMIT_EVERY_S = 0.5


class Retryable(Exception):
    def __init__(self, error: str, retry_after: float | None = None,
                 pushed_back: bool = False) -> None:
        super().__init__(error)
        self.retry_after = retry_after
        self.pushed_back = pushed_back  # 429/503: the receiver asks the whole sink to slow down


class Refused(Exception):
    """The receiver refused the event for good (a 4xx other than 408/429)."""


@dataclass
class SinkStats:
    sent: int = 0
    retried: int = 0
    dead_lettered: int = 0
    depth: int = 0
    last_error: str | None = None
    last_error_ms: int | None = None
    paused: bool = False
    dropped: int = 0  # actions of stopped or deleted plans, not sent


class Slots:
    """At most `limit` holders at once, first come first served; the limit may change
    while they wait. A freed slot wakes one waiter (not all: thousands of orders may
    wait), which wakes the next while slots are left (a raised limit)."""

    def __init__(self) -> None:
        self.held = 0
        self._waiting: deque[asyncio.Future] = deque()

    def one(self, limit: Callable[[], int]) -> _Slot:
        """`async with slots.one(limit):` holds a slot for the block."""
        return _Slot(self, limit)

    async def acquire(self, limit: Callable[[], int]) -> None:
        woken = False
        while self.held >= max(limit(), 1) or (self._waiting and not woken):
            turn = asyncio.get_running_loop().create_future()
            if woken:
                self._waiting.appendleft(turn)  # woken but beaten to the slot: still first
            else:
                self._waiting.append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._wake_next()  # woken, then cancelled: pass the turn on
                raise
            woken = True
        self.held += 1
        if self.held < max(limit(), 1):
            self._wake_next()

    def release(self) -> None:
        self.held -= 1
        self._wake_next()

    def _wake_next(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return


class _Slot:
    # A plain context manager: contextlib's generator-based one cost 3 % of a busy worker.
    __slots__ = ("limit", "slots")

    def __init__(self, slots: Slots, limit: Callable[[], int]) -> None:
        self.slots = slots
        self.limit = limit

    async def __aenter__(self) -> None:
        await self.slots.acquire(self.limit)

    async def __aexit__(self, *exc_info: object) -> None:
        self.slots.release()


class SinkDelivery:
    def __init__(self, *, sink_id: str, topic: str, current: Callable[[], Sink | None],
                 connection: KafkaConnection, group_id: str, deadletter_topic: str,
                 webhooks: WebhookClient, producer: AIOKafkaProducer,
                 plan_actions: PlanActionGate) -> None:
        self.sink_id = sink_id
        self.topic = topic
        self.current = current
        self.connection = connection
        self.group_id = group_id
        self.deadletter_topic = deadletter_topic
        self.webhooks = webhooks
        self.producer = producer
        self.plan_actions = plan_actions
        self.stats = SinkStats()
        self.rnd = random.Random()
        self._rate: AdaptiveRate | None = None
        self._bucket: TokenBucket | None = None
        self._share = 1.0
        self._slots = Slots()
        self._progress: dict[Any, DeliveryProgress] = {}   # TopicPartition -> progress
        self._orders: dict[bytes | None, deque] = {}       # key -> its undelivered records
        self._order_tasks: dict[bytes | None, asyncio.Task] = {}
        self._committed: dict[Any, int] = {}

    def status(self) -> dict[str, Any]:
        """Figures for /sinks and /metrics, the effective rate and why it is lower."""
        now = time.monotonic()
        sink = self.current()
        rate = self._rate or (AdaptiveRate(sink.rate_per_s) if sink is not None else None)
        effective = 0.0 if self.stats.paused or rate is None else (
            0.0 if rate.held_for(now) > 0 else rate.rate(now))
        reason = "paused" if self.stats.paused else rate.reason(now) if rate else None
        stats = self.stats
        return {"sent": stats.sent, "retried": stats.retried,
                "dead_lettered": stats.dead_lettered, "dropped": stats.dropped,
                "depth": stats.depth,
                "rate_per_s": round(effective * self._share, 3), "rate_reason": reason,
                "paused": stats.paused, "in_flight": self._slots.held,
                "last_error": stats.last_error, "last_error_ms": stats.last_error_ms}

    async def run(self) -> None:
        """Deliver until cancelled; reconnects on Kafka errors."""
        while True:
            consumer = self.connection.consumer(
                group_id=self.group_id, enable_auto_commit=False, auto_offset_reset="earliest",
                isolation_level="read_committed", max_poll_records=500,
                # It stops polling while the sink is paused or its buffer full (`_consume`);
                # heartbeats keep it in the group meanwhile, and a stuck worker misses those.
                max_poll_interval_ms=IDLE_IN_GROUP_MS)
            consumer.subscribe([self.topic], listener=_Rebalance(self, consumer))
            try:
                await consumer.start()
                await self._consume(consumer)
            except KafkaError as exc:
                self._error(f"kafka: {exc!r}")
                await asyncio.sleep(1.0)
            finally:
                self.forget()
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        last_commit = time.monotonic()
        while True:
            sink = self.current()
            if sink is None:
                return
            self.stats.paused = sink.paused or not sink.enabled
            assignment = consumer.assignment()
            total = len(consumer.partitions_for_topic(self.topic) or ()) or 1
            self._share = max(len(assignment), 1) / total
            buffered = sum(p.undelivered for p in self._progress.values())
            # Paused or full: take nothing more; orders already taken go on (a paused
            # sink's wait before sending). Not `consumer.pause`: aiokafka then drops the
            # paused partitions' fetches it has partly handed out, and each dropped fetch
            # (up to 1 MiB) lived on in a reference cycle until a full garbage collection;
            # a sink slower than its queue paused and resumed all the time and held 1 GiB
            # that way (issue 17). Without a `getmany` the fetcher holds at most one fetch
            # per partition.
            taking = not self.stats.paused and buffered < BUFFERED
            if taking:
                batch = await consumer.getmany(timeout_ms=100)
            else:
                await asyncio.sleep(0.1)
                batch = {}
            for tp, messages in batch.items():
                progress = self._progress.setdefault(tp, DeliveryProgress())
                for message in messages:
                    progress.fetched(message.offset)
                    self._queue(tp, message)
            if time.monotonic() - last_commit >= COMMIT_EVERY_S:
                await self.commit(consumer)
                last_commit = time.monotonic()
                await self._update_depth(consumer, ask_broker=not taking)

    def _queue(self, tp: Any, message) -> None:
        key = message.key
        records = self._orders.get(key)
        if records is None:
            records = self._orders[key] = deque()
            self._order_tasks[key] = asyncio.ensure_future(self._deliver_order(key, records))
        records.append((tp, message))

    async def _deliver_order(self, key: bytes | None, records: deque) -> None:
        """One order's records, one after the other, until none is left."""
        while records:
            tp, message = records[0]
            try:
                await self._deliver(message)
            except Exception as exc:  # a bug must not stall the queue behind this order
                logger.exception("sink %s: delivering %s:%s failed", self.sink_id, tp,
                                 message.offset)
                await self._dead_letter(message, _queued_or_none(message),
                                        f"internal error: {exc!r}", 0, int(time.time() * 1000))
            records.popleft()
            progress = self._progress.get(tp)
            if progress is not None:
                progress.delivered(message.offset)
        del self._orders[key]
        del self._order_tasks[key]

    async def commit(self, consumer: AIOKafkaConsumer, partitions=None) -> None:
        """Commit, per partition, up to its oldest undelivered record."""
        offsets = {}
        for tp in partitions if partitions is not None else consumer.assignment():
            progress = self._progress.get(tp)
            offset = progress.committable() if progress is not None else None
            if offset is not None and offset != self._committed.get(tp):
                offsets[tp] = offset
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            logger.info("sink %s: commit skipped (%r); the next owner re-delivers from the "
                        "last commit", self.sink_id, exc)
            return
        self._committed.update(offsets)

    def forget(self, partitions: list | None = None) -> None:
        """Drop what was fetched from `partitions` (all: None), whose next owner, or this
        worker's next consumer, re-delivers it from the last commit."""
        gone = set(self._progress if partitions is None else partitions)
        for key, records in list(self._orders.items()):
            if partitions is None or (records and records[0][0] in gone):
                self._order_tasks.pop(key).cancel()
                del self._orders[key]
        for tp in gone:
            self._progress.pop(tp, None)
            self._committed.pop(tp, None)

    async def _update_depth(self, consumer: AIOKafkaConsumer, *, ask_broker: bool) -> None:
        """Records of this worker's partitions not delivered yet: fetched and not fetched.

        The fetcher learns a partition's end from its fetches, and fetches a partition
        again only once its last fetch was taken: while the delivery takes nothing (paused,
        or its buffer full) those ends stand still, so the broker is asked (`ask_broker`).
        """
        assignment = list(consumer.assignment())
        if ask_broker and assignment:
            try:
                ends = await consumer.end_offsets(assignment)
            except KafkaError as exc:
                logger.info("sink %s: queue ends unknown (%r); depth as before", self.sink_id,
                            exc)
                return
        else:
            ends = {tp: consumer.last_stable_offset(tp) for tp in assignment}
        depth = sum(p.undelivered for p in self._progress.values())
        for tp, end in ends.items():
            if end is not None:
                depth += max(0, end - await consumer.position(tp))
        self.stats.depth = depth

    async def _deliver(self, message) -> None:
        first_ms = int(time.time() * 1000)
        attempt = 0
        try:
            record = queued(message)
        except Refused as exc:  # not the engine's: nothing to send, kept for a look
            self._error(str(exc))
            await self._dead_letter(message, None, str(exc), 0, first_ms)
            return
        action = record["event"] if record["stream"] == STREAM else None
        while True:
            sink = await self._sendable(action)
            if sink is None:
                return
            try:
                async with self._slots.one(self._max_in_flight):
                    # Read again: the wait for a slot may have outlasted a change (rate, pause).
                    sink = self.current()
                    if sink is None:
                        return
                    if sink.paused or not sink.enabled or self._plan_holds(action):
                        continue
                    await self._take_token(sink)
                    if self._rate_of(sink).held_for(time.monotonic()) > 0:
                        continue  # the receiver pushed back while this one waited its turn
                    if self._plan_holds(action):
                        continue  # paused while this one waited for its token
                    await self._send(sink, message, record)
            except Retryable as exc:
                attempt += 1
                self.stats.retried += 1
                self._error(str(exc))
                if exc.pushed_back:
                    self._rate.pushed_back(time.monotonic(), exc.retry_after)
                age_s = (time.time() * 1000 - first_ms) / 1000
                if attempt >= sink.retry.max_attempts or age_s >= sink.retry.max_age_s:
                    await self._dead_letter(message, record, str(exc), attempt, first_ms)
                    return
                if not exc.pushed_back:  # a push-back's wait is the sink's hold
                    await asyncio.sleep(backoff_s(attempt, base_ms=sink.retry.base_ms,
                                                  max_ms=sink.retry.max_ms, rnd=self.rnd))
                continue
            except Refused as exc:
                self._error(str(exc))
                await self._dead_letter(message, record, str(exc), attempt + 1, first_ms)
                return
            self.stats.sent += 1
            if action is not None:
                await self._produce(self.plan_actions.records_topic,
                                    *self.plan_actions.record(action))
            return

    def _plan_holds(self, action: dict | None) -> bool:
        return action is not None and self.plan_actions.status(action) != SEND

    async def _sendable(self, action: dict | None) -> Sink | None:
        """The sink once it may send: not paused, not held by a receiver's Retry-After,
        the action's plan (if it is one) active; None: nothing to send (sink or plan gone)."""
        while True:
            sink = self.current()
            if sink is None:
                return None
            plan = SEND if action is None else self.plan_actions.status(action)
            if plan == DROP:
                self.stats.dropped += 1
                return None
            if sink.paused or not sink.enabled or plan == WAIT:
                await asyncio.sleep(0.05)
                continue
            rate = self._rate_of(sink)
            held = rate.held_for(time.monotonic())
            if held <= 0:
                return sink
            await asyncio.sleep(held)

    def _max_in_flight(self) -> int:
        sink = self.current()
        return sink.max_in_flight if sink is not None else 1

    def _rate_of(self, sink: Sink) -> AdaptiveRate:
        if self._rate is None:
            self._rate = AdaptiveRate(sink.rate_per_s)
        self._rate.configure(sink.rate_per_s)
        return self._rate

    async def _take_token(self, sink: Sink) -> None:
        now = time.monotonic()
        rate = max(self._rate_of(sink).rate(now) * self._share, 0.001)
        burst = max(1, int(sink.burst * self._share))
        if self._bucket is None:
            self._bucket = TokenBucket(rate, burst, now)
        else:
            self._bucket.reconfigure(rate, burst, now)
        wait = self._bucket.take(now)
        if wait > 0:
            await asyncio.sleep(wait)

    async def _send(self, sink: Sink, message, record: dict) -> None:
        """Deliver `message`; `record` is its value decoded."""
        if sink.kind == "kafka":
            try:
                await track_topics(self.producer, (sink.topic,))  # the producer is shared
                await self.producer.send_and_wait(sink.topic, message.value, key=message.key)
            except KafkaError as exc:
                raise Retryable(f"kafka: {exc!r}") from exc
            return
        headers = {"Content-Type": "application/json", "Idempotency-Key": record["event_id"],
                   "X-CPS-Stream": record["stream"], "X-CPS-Sink": sink.sink_id}
        if sink.secret:
            digest = hmac.new(sink.secret.encode(), message.value, hashlib.sha256).hexdigest()
            headers["X-CPS-Signature"] = f"sha256={digest}"
        try:
            response = await self.webhooks.post(sink.url, message.value, headers,
                                                timeout_s=sink.timeout_ms / 1000)
        except (TimeoutError, WebhookError, OSError) as exc:
            raise Retryable(f"webhook: {exc!r}") from exc
        status = response.status
        if 200 <= status < 300:
            return
        if status in (429, 503):
            retry_after = retry_after_s(response.headers.get("retry-after"), time.time())
            raise Retryable(f"webhook answered {status}", retry_after, pushed_back=True)
        if status == 408 or status >= 500:
            raise Retryable(f"webhook answered {status}")
        raise Refused(f"webhook refused with {status}")

    async def _dead_letter(self, message, record: dict | None, error: str, attempts: int,
                           first_ms: int) -> None:
        """Write the record the sink gives up on to the sinks' dead letters (one that is no
        queue record as its text) and, for a plan action, its `failed` record."""
        kept = record if record is not None else {"value": (message.value or b"")[
            :DEAD_LETTER_VALUE_BYTES].decode("utf-8", "replace")}
        letter = sink_dead_letter(self.sink_id, message.key, kept, error, attempts=attempts,
                                  first_attempt_ms=first_ms, ts_ms=int(time.time() * 1000))
        await self._produce(self.deadletter_topic, self.sink_id.encode(), letter)
        self.stats.dead_lettered += 1
        if record is not None and record["stream"] == STREAM:
            await self._produce(self.plan_actions.records_topic,
                                *self.plan_actions.record(record["event"], error=error))

    async def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        """Write a record of the delivery (dead letter, operation record), retrying until
        Kafka takes it: it must not be lost, and the queue waits meanwhile."""
        while True:
            try:
                await track_topics(self.producer, (topic,))
                await self.producer.send_and_wait(topic, value, key=key)
                return
            except KafkaError as exc:
                self._error(f"{topic} not written yet: {exc!r}")
                await asyncio.sleep(1.0)

    def _error(self, text: str) -> None:
        self.stats.last_error = text[:500]
        self.stats.last_error_ms = int(time.time() * 1000)


ACTION_FIELDS = ("action_id", "plan_id", "occurrence_id", "buyer_id", "shop_id", "kind")


def queued(message) -> dict:
    """The queue record `message` holds (app.sinks.fanout.queue_record), checked as far as
    delivering it needs; `Refused` with the reason for anything else."""
    try:
        record = orjson.loads(message.value if message.value is not None else b"null")
    except orjson.JSONDecodeError as exc:
        raise Refused(f"value: not JSON ({exc})") from None
    if type(record) is not dict:
        raise Refused("value: not a queue record (a JSON object)")
    for name in ("stream", "event_id"):
        if type(record.get(name)) is not str or not record[name]:
            raise Refused(f"{name}: required string")
    if record["stream"] == STREAM:
        action = record.get("event")
        if type(action) is not dict:
            raise Refused("event: a plan action must be an object")
        for name in ACTION_FIELDS:
            if type(action.get(name)) is not str:
                raise Refused(f"event.{name}: required string")
    return record


def _queued_or_none(message) -> dict | None:
    try:
        return queued(message)
    except Refused:
        return None


class _Rebalance(ConsumerRebalanceListener):
    """Before partitions go: commit what was delivered, then forget their records."""

    def __init__(self, delivery: SinkDelivery, consumer: AIOKafkaConsumer) -> None:
        self.delivery = delivery
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked) -> None:
        await self.delivery.commit(self.consumer, list(revoked))
        self.delivery.forget(list(revoked))

    async def on_partitions_assigned(self, assigned) -> None:
        return None
