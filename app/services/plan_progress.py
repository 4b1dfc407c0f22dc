"""Plan state of every partition, on every worker (for /plans and the dashboard): each
occurrence's progress, and each operator's assignment counts.

Each partition keeps its occurrences' progress in the `plan_progress` table
(tables/operations.py) and its shops' operator counts in `operator_loads`
(tables/allocation.py); these services read such a table's changelog whole
(all partitions, read_committed, no consumer group), so any worker can show
what the partitions other workers own hold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from mode import Service

from app.domain.allocation import Load
from app.domain.execution import Progress
from app.kafka.connection import KafkaConnection, started
from app.records.allocation import decode_load

logger = logging.getLogger(__name__)


class ChangelogView(Service):
    """A table's changelog read whole and kept up to date; `apply` keeps what it needs."""

    def __init__(self, connection: KafkaConnection, changelog: Callable[[], str],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connection = connection
        self.changelog = changelog

    def apply(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        raise NotImplementedError

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


class PlanProgress(ChangelogView):
    def __init__(self, connection: KafkaConnection, changelog: Callable[[], str],
                 **kwargs: Any) -> None:
        super().__init__(connection, changelog, **kwargs)
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


class OperatorLoads(ChangelogView):
    """Each operator's assignments today and in total, by shop."""

    def __init__(self, connection: KafkaConnection, changelog: Callable[[], str],
                 **kwargs: Any) -> None:
        super().__init__(connection, changelog, **kwargs)
        self._loads: dict[str, dict[str, Load]] = {}  # shop -> operator -> load

    def of_shop(self, shop_id: str) -> dict[str, Load]:
        return dict(self._loads.get(shop_id, {}))

    def apply(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        shop, sep, operator = (key or b"").partition(b"\x1f")
        if not sep:
            return
        loads = self._loads.setdefault(shop.decode("utf-8", "replace"), {})
        name = operator.decode("utf-8", "replace")
        if value is None:
            loads.pop(name, None)
            return
        try:
            loads[name] = decode_load(value)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            logger.warning("operator load %r: unreadable changelog record", key)
