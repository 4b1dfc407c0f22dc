"""Creating the engine's topics and knowing their partition counts.

A starting worker creates every topic it reads or writes when missing
(SPEC 3). Topics the engine consumes must have CPS_PARTITIONS partitions,
because the engine's state is partitioned like them; a mismatch stops the
worker with a message saying what to do rather than mixing up partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from app.kafka.connection import KafkaConnection
from app.kafka.topics import TopicSpec

logger = logging.getLogger(__name__)


class TopologyError(RuntimeError):
    """The cluster's topics do not fit this engine's settings."""


class Topology:
    """Partition counts of the engine's topics, filled in before the worker starts."""

    def __init__(self, default_partitions: int) -> None:
        self.default_partitions = default_partitions
        self._partitions: dict[str, int] = {}

    def record(self, counts: dict[str, int]) -> None:
        self._partitions.update(counts)

    def partitions(self, topic: str) -> int:
        return self._partitions.get(topic, self.default_partitions)


async def ensure_topics(connection: KafkaConnection, specs: Iterable[TopicSpec], *, partitions: int,
                        replication: int, timeout_s: float = 60.0) -> dict[str, int]:
    """Create missing topics; return the partition count of each."""
    specs = list(specs)
    admin = connection.admin(request_timeout_ms=15_000)
    await _start_with_retry(admin, connection.bootstrap, timeout_s)
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            # Another worker may create them at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([
                    NewTopic(spec.name, partitions, replication, topic_configs=spec.config)
                    for spec in missing
                ])
            logger.info("created topics: %s", ", ".join(spec.name for spec in missing))
        return await _partition_counts(admin, [spec.name for spec in specs], timeout_s)
    finally:
        await admin.close()


async def _start_with_retry(admin: AIOKafkaAdminClient, bootstrap: str, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            await admin.start()
            return
        except Exception as exc:
            if loop.time() >= deadline:
                raise TopologyError(f"cannot reach Kafka at {bootstrap} ({exc!r}); is the broker "
                                    "running (`cps kafka start`) and CPS_BROKER right?") from exc
            await asyncio.sleep(1.0)


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str],
                            timeout_s: float) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        described = await admin.describe_topics(names)
        counts = {d["topic"]: len(d["partitions"]) for d in described
                  if not d.get("error_code") and d.get("partitions")}
        if len(counts) == len(names) or loop.time() >= deadline:
            absent = sorted(set(names) - set(counts))
            if absent:
                raise TopologyError(f"topics not available after creation: {', '.join(absent)}")
            return counts
        await asyncio.sleep(0.2)


def check_copartitioned(counts: dict[str, int], consumed: Iterable[str], partitions: int) -> None:
    wrong = {name: counts[name] for name in consumed if counts.get(name, partitions) != partitions}
    if wrong:
        listing = ", ".join(f"{name} has {n}" for name, n in sorted(wrong.items()))
        raise TopologyError(
            f"the engine's state has CPS_PARTITIONS={partitions} partitions but {listing}; "
            "set CPS_PARTITIONS to match, or recreate those topics"
        )


async def track_topics(producer, topics: Iterable[str]) -> None:
    """Make an aiokafka producer keep metadata for every topic in `topics`.

    aiokafka tracks only the topics it had to look up: one the producer
    already knew from a full metadata fetch is not tracked, so the first
    send to a topic created later (a new sink's queue) narrows the metadata
    to that topic alone. Records already queued for the other topics then
    have no known leader, and the producer re-fetches the narrowed metadata
    in a loop until the records expire, minutes later. Tracking every topic
    a batch writes before sending it keeps them all in the metadata.
    """
    for topic in set(topics):
        await producer.client.add_topic(topic)
