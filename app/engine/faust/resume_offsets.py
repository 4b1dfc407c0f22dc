"""Resuming offsets: a partition nobody ever committed resumes from its start.

Bug worked around: Faust drops messages fetched while a rebalance is in
progress and relies on `Consumer.perform_seek` to fetch them again. It seeks
with aiokafka's `seek_to_committed`, which skips partitions whose committed
offset is missing or 0, so for a partition nobody ever committed the
dropped messages were never fetched again: an order produced while a worker
started was silently lost. Such partitions start from the beginning here,
which is what `auto_offset_reset=earliest` means for a group that has
processed nothing of them.

Upstream: no upstream issue found (robinhood/faust#542 fixed a neighbouring
case: the read offset kept after a seek to offset 0).
"""

from __future__ import annotations

from faust.transport.consumer import Consumer

from app.engine.faust.patching import Patch, PrivateAttribute


async def _perform_seek(self: Consumer) -> None:
    """Seek every assigned stream partition to where processing must resume."""
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


PATCHES = (Patch(Consumer, "perform_seek", _perform_seek),)
PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = (
    (Consumer, "_read_offset"),
    (Consumer, "_committed_offset"),
    (Consumer, "_is_changelog_tp"),
)
