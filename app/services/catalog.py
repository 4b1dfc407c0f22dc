"""The configuration catalog: shops, channels, activities, split policies, sinks,
operation plans and operators on every worker.

Each worker reads every partition of the compacted configuration topics
from the beginning (no consumer group, read_committed) and keeps the latest
valid value per id in memory; a null value deletes the id. This is
deliberately not a Faust GlobalTable: GlobalTable recovery has dropped
standby updates in the past (faust-streaming issue #212), and the catalog
must be complete on every worker before the engine decides anything.

Invalid records are skipped here; the configuration agent sends them to
the dead-letter topic (once, from the worker that owns the partition).
The catalog is also the `Pricing` of the billing rules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer
from mode import Service

from app.domain.allocation import Operator
from app.domain.model import Channel, Shop
from app.domain.plans import Plan
from app.domain.pools import DEFAULT_POLICY, Policy
from app.domain.rates import Activity
from app.domain.sinks import Sink
from app.kafka.connection import KafkaConnection
from app.kafka.topics import Topics
from app.records.configuration import (
    decode_activity,
    decode_channel,
    decode_operator,
    decode_policy,
    decode_shop,
    decode_sink,
)
from app.records.fields import InvalidEvent
from app.records.operations import decode_plan

logger = logging.getLogger(__name__)

Decoder = Callable[[bytes | None, bytes | None], Any]


class Catalog(Service):
    """Latest configuration, kept current from its topics."""

    def __init__(self, connection: KafkaConnection, *, topics: Topics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connection = connection
        self.shops: dict[str, Shop] = {}
        self.channels: dict[str, Channel] = {}
        self.policies: dict[str, Policy] = {}
        self.sinks: dict[str, Sink] = {}
        self.plans: dict[str, Plan] = {}
        self.operators: dict[str, Operator] = {}
        self._activities: dict[str, Activity] = {}
        self._activities_by_shop: dict[str, dict[str, Activity]] = {}
        self._operators_by_shop: dict[str, dict[str, Operator]] = {}
        self._sources: dict[str, tuple[Decoder, Callable[[str, Any], None]]] = {
            topics.shops: (decode_shop, self._setter(self.shops)),
            topics.channels: (decode_channel, self._setter(self.channels)),
            topics.activities: (decode_activity,
                                self._shop_setter(self._activities, self._activities_by_shop)),
            topics.policy: (decode_policy, self._setter(self.policies)),
            topics.sinks: (decode_sink, self._setter(self.sinks)),
            topics.plans: (decode_plan, self._setter(self.plans)),
            topics.operators: (decode_operator,
                               self._shop_setter(self.operators, self._operators_by_shop)),
        }
        self._caught_up = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._offsets: AIOKafkaConsumer | None = None  # asks end offsets, fetches nothing
        self.records_read = 0
        self.last_update_ms: int | None = None

    @property
    def ready(self) -> bool:
        return self._caught_up.is_set()

    async def wait_ready(self) -> None:
        await self._caught_up.wait()

    async def read_to_end(self, topic: str, timeout_s: float = 5.0) -> None:
        """Wait until every record Kafka holds now on `topic` is applied here: read your
        writes, for a change that builds on the current entry (a plan's created_ms kept on
        re-PUT, a pause of the plan as last written), whichever worker wrote it a moment
        ago. TimeoutError when the catalog does not get there in `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            await self._caught_up.wait()
            consumer, offsets = self._consumer, self._offsets
            if consumer is None or offsets is None:
                raise TimeoutError("the catalog is not reading (stopping)")
            # Asked of a consumer of their own: the reading one answers only between its
            # fetches (up to half a second each).
            ends = await offsets.end_offsets(
                [tp for tp in consumer.assignment() if tp.topic == topic])
            # Records are applied as soon as getmany returns them, with no wait in between,
            # so a position past them means they are in the catalog.
            for tp, end in ends.items():
                while await consumer.position(tp) < end:
                    await asyncio.sleep(0.005)

    # -- lookups (also the billing rules' Pricing) ------------------------------

    def shop(self, shop_id: str) -> Shop | None:
        return self.shops.get(shop_id)

    def channel(self, channel_id: str) -> Channel:
        channel = self.channels.get(channel_id)
        return channel if channel is not None else Channel.unconfigured(channel_id)

    def activities(self, shop_id: str) -> Iterable[Activity]:
        return self._activities_by_shop.get(shop_id, {}).values()

    def operators_of(self, shop_id: str) -> list[Operator]:
        """The shop's operators, by id (the order allocation breaks ties in)."""
        return sorted(self._operators_by_shop.get(shop_id, {}).values(),
                      key=lambda operator: operator.operator_id)

    def policy(self, channel_id: str | None) -> Policy:
        if channel_id is not None and channel_id in self.policies:
            return self.policies[channel_id]
        return self.policies.get("default", DEFAULT_POLICY)

    # -- following the topics ------------------------------------------------

    @Service.task
    async def _follow(self) -> None:
        # Without a group id, aiokafka assigns every partition of the topics.
        consumer = self.connection.consumer(
            *self._sources, group_id=None,
            enable_auto_commit=False, isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        offsets = self.connection.consumer(group_id=None, enable_auto_commit=False,
                                           isolation_level="read_committed")
        await consumer.start()
        await offsets.start()
        try:
            while not consumer.assignment():
                await asyncio.sleep(0.05)
            targets = await consumer.end_offsets(list(consumer.assignment()))
            self._consumer, self._offsets = consumer, offsets
            while not self.should_stop:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, messages in batches.items():
                    for message in messages:
                        self.apply(tp.topic, message.key, message.value)
                if not self._caught_up.is_set() and await _reached(consumer, targets):
                    logger.info("configuration loaded: %d shops, %d channels, %d activities, "
                                "%d policies", len(self.shops), len(self.channels),
                                len(self._activities), len(self.policies))
                    self._caught_up.set()
        finally:
            self._consumer = self._offsets = None
            await offsets.stop()
            await consumer.stop()

    def apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Apply one configuration record (null value: delete the key)."""
        decode, store = self._sources[topic]
        self.records_read += 1
        self.last_update_ms = int(time.time() * 1000)
        ident = None if key is None else key.decode("utf-8", "replace")
        if value is None:
            if ident is not None:
                store(ident, None)
            return
        try:
            entry = decode(value, key)
        except InvalidEvent:
            return
        store(ident or _natural_id(entry), entry)

    @staticmethod
    def _setter(entries: dict[str, Any]) -> Callable[[str, Any], None]:
        def store(ident: str, entry: Any) -> None:
            if entry is None:
                entries.pop(ident, None)
            else:
                entries[ident] = entry
        return store

    @staticmethod
    def _shop_setter(entries: dict[str, Any], by_shop: dict[str, dict[str, Any]]
                     ) -> Callable[[str, Any], None]:
        """A setter that also keeps the entries indexed by their `shop_id` (an entry may
        move to another shop)."""
        def store(ident: str, entry: Any) -> None:
            old = entries.pop(ident, None)
            if old is not None:
                by_shop.get(old.shop_id, {}).pop(ident, None)
            if entry is not None:
                entries[ident] = entry
                by_shop.setdefault(entry.shop_id, {})[ident] = entry
        return store


def _natural_id(entry: Any) -> str:
    # The specific ids first: activities, plans and operators also name a shop_id.
    for name in ("operator_id", "activity_id", "plan_id", "shop_id", "channel_id", "sink_id"):
        if hasattr(entry, name):
            return getattr(entry, name)
    raise InvalidEvent("configuration record without a key or an id")


async def _reached(consumer: AIOKafkaConsumer, targets: dict) -> bool:
    for tp, end in targets.items():
        if await consumer.position(tp) < end:
            return False
    return True
