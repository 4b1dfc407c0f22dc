"""One Kafka transaction per slot and commit: outputs, changelog records and input offsets.

A slot is a fixed block of input partitions (see slots.py); each has its own
transactional id, and the engine commits the work of all the partitions of
a slot it owns wholly in one transaction. Faust (in `exactly_once` mode)
creates a transactional producer per assigned partition on every rebalance,
before table recovery starts, which fences a previous owner of the
partition at the right moment; the producers of the larger slots are
started at the same moment (`start_slot_producers`, called from Faust's
rebalance, see faust/slot_producers.py). We drive the transactions ourselves, because
Faust's own transaction path (a) picks the transaction by the *destination*
partition, so a repartitioned output lands in another partition's
transaction, (b) sends table changelog records through a buffer outside the
transaction, and (c) logs and swallows commit errors. See docs/exactly-once.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from aiokafka import TopicPartition
from aiokafka.errors import (
    IllegalOperation,
    InvalidProducerEpoch,
    KafkaError,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)
from aiokafka.producer.transaction_manager import TransactionState

from app.engine.faust.producers import (
    renew_transaction_producer,
    sender_dead,
    transaction_producer,
    transaction_state,
)
from app.engine.slots import Slot, fenced_slots
from app.kafka.topology import track_topics

logger = logging.getLogger(__name__)

# An abort waits for the broker to end the transaction; past this it is not coming.
ABORT_TIMEOUT_S = 60.0
RENEW_TIMEOUT_S = 30.0

# Errors after which this worker can no longer commit for the slot.
FENCED_ERRORS = (ProducerFenced, InvalidProducerEpoch, TransactionalIdAuthorizationFailed)


class PartitionLost(Exception):
    """A slot's transactions were fenced or its producer is gone (its partitions moved away)."""


class Record(NamedTuple):
    # A NamedTuple, not a dataclass: one is built per output record and changelog entry.
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None


def compact(value: bytes | None) -> bytes | None:
    """`value` in a block of its own size, for a record the engine holds until a commit.

    orjson (3.12 and later) returns its output in the buffer it wrote it to, at
    least 4 KiB and a power of two: a 300-byte record held that way costs 4 KiB.
    A worker holds up to three commits' worth of records (`CPS_COMMIT_MAX_RECORDS`)
    and their changelog rows; a 500,000-member plan's worker peaked at 538 MiB
    without this copy and at 414 MiB with it (about 110 ns a record).
    """
    return None if value is None else memoryview(value).tobytes()


class SlotTransactions:
    """Commits batches of records plus input offsets atomically, one transaction per slot."""

    def __init__(self, app, *, group_id: str) -> None:
        self.app = app
        self.group_id = group_id
        self._slot_producers: set[str] = set()

    def transactional_id(self, slot: Slot, topic: str) -> str | None:
        """The slot's id; a single partition keeps the id Faust gives it ("<app>-<group>-<p>")."""
        try:
            group = self.app.assignor.group_for_topic(topic)
        except KeyError:
            return None
        return f"{self.app.conf.id}-{group}-{_named(slot, joiner='to')}"

    async def start_slot_producers(self, owned: set[int], partitions: int, topic: str) -> None:
        """Start (and so fence) the producer of every larger slot holding an owned partition.

        Called on every assignment, before table recovery. Faust starts the
        single partitions' producers itself and keeps those of partitions a
        worker keeps; a larger slot's producer is renewed every time, because
        another worker that owned part of the slot meanwhile fenced it.
        """
        faust_producer = self.app.producer
        for tid in self._slot_producers:
            await faust_producer.stop_transaction(tid)
        wanted = [self.transactional_id(slot, topic)
                  for slot in fenced_slots(owned, partitions) if slot[1] - slot[0] > 1]
        self._slot_producers = {tid for tid in wanted if tid is not None}
        await asyncio.gather(*(faust_producer.maybe_begin_transaction(tid)
                               for tid in sorted(self._slot_producers)))
        if self._slot_producers:
            logger.info("transactional ids of this worker's slots: %s",
                        ", ".join(sorted(self._slot_producers)))

    async def _renew(self, tid: str, dead) -> object:
        """Replace a producer whose sender routine died by a new one of the same id.

        aiokafka's sender can die on a connection closed mid-request (seen in the
        broker-restart test), leaving a producer that never sends again. The new
        producer's initialisation aborts the dead one's open transaction, as
        Faust's does on a rebalance; the engine only retries a slot it still
        owns, so no other worker's producer is fenced.
        """
        logger.warning("transactional producer %s stopped sending; starting a new one", tid)
        fresh = await renew_transaction_producer(self.app.producer, tid, RENEW_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(dead.stop(), RENEW_TIMEOUT_S)
        return fresh

    async def commit(self, slot: Slot, anchor_topic: str, records: Iterable[Record],
                     offsets: Mapping[tuple[str, int], int]) -> list:
        """Send `records` and commit them with `offsets` ((topic, partition) -> next offset)
        in one transaction of `slot`.

        Returns the offset of each record, in order. Raises PartitionLost
        when this worker may no longer write for the slot, KafkaError when a
        retry may succeed (the transaction is then aborted and nothing of it is visible).
        """
        tid = self.transactional_id(slot, anchor_topic)
        producer, lock = (None, None) if tid is None else transaction_producer(
            self.app.producer, tid)
        if producer is None or lock is None:
            raise PartitionLost(f"no transactional producer for partitions {_named(slot)}")
        records = list(records)
        async with lock:
            try:
                if sender_dead(producer):
                    producer = await self._renew(tid, producer)
                await self._open(producer, slot)
                await track_topics(producer, (r.topic for r in records))
                # Every batch is awaited, and only then the offsets sent: aiokafka's commit
                # waits for batches to be sent, not to succeed, and a broker that verifies
                # a transaction's writes refuses a Produce while the same transaction's
                # AddOffsetsToTxn is being written (docs/exactly-once.md).
                written = await send_batched(producer, records)
                if offsets:
                    await producer.send_offsets_to_transaction(
                        {TopicPartition(topic, partition): offset
                         for (topic, partition), offset in offsets.items()},
                        self.group_id,
                    )
                await producer.commit_transaction()
            except FENCED_ERRORS as exc:
                raise PartitionLost(f"partitions {_named(slot)} fenced: {exc!r}") from exc
            except (KafkaError, IllegalOperation, AssertionError, TimeoutError) as exc:
                await self._abort(producer, slot, exc)
                raise KafkaError(f"transaction of partitions {_named(slot)} failed: "
                                 f"{exc!r}") from exc
        return written

    async def _open(self, producer, slot: Slot) -> None:
        """Begin a transaction, first aborting one an earlier error left half done."""
        state = transaction_state(producer)
        if state is TransactionState.IN_TRANSACTION:
            return
        if state is TransactionState.FATAL_ERROR:
            raise PartitionLost(f"partitions {_named(slot)}: producer in a fatal error state")
        if state is TransactionState.ABORTABLE_ERROR:
            await producer.abort_transaction()
        await producer.begin_transaction()

    async def _abort(self, producer, slot: Slot, cause: BaseException) -> None:
        logger.warning("aborting the transaction of partitions %s after %r", _named(slot), cause)
        if sender_dead(producer):
            return  # the abort would wait for ever; the next attempt renews the producer
        try:
            await asyncio.wait_for(producer.abort_transaction(), ABORT_TIMEOUT_S)
        except FENCED_ERRORS as exc:
            raise PartitionLost(f"partitions {_named(slot)} fenced: {exc!r}") from exc
        except TimeoutError as exc:
            raise PartitionLost(f"partitions {_named(slot)}: abort not done in "
                                f"{ABORT_TIMEOUT_S:.0f}s") from exc
        except (KafkaError, IllegalOperation, AssertionError) as exc:
            logger.warning("abort of partitions %s failed too: %r", _named(slot), exc)


def _named(slot: Slot, joiner: str = "-") -> str:
    first, end = slot
    return str(first) if end - first == 1 else f"{first}{joiner}{end - 1}"


async def send_batched(producer, records: list[Record]) -> list[int]:
    """Send `records` as one batch per topic-partition; the offset of each, in order.

    One `BatchBuilder` per topic-partition instead of one `send` (partitioner,
    accumulator, future) per record: the producer's per-record cost was a fifth
    of the worker's CPU in the benchmark's profiles.
    """
    open_batches: dict[tuple[str, int], tuple[object, list[int]]] = {}
    submitted: list[tuple[asyncio.Future, list[int]]] = []
    for index, record in enumerate(records):
        where = (record.topic, record.partition)
        batch, members = open_batches.get(where) or (None, [])
        if batch is None or batch.append(timestamp=None, key=record.key,
                                         value=record.value) is None:
            if batch is not None:  # full: send it, start the next
                submitted.append((await producer.send_batch(
                    batch, record.topic, partition=record.partition), members))
            batch, members = producer.create_batch(), []
            # A fresh batch takes any one record, however large.
            batch.append(timestamp=None, key=record.key, value=record.value)
        members.append(index)
        open_batches[where] = (batch, members)
    for (topic, partition), (batch, members) in open_batches.items():
        submitted.append((await producer.send_batch(batch, topic, partition=partition),
                          members))
    offsets = [0] * len(records)
    for future, members in submitted:
        base = (await future).offset
        for relative, index in enumerate(members):
            offsets[index] = base + relative
    return offsets
