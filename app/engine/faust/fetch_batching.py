"""Fetch batching: the broker may hold a fetch up to `CPS_FETCH_MAX_WAIT_MS` to gather 1 MiB.

Limit worked around: Faust builds its worker consumer with aiokafka's
default `fetch_min_bytes` (1) and a fixed `fetch_max_wait_ms`, neither of
them a setting, so the broker answers a fetch as soon as one byte is there.
Live, every fetch then carries a few records, and each costs the same Python
work for every assigned partition of every topic.
`AIOKafkaConsumerThread._create_worker_consumer` is wrapped to set the
consumer's fetch minimum and wait, per app, before its fetcher starts; an
app with no wait keeps Faust's consumer as it is.

Upstream: no upstream issue found.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from app.engine.faust.attached import attached
from app.engine.faust.patching import Patch, PrivateAttribute

FETCH_MIN_BYTES = 1 << 20

_faust_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer


def _create_worker_consumer(self: AIOKafkaConsumerThread, transport: Any) -> AIOKafkaConsumer:
    consumer = _faust_worker_consumer(self, transport)
    state = attached(self.app)
    if state is not None and state.fetch_max_wait_ms:
        # Read by the consumer when it starts its fetcher, after this.
        consumer._fetch_min_bytes = FETCH_MIN_BYTES
        consumer._fetch_max_wait_ms = state.fetch_max_wait_ms
    return consumer


PATCHES = (Patch(AIOKafkaConsumerThread, "_create_worker_consumer", _create_worker_consumer),)
PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = (
    (AIOKafkaConsumerThread, "_create_worker_consumer"),
    (AIOKafkaConsumer, "_fetch_min_bytes"),
    (AIOKafkaConsumer, "_fetch_max_wait_ms"),
)
