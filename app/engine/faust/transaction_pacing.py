"""Transaction pacing: a producer asks again sooner when its last transaction is still ending.

Limit worked around: after a commit the broker writes the transaction's
markers before it lets the same producer add partitions again, answering
CONCURRENT_TRANSACTIONS meanwhile, and aiokafka waits a fixed 20 ms
(`aiokafka.producer.sender.BACKOFF_OVERRIDE`, no setting) before asking
again. A slot commits back to back, so nearly every transaction waited that
long; `CONCURRENT_TRANSACTIONS_RETRY_S` asks again sooner (BENCHMARKS.md,
issue 17).

Upstream: no aiokafka issue found; Kafka's Java client lowered the same
back-off for the same reason in apache/kafka#3377 (KAFKA-5477).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aiokafka.producer import sender as aiokafka_sender

from app.engine.faust.patching import Patch, PrivateAttribute

# Markers of a transaction over a few dozen partitions take a few milliseconds on a
# local broker; each early retry costs one small AddPartitionsToTxn request.
CONCURRENT_TRANSACTIONS_RETRY_S = 0.002


@contextmanager
def paced_as_the_engine() -> Iterator[None]:
    """Within: aiokafka retries as a worker's producers do (for the bench's own producers)."""
    retry = aiokafka_sender.BACKOFF_OVERRIDE
    aiokafka_sender.BACKOFF_OVERRIDE = CONCURRENT_TRANSACTIONS_RETRY_S
    try:
        yield
    finally:
        aiokafka_sender.BACKOFF_OVERRIDE = retry


PATCHES = (Patch(aiokafka_sender, "BACKOFF_OVERRIDE", CONCURRENT_TRANSACTIONS_RETRY_S),)
PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = ((aiokafka_sender, "BACKOFF_OVERRIDE"),)
