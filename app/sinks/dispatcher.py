"""Runs one delivery per sink on this worker and keeps the sinks' queue topics in place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from mode import Service

from app.domain.sinks import shown_url
from app.kafka.connection import KafkaConnection
from app.kafka.topics import Role, TopicSpec
from app.kafka.topology import ensure_topics
from app.sinks.delivery import SinkDelivery
from app.sinks.fanout import SinkRegistry
from app.sinks.plan_actions import PlanActionGate
from app.sinks.webhook_client import WebhookClient

logger = logging.getLogger(__name__)


class SinkDispatcher(Service):
    """Follows the configured sinks: creates queue topics, starts and stops deliveries."""

    def __init__(self, registry: SinkRegistry, connection: KafkaConnection, *, app_id: str,
                 partitions: int, replication: int, deadletter_topic: str,
                 plan_actions: PlanActionGate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registry = registry
        self.connection = connection
        self.app_id = app_id
        self.partitions = partitions
        self.replication = replication
        self.deadletter_topic = deadletter_topic
        self.plan_actions = plan_actions
        self.deliveries: dict[str, tuple[SinkDelivery, asyncio.Task]] = {}
        self.synced = asyncio.Event()
        self._webhooks = WebhookClient()
        self._producer: AIOKafkaProducer | None = None

    def stats(self) -> dict[str, dict[str, Any]]:
        out = {}
        for queued in self.registry.sinks():
            sink = queued.sink
            delivery = self.deliveries.get(sink.sink_id)
            out[sink.sink_id] = {
                "kind": sink.kind, "target": shown_url(sink.url) if sink.url else sink.topic,
                "queue": queued.topic, "ready": queued.topic in self.registry.ready_topics,
                "streams": sorted(sink.streams), "filters": dict(sink.filters),
                "configured_rate_per_s": sink.rate_per_s, "enabled": sink.enabled,
                **(delivery[0].status() if delivery else {"starting": True}),
            }
        return out

    @Service.task
    async def _follow(self) -> None:
        while not self.should_stop:
            try:
                if self._producer is None:
                    # Deliveries write a record each (an operation record, a dead letter), up
                    # to `max_in_flight` at once: in aiokafka's 16 KiB batches they waited for
                    # each other (a full batch makes every sender wait for its drain).
                    producer = self.connection.producer(
                        acks="all", enable_idempotence=True, max_batch_size=1024 * 1024,
                        linger_ms=2)
                    await producer.start()
                    self._producer = producer
                await self._sync()
                self.synced.set()
            except Exception as exc:
                logger.warning("sinks: could not sync with the configuration: %r", exc)
            await self.sleep(0.5)

    async def _sync(self) -> None:
        wanted = {queued.sink.sink_id: queued for queued in self.registry.sinks()}
        missing = [q for q in wanted.values() if q.topic not in self.registry.ready_topics]
        if missing:
            await ensure_topics(self.connection, [TopicSpec(q.topic, Role.INTERNAL)
                                                  for q in missing],
                                partitions=self.partitions, replication=self.replication)
            self.registry.ready_topics.update(q.topic for q in missing)
        for sink_id in set(self.deliveries) - set(wanted):
            _delivery, task = self.deliveries.pop(sink_id)
            task.cancel()
        for sink_id, queued in wanted.items():
            running = self.deliveries.get(sink_id)
            if running is not None and not running[1].done():
                continue
            delivery = SinkDelivery(
                sink_id=sink_id, topic=queued.topic,
                current=lambda sink_id=sink_id: self.registry.sink(sink_id),
                connection=self.connection, group_id=f"{self.app_id}-sink-{sink_id}",
                deadletter_topic=self.deadletter_topic, webhooks=self._webhooks,
                producer=self._producer, plan_actions=self.plan_actions)
            self.deliveries[sink_id] = (delivery, asyncio.ensure_future(delivery.run()))

    async def on_stop(self) -> None:
        for _delivery, task in self.deliveries.values():
            task.cancel()
        for _delivery, task in self.deliveries.values():
            with contextlib.suppress(BaseException):
                await task
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
        await self._webhooks.close()
