"""Targeted fixes of faust-streaming 0.15 behaviour that would lose events.

Applied once when the app module is imported. Each fix names the symptom it
prevents; remove a fix when the pinned Faust version no longer needs it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

logger = logging.getLogger(__name__)

_APPLIED = False
_POLL_S = 0.1
_WATCHERS: set[asyncio.Future] = set()


async def _perform_seek(self: Consumer) -> None:
    """Seek every assigned stream partition to where processing must resume.

    Faust drops messages fetched while a rebalance is in progress and relies
    on this seek to fetch them again. aiokafka's seek_to_committed skips
    partitions whose committed offset is missing or 0, so for a partition
    nobody ever committed, the dropped messages were never fetched again: an
    order produced while a worker started was silently lost. Such partitions
    start from the beginning here, which is what `auto_offset_reset=earliest`
    means for a group that has processed nothing of them.
    """
    committed = await self.seek_to_committed()
    self._read_offset.update({
        tp: offset if offset is not None and offset >= 0 else None
        for tp, offset in committed.items()
    })
    self._committed_offset.update({
        tp: offset for tp, offset in committed.items() if offset
    })
    unstarted = [tp for tp, offset in committed.items()
                 if not offset and not self._is_changelog_tp(tp)]
    if unstarted:
        # Offset 0, or the log start if retention removed it (auto_offset_reset).
        await self.seek_wait({tp: 0 for tp in unstarted})


async def _highwaters(self: AIOKafkaConsumerThread, partitions: Any) -> Any:
    """The end of each changelog partition, asked of the broker.

    In exactly-once mode Faust took the consumer's cached last stable
    offset, which is unknown (so: -1) for a partition not fetched since it
    was assigned; a worker that got back a partition it had owned before
    then crashed on "persisted offset higher than highwater", or, with the
    consistency check off, would have skipped the partition's new changes.
    A ListOffsets request with the consumer's read_committed isolation
    returns the true last stable offset.
    """
    return await self._ensure_consumer().end_offsets(partitions)


async def _end_recovery_at_transaction_markers(app: Any) -> None:
    """Finish table recovery as soon as only a transaction marker is left to read.

    Every transaction ends a changelog partition with a commit marker, which
    a consumer never receives, so Faust's recovery never sees the last offset
    it waits for; it notices only after two 5-second idle timeouts, which
    made every start and rebalance 10+ seconds slower. This watcher ends the
    recovery once Faust itself has applied every partition up to the offset
    just before its last one (the marker), judged from Faust's own progress.
    """
    recovery = app.tables.recovery
    generation = app.consumer_generation_id
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + 120.0
    while app.consumer_generation_id == generation and loop.time() < give_up_at:
        await asyncio.sleep(_POLL_S)
        if recovery.completed.is_set():
            return
        if not recovery.in_recovery or not _only_markers_left(recovery):
            continue
        offsets = recovery.active_offsets
        for tp, highwater in recovery.active_highwaters.items():
            offsets[tp] = max(offsets[tp], highwater)
        logger.info("table recovery reached the transaction markers; ending it")
        recovery.flush_buffers()
        recovery._set_recovery_ended()
        recovery.signal_recovery_end.set()
        return


def _only_markers_left(recovery: Any) -> bool:
    highwaters = recovery.active_highwaters
    offsets = recovery.active_offsets
    if not highwaters or any(offsets[tp] is None for tp in highwaters):
        return False  # Faust has not read its starting offsets yet
    behind = [tp for tp, highwater in highwaters.items()
              if highwater is not None and highwater >= 0 and offsets[tp] < highwater]
    return bool(behind) and all(offsets[tp] >= highwaters[tp] - 1 for tp in behind)


def apply(app: Any) -> None:
    global _APPLIED
    if not _APPLIED:
        Consumer.perform_seek = _perform_seek
        AIOKafkaConsumerThread._highwaters = _highwaters
        _APPLIED = True

    @app.on_partitions_assigned.connect
    async def _watch_recovery(sender: Any, assigned: Any, **_: Any) -> None:
        task = asyncio.ensure_future(_end_recovery_at_transaction_markers(sender))
        _WATCHERS.add(task)
        task.add_done_callback(_WATCHERS.discard)
