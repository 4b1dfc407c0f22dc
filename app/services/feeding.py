"""Producing records to the engine's input topics, for the CLI's feeding commands."""

from __future__ import annotations

import asyncio
from types import TracebackType

from aiokafka import AIOKafkaProducer

from app.config.settings import Settings
from app.kafka.connection import KafkaConnection
from app.kafka.topics import Topics
from app.kafka.topology import ensure_topics, track_topics


class Feeder:
    """An idempotent producer for one engine's topics (names without the prefix)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connection = KafkaConnection.from_settings(settings)
        self.topics = Topics(settings.topic_prefix)
        self._producer: AIOKafkaProducer | None = None
        self._pending: list[asyncio.Future] = []
        self._tracked: set[str] = set()
        self.sent = 0

    def topic(self, name: str) -> str:
        """The full name: SPEC names get the prefix, names that already carry it stay."""
        prefix = self.settings.topic_prefix
        return name if name.startswith(prefix) else prefix + name

    async def __aenter__(self) -> Feeder:
        await ensure_topics(self.connection, self.topics.specs(),
                            partitions=self.settings.partitions,
                            replication=self.settings.replication)
        self._producer = self.connection.producer(
            acks="all", enable_idempotence=True,
            linger_ms=5, max_batch_size=256 * 1024,
        )
        await self._producer.start()
        return self

    async def send(self, topic: str, key: str | bytes | None, value: bytes | None) -> None:
        assert self._producer is not None, "use `async with Feeder(...)`"
        raw_key = key.encode() if isinstance(key, str) else key
        name = self.topic(topic)
        if name not in self._tracked:
            await track_topics(self._producer, (name,))
            self._tracked.add(name)
        self._pending.append(await self._producer.send(name, value, key=raw_key))
        self.sent += 1
        if len(self._pending) >= 10_000:
            await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                await self.flush()
        finally:
            if self._producer is not None:
                await self._producer.stop()
