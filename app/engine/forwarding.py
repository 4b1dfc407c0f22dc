"""Records forwarded at once, outside the partition transactions, to handlers that dedupe.

Re-keying an order onto its buyer's partition inside the source partition's
transaction made every such order wait for two commits before its
attribution could be read (BENCHMARKS.md). A forwarded record goes out
through a plain idempotent producer as soon as its event is handled, and
is readable as soon as the broker has it. Nothing is lost: the source
partition commits its input offsets only after the broker acknowledged
every record that partition forwarded (`PartitionWork.forwarded`). A
crash before that commit forwards the events again, so a forwarded topic's
handler must treat a second copy as a no-op (the attribution is decided
once per order; a click already in the buyer's history changes nothing).
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from mode import Service

from app.engine.transactions import Record, send_batched
from app.kafka.connection import KafkaConnection
from app.kafka.topology import track_topics

logger = logging.getLogger(__name__)

# Past this, a producer that keeps failing is not expected to recover.
GIVE_UP_S = 120.0


class ForwardingFailed(Exception):
    """Forwarded records could not be delivered; their source partitions must not commit."""


class Forwarder(Service):
    """Sends forwarded records in the order they came, batch after batch, until acknowledged."""

    def __init__(self, connection: KafkaConnection, *, client_id: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.connection = connection
        self.client_id = client_id
        self._queued: list[Record] = []
        self._delivered: asyncio.Future | None = None
        self._ready = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None

    def forward(self, record: Record) -> asyncio.Future:
        """Queue `record`; the future is done once the broker has it (shared by a whole batch)."""
        self._queued.append(record)
        if self._delivered is None:
            self._delivered = asyncio.get_running_loop().create_future()
            self._ready.set()
        return self._delivered

    def _fail(self, delivered: asyncio.Future, failure: Exception) -> None:
        """Fail the waiting commits, and every later one at once (the worker is restarting)."""
        logger.error("forwarding failed, restarting the worker: %r", failure)
        delivered.set_exception(failure)
        if self._delivered is None:
            self._delivered = asyncio.get_running_loop().create_future()
        self._delivered.set_exception(failure)  # returned to every later `forward`

    async def on_start(self) -> None:
        self._producer = self.connection.producer(
            client_id=f"{self.client_id}-forwarder",
            enable_idempotence=True, acks="all", linger_ms=0)
        await self._producer.start()

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    @Service.task
    async def _send_loop(self) -> None:
        while not self.should_stop:
            await self._ready.wait()
            self._ready.clear()
            records, delivered = self._queued, self._delivered
            self._queued, self._delivered = [], None
            try:
                await self._send_until_acknowledged(records)
            except asyncio.CancelledError:
                delivered.cancel()
                raise
            except Exception as exc:
                self._fail(delivered, exc)
                return
            delivered.set_result(None)

    async def _send_until_acknowledged(self, records: list[Record]) -> None:
        # Sending all of them again after an error may write a second copy of some:
        # the receiving handlers dedupe, and losing one is not an option.
        loop = asyncio.get_running_loop()
        give_up = loop.time() + GIVE_UP_S
        delay = 0.1
        while True:
            try:
                await track_topics(self._producer, (record.topic for record in records))
                await send_batched(self._producer, records)
                return
            except KafkaError as exc:
                if loop.time() >= give_up:
                    # The commits waiting for these fail and restart the worker, which
                    # handles the events again from the last committed offsets.
                    raise ForwardingFailed(f"{len(records)} records not acknowledged in "
                                           f"{GIVE_UP_S:.0f}s: {exc!r}") from exc
                logger.warning("forwarding %d records failed (%r); again in %.1fs",
                               len(records), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
