"""aiokafka's fetch state of each assigned partition: its position and its last reported end.

Limit worked around: aiokafka's public `position()` is a coroutine of the
consumer thread's event loop (a hop to that thread per question), and it
exposes a partition's last stable offset and the time of the fetch that
reported it nowhere. Both are read here from its subscription state, which
is why aiokafka is capped below 0.15 in pyproject.toml. The catch-up
barriers (catchup.py) read them between two fetched batches.

Upstream: no upstream issue found.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.subscription_state import SubscriptionState, TopicPartitionState
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from app.engine.faust.patching import Patch, PrivateAttribute


def consumed_positions(consumer: Consumer, partitions: list[tuple[str, int]]
                       ) -> dict[tuple[str, int], int]:
    """aiokafka's position in each assigned partition: the offset after the last record it
    handed out, and after any transaction marker or aborted record it skipped there.

    Asked between two `getmany` calls, when it stands still and every record
    before it has been handled; `position()` would return this same value.
    """
    assignment = _assignment(consumer)
    if assignment is None:
        return {}
    positions = {}
    for topic, partition in partitions:
        state = assignment.state_value(TopicPartition(topic, partition))
        if state is not None and state.has_valid_position:
            positions[(topic, partition)] = state.position
    return positions


def fetched_ends(consumer: Consumer, source: tuple[str, int], inputs: list[tuple[str, int]]
                 ) -> dict[tuple[str, int], int] | None:
    """The end offset (last stable offset) of each of `inputs` as the fetch response that
    brought the records of `source` being handled, or a later one, reported it; None when an
    input's last report is older (it was not in that fetch) or missing.

    aiokafka notes, per partition and response, the ends and then the
    response's time in ms; `source`'s time is that of its last response, the
    one that brought the records being handled or a later one. The time is
    read before the end, so an end is never older than its time.
    """
    assignment = _assignment(consumer)
    if assignment is None:
        return None
    source_state = assignment.state_value(TopicPartition(*source))
    since = source_state.timestamp if source_state is not None else None
    if since is None:
        return None
    ends = {}
    for topic, partition in inputs:
        state = assignment.state_value(TopicPartition(topic, partition))
        if state is None:
            return None
        fetched_at = state.timestamp
        end = state.lso
        if fetched_at is None or fetched_at < since or end is None:
            return None
        ends[(topic, partition)] = end
    return ends


def _assignment(consumer: Consumer) -> Any:
    subscription = consumer._thread._consumer._subscription.subscription
    return subscription.assignment if subscription is not None else None


PATCHES: tuple[Patch, ...] = ()
PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = (
    (ThreadDelegateConsumer, "_thread"),
    (AIOKafkaConsumerThread, "_consumer"),
    (AIOKafkaConsumer, "_subscription"),
    (SubscriptionState, "subscription"),
    (TopicPartitionState, "timestamp"),
    (TopicPartitionState, "lso"),
    (TopicPartitionState, "has_valid_position"),
    (TopicPartitionState, "position"),
)
