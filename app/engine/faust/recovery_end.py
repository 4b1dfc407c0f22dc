"""Recovery's end at the transaction markers: table recovery ends once only a marker is left.

Bug worked around: every transaction ends a changelog partition with a
commit marker, which a consumer never receives, so Faust's recovery never
sees the last offset it waits for; it notices only after two 5-second idle
timeouts, which made every start and rebalance 10+ seconds slower. A watcher
started at each assignment (`watch_recovery`) ends the recovery once Faust
itself has applied every partition up to the offset just before its last
one (the marker), judged from Faust's own progress.

Upstream: no upstream issue found for the delay (faust-streaming/faust#47
reports table recovery stalling under exactly_once altogether).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.tables.recovery import Recovery

from app.engine.faust.attached import attach_state
from app.engine.faust.patching import Patch, PrivateAttribute

logger = logging.getLogger(__name__)

_POLL_S = 0.1
_GIVE_UP_S = 120.0


def watch_recovery(app: Any) -> None:
    """Watch each of `app`'s table recoveries, from every assignment on."""
    watchers = attach_state(app).recovery_watchers

    @app.on_partitions_assigned.connect
    async def _watch_recovery(sender: Any, assigned: Any, **_: Any) -> None:
        task = asyncio.ensure_future(_end_recovery_at_transaction_markers(sender))
        watchers.add(task)
        task.add_done_callback(watchers.discard)


async def _end_recovery_at_transaction_markers(app: Any) -> None:
    recovery = app.tables.recovery
    generation = app.consumer_generation_id
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + _GIVE_UP_S
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


PATCHES: tuple[Patch, ...] = ()
PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = ((Recovery, "_set_recovery_ended"),)
