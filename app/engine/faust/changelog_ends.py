"""Changelog ends: the end of each changelog partition asked of the broker.

Bug worked around: in exactly-once mode Faust took a changelog partition's
end (`AIOKafkaConsumerThread._highwaters`) from the consumer's cached last
stable offset, which is unknown (so: -1) for a partition not fetched since
it was assigned; a worker that got back a partition it had owned before
then crashed on "persisted offset higher than highwater", or, with the
consistency check off, would have skipped the partition's new changes. A
ListOffsets request with the consumer's read_committed isolation returns
the true last stable offset.

Upstream: the crash is the one reported in faust-streaming/faust#158.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from app.engine.faust.patching import Patch, PrivateAttribute


async def _highwaters(self: AIOKafkaConsumerThread, partitions: Any) -> Any:
    return await self._ensure_consumer().end_offsets(partitions)


PATCHES = (Patch(AIOKafkaConsumerThread, "_highwaters", _highwaters),)
PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = (
    (AIOKafkaConsumerThread, "_highwaters"),
    (AIOKafkaConsumerThread, "_ensure_consumer"),
)
