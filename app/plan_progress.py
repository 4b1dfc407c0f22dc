"""Every partition's progress of every plan occurrence, on every worker (for /plans).

Each partition keeps its occurrences' progress in the `plan_progress` table
(tables/operations.py); this service reads that table's changelog whole
(all partitions, read_committed, no consumer group), so any worker can show
a plan's progress across the partitions other workers own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from mode import Service

from app.connection import KafkaConnection, started
from app.domain.execution import Progress

logger = logging.getLogger(__name__)


class PlanProgress(Service):
    def __init__(self, connection: KafkaConnection, changelog: Callable[[], str],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connection = connection
        self.changelog = changelog
        self._rows: dict[str, dict[int, Progress]] = {}  # occurrence -> partition -> progress

    def of_plan(self, plan_id: str) -> dict[str, dict[int, Progress]]:
        """The plan's occurrences (oldest first), each by partition."""
        found = {occurrence: dict(rows) for occurrence, rows in self._rows.items()
                 if rows and next(iter(rows.values())).plan_id == plan_id}
        return dict(sorted(found.items(), key=lambda item: next(iter(item[1].values())).fire_ms))

    def apply(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        occurrence = key.decode("utf-8", "replace")
        if value is None:
            self._rows.get(occurrence, {}).pop(partition, None)
            return
        try:
            self._rows.setdefault(occurrence, {})[partition] = Progress.decode(
                orjson.loads(value))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            logger.warning("plan progress %r: unreadable changelog record", occurrence)

    @Service.task
    async def _follow(self) -> None:
        consumer = self.connection.consumer(
            self.changelog(), group_id=None, enable_auto_commit=False,
            isolation_level="read_committed", auto_offset_reset="earliest")
        async with started(consumer):
            while not self.should_stop:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, messages in batches.items():
                    for message in messages:
                        self.apply(tp.partition, message.key, message.value)
