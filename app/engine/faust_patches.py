"""Targeted fixes of faust-streaming 0.15 behaviour that would lose events.

Applied once when the app module is imported. Each fix names the symptom it
prevents; remove a fix when the pinned Faust version no longer needs it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.transport.consumer import Consumer

logger = logging.getLogger(__name__)

_APPLIED = False
_POLL_S = 0.1
_SETTLED_POLLS = 3
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


async def _end_recovery_at_transaction_markers(app: Any) -> None:
    """Finish table recovery as soon as only transaction markers are left to read.

    Every transaction ends a changelog partition with a commit marker, which
    a consumer never receives, so Faust's recovery never sees the last offset
    it waits for; it notices only after two 5-second idle timeouts, which
    made every start and rebalance 10+ seconds slower. This watcher applies
    Faust's own test (consumer position at the high water) every 100 ms,
    once the changelog queue has stayed empty for a few polls.
    """
    recovery = app.tables.recovery
    generation = app.consumer_generation_id
    queue = app.tables.changelog_queue
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + 60.0
    settled = 0
    while app.consumer_generation_id == generation and loop.time() < give_up_at:
        await asyncio.sleep(_POLL_S)
        if recovery.completed.is_set():
            return
        if not recovery.in_recovery:
            continue
        settled = settled + 1 if queue.empty() and await _only_markers_left(app) else 0
        if settled < _SETTLED_POLLS:
            continue
        offsets = recovery.active_offsets
        for tp, highwater in recovery.active_highwaters.items():
            if highwater is not None and offsets[tp] is not None and offsets[tp] < highwater:
                offsets[tp] = highwater
        if recovery.in_recovery and not recovery.need_recovery():
            logger.info("table recovery reached the transaction markers; ending it")
            recovery.flush_buffers()
            recovery._set_recovery_ended()
            recovery.signal_recovery_end.set()
        return


async def _only_markers_left(app: Any) -> bool:
    recovery = app.tables.recovery
    offsets = recovery.active_offsets
    for tp, highwater in recovery.active_highwaters.items():
        if highwater is None or offsets[tp] is None or offsets[tp] >= highwater:
            continue
        position = await app.consumer.position(tp)
        if position is None or position < highwater:
            return False
    return True


def apply(app: Any) -> None:
    global _APPLIED
    if not _APPLIED:
        Consumer.perform_seek = _perform_seek
        _APPLIED = True

    @app.on_partitions_assigned.connect
    async def _watch_recovery(sender: Any, assigned: Any, **_: Any) -> None:
        task = asyncio.ensure_future(_end_recovery_at_transaction_markers(sender))
        _WATCHERS.add(task)
        task.add_done_callback(_WATCHERS.discard)
