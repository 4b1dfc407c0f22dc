"""The configuration catalog: shops and channels as every worker sees them.

Each worker reads every partition of the compacted configuration topics
from the beginning (no consumer group, read_committed) and keeps the latest
valid value per id in memory; a null value deletes the id. This is
deliberately not a Faust GlobalTable: GlobalTable recovery has dropped
standby updates in the past (faust-streaming issue #212), and the catalog
must be complete on every worker before the engine decides anything.

Invalid records are skipped here; the configuration agent sends them to
the dead-letter topic (once, from the worker that owns the partition).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from aiokafka import AIOKafkaConsumer
from mode import Service

from app.domain.model import Channel, Shop
from app.records import InvalidEvent, decode_channel, decode_shop

logger = logging.getLogger(__name__)

Decoder = Callable[[bytes | None, bytes | None], Any]


class Catalog(Service):
    """Latest shops and channels, kept current from their topics."""

    def __init__(self, *, bootstrap: str, shops_topic: str, channels_topic: str,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bootstrap = bootstrap
        self.shops: dict[str, Shop] = {}
        self.channels: dict[str, Channel] = {}
        self._sources: dict[str, tuple[dict[str, Any], Decoder, Callable[[Any], str]]] = {
            shops_topic: (self.shops, decode_shop, attrgetter("shop_id")),
            channels_topic: (self.channels, decode_channel, attrgetter("channel_id")),
        }
        self._caught_up = asyncio.Event()
        self.records_read = 0
        self.last_update_ms: int | None = None

    @property
    def ready(self) -> bool:
        return self._caught_up.is_set()

    async def wait_ready(self) -> None:
        await self._caught_up.wait()

    def shop(self, shop_id: str) -> Shop | None:
        return self.shops.get(shop_id)

    def channel(self, channel_id: str) -> Channel:
        channel = self.channels.get(channel_id)
        return channel if channel is not None else Channel.unconfigured(channel_id)

    @Service.task
    async def _follow(self) -> None:
        # Without a group id, aiokafka assigns every partition of the topics.
        consumer = AIOKafkaConsumer(
            *self._sources, bootstrap_servers=self.bootstrap, group_id=None,
            enable_auto_commit=False, isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            while not consumer.assignment():
                await asyncio.sleep(0.05)
            targets = await consumer.end_offsets(list(consumer.assignment()))
            while not self.should_stop:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, messages in batches.items():
                    for message in messages:
                        self._apply(tp.topic, message.key, message.value)
                if not self._caught_up.is_set() and await _reached(consumer, targets):
                    logger.info("configuration loaded: %d shops, %d channels",
                                len(self.shops), len(self.channels))
                    self._caught_up.set()
        finally:
            await consumer.stop()

    def _apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        entries, decode, ident = self._sources[topic]
        self.records_read += 1
        self.last_update_ms = int(time.time() * 1000)
        if value is None:
            if key is not None:
                entries.pop(key.decode("utf-8", "replace"), None)
            return
        try:
            entry = decode(value, key)
        except InvalidEvent:
            return
        entries[ident(entry)] = entry


async def _reached(consumer: AIOKafkaConsumer, targets: dict) -> bool:
    for tp, end in targets.items():
        if await consumer.position(tp) < end:
            return False
    return True
