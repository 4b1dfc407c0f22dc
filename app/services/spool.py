"""The click spool: every click is written here (fsynced) before its redirect is answered.

A worker never loses a click it has redirected, whether Kafka is up or not:
the click endpoint appends the click to an append-only log in
CPS_DATA_DIR/spool and answers once the line is on disk (appends arriving
together share one fsync). The `SpoolPublisher` moves the log into
cps.clicks in Kafka transactions that also record, in a compacted topic, how
far the log has been sent; after a crash it resumes exactly there, so each
click reaches the topic once. Sent segments are deleted.

Log lines are `<seq>\\t<click JSON>\\n`; a line cut short by a crash is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerFenced
from mode import Service

from app.kafka.connection import KafkaConnection
from app.kafka.topology import track_topics
from app.records.fields import InvalidEvent
from app.records.internal import decode_spool_progress

logger = logging.getLogger(__name__)

SEGMENT_BYTES = 4 * 1024 * 1024


class ClickSpool:
    """Append-only, fsynced segments of clicks not yet in Kafka."""

    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self._opened = False
        self._file: Any = None
        self._segment_first = 0
        self._next_seq = 1
        self._pending: list[tuple[bytes, asyncio.Future]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task | None = None
        self.appended = asyncio.Event()
        self.sent_seq = 0

    # -- identity and state on disk ---------------------------------------------

    @property
    def spool_id(self) -> str:
        """A stable id of this spool (its directory), the key of its progress in Kafka."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "spool-id"
        if not path.exists():
            path.write_text(uuid.uuid4().hex)
        return path.read_text().strip()

    @property
    def last_seq(self) -> int:
        self._open()
        return self._next_seq - 1

    @property
    def depth(self) -> int:
        """Clicks written here and not yet confirmed in Kafka."""
        return max(0, self.last_seq - self.sent_seq)

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob("seg-*.log"))

    def _open(self) -> None:
        if self._opened:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        segments = self._segments()
        if segments:
            last = segments[-1]
            good, last_seq = _valid_prefix(last)
            if good != last.stat().st_size:
                with open(last, "r+b") as handle:  # drop a line a crash cut short
                    handle.truncate(good)
            self._next_seq = (last_seq or _first_seq(last) - 1) + 1
            self._segment_first = _first_seq(last)
            self._file = open(last, "ab")  # noqa: SIM115 - kept open for appending
        self._opened = True

    def _roll(self) -> None:
        if self._file is not None:
            self._file.close()
        self._segment_first = self._next_seq
        path = self.directory / f"seg-{self._next_seq:016d}.log"
        self._file = open(path, "ab")  # noqa: SIM115 - kept open for appending
        _fsync_directory(self.directory)

    # -- writing ------------------------------------------------------------------

    async def append(self, line: bytes) -> int:
        """Write one click durably; returns its sequence number once it is on disk."""
        self._open()
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # events and the flusher belong to one loop
            self._loop, self._wake, self.appended = loop, asyncio.Event(), asyncio.Event()
            self._flusher = None
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_loop())
        future = loop.create_future()
        self._pending.append((line, future))
        self._wake.set()
        return await future

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                seqs = self._write(batch)
                await asyncio.to_thread(os.fsync, self._file.fileno())
            except OSError as exc:
                for _line, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_line, future), seq in zip(batch, seqs, strict=True):
                if not future.done():
                    future.set_result(seq)
            self.appended.set()

    def _write(self, batch: list[tuple[bytes, asyncio.Future]]) -> list[int]:
        if self._file is None or self._file.tell() >= self.segment_bytes:
            self._roll()
        seqs, chunks = [], []
        for line, _future in batch:
            seq = self._next_seq
            self._next_seq += 1
            seqs.append(seq)
            chunks.append(b"%d\t%s\n" % (seq, line))
        self._file.write(b"".join(chunks))
        self._file.flush()
        return seqs

    # -- reading and releasing ---------------------------------------------------

    def read_after(self, seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` lines with a sequence number above `seq`, in order."""
        self._open()
        found: list[tuple[int, bytes]] = []
        segments = self._segments()
        for index, path in enumerate(segments):
            following = segments[index + 1] if index + 1 < len(segments) else None
            if following is not None and _first_seq(following) <= seq + 1:
                continue  # everything here is already sent
            with open(path, "rb") as handle:
                for raw in handle:
                    if not raw.endswith(b"\n"):
                        break  # being written
                    number, _, line = raw.rstrip(b"\n").partition(b"\t")
                    if int(number) > seq:
                        found.append((int(number), line))
                        if len(found) >= limit:
                            return found
        return found

    def release_through(self, seq: int) -> None:
        """Delete the segments whose clicks all reached Kafka (never the one being written)."""
        self.sent_seq = max(self.sent_seq, seq)
        segments = self._segments()
        for path, following in itertools.pairwise(segments):
            if _first_seq(following) <= seq + 1:
                path.unlink(missing_ok=True)


def _first_seq(path: Path) -> int:
    return int(path.stem.split("-")[1])


def _valid_prefix(path: Path) -> tuple[int, int | None]:
    """Bytes of whole, well-formed lines at the start of the file, and the last seq."""
    good, last = 0, None
    with open(path, "rb") as handle:
        for raw in handle:
            number, tab, _line = raw.partition(b"\t")
            if not raw.endswith(b"\n") or not tab or not number.isdigit():
                break
            good += len(raw)
            last = int(number)
    return good, last


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolPublisher(Service):
    """Moves spooled clicks into cps.clicks, each exactly once, whenever Kafka answers."""

    def __init__(self, spool: ClickSpool, connection: KafkaConnection, *, clicks_topic: str,
                 positions_topic: str, app_id: str, batch: int = 2000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spool = spool
        self.connection = connection
        self.clicks_topic = clicks_topic
        self.positions_topic = positions_topic
        self.transactional_id = f"{app_id}-spool-{spool.spool_id}"
        self.batch = batch
        self.forwarded = 0
        self.last_error: str | None = None

    @Service.task
    async def _forward(self) -> None:
        delay = 0.2
        while not self.should_stop:
            producer = self.connection.producer(acks="all", enable_idempotence=True,
                                                transactional_id=self.transactional_id)
            try:
                # Starting fences an earlier run of this spool and ends its open transaction,
                # so the progress read next is final.
                await producer.start()
                sent = await self._read_progress()
                self.spool.release_through(sent)
                delay = 0.2
                await self._forward_with(producer)
            except (KafkaError, OSError) as exc:
                self.last_error = repr(exc)
                logger.warning("click spool: Kafka unavailable (%r); %d clicks wait, "
                               "retrying in %.1fs", exc, self.spool.depth, delay)
            finally:
                with contextlib.suppress(Exception):
                    await producer.stop()
            await self.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _forward_with(self, producer: AIOKafkaProducer) -> None:
        key = self.spool.spool_id.encode()
        while not self.should_stop:
            lines = self.spool.read_after(self.spool.sent_seq, self.batch)
            if not lines:
                self.spool.appended.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.spool.appended.wait(), 1.0)
                continue
            try:
                await track_topics(producer, (self.clicks_topic, self.positions_topic))
                async with producer.transaction():
                    for _seq, line in lines:
                        await producer.send(self.clicks_topic, line, key=_buyer_key(line))
                    await producer.send(self.positions_topic, b"%d" % lines[-1][0], key=key)
            except ProducerFenced:
                logger.error("click spool %s is used by another process; check that "
                             "workers do not share CPS_DATA_DIR", self.spool.directory)
                raise
            self.forwarded += len(lines)
            self.last_error = None
            self.spool.release_through(lines[-1][0])

    async def _read_progress(self) -> int:
        """How far this spool reached the topic, from its compacted progress records."""
        consumer = self.connection.consumer(self.positions_topic, group_id=None,
                                            isolation_level="read_committed",
                                            auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        key = self.spool.spool_id.encode()
        sent = 0
        try:
            while not consumer.assignment():
                await asyncio.sleep(0.05)
            ends = await consumer.end_offsets(list(consumer.assignment()))
            while not await _reached(consumer, ends):
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    for message in messages:
                        if message.key == key and message.value is not None:
                            sent = _progress_in(message, sent)
        finally:
            await consumer.stop()
        return sent


def _progress_in(message: Any, before: int) -> int:
    """The progress a spool's record says, or `before` when it is unreadable: sending
    clicks again from there is harmless (clicks are deduplicated by id)."""
    try:
        return decode_spool_progress(message.value)
    except InvalidEvent as exc:
        logger.warning("click spool: %s partition %d offset %d skipped (%s)", message.topic,
                       message.partition, message.offset, exc)
        return before


async def _reached(consumer: AIOKafkaConsumer, ends: dict) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


def _buyer_key(line: bytes) -> bytes | None:
    """The spooled click's buyer, the key producers should use for clicks."""
    try:
        return orjson.loads(line)["buyer_id"].encode()
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
