"""Faust's tables as the engine uses them: RocksDB by partition, and the router's metadata.

Limits worked around: Faust opens a table partition's RocksDB on demand
(`Store._db_for_partition`) but offers no public way to reach it, and the
engine writes its committed state there itself (state.py). Faust's table
router (views of a key's owner) places a key with the partitioner of
Faust's producer, which knows a topic's partitions only from its metadata;
Faust put the changelogs there when it declared them, and the engine
creates its topics itself, so `route_tables` adds them (through
`Producer._ensure_producer`, the only way to its aiokafka producer).

Upstream: no upstream issue found.
"""

from __future__ import annotations

from typing import Any

from faust.stores.rocksdb import Store as RocksDBStore
from faust.transport.drivers.aiokafka import Producer as FaustProducer

from app.engine.faust.patching import Patch, PrivateAttribute


def rocksdb_of(table: Any, partition: int) -> Any:
    """The RocksDB (rocksdict) Faust opened for one partition of `table`."""
    return table.data._db_for_partition(partition)


async def route_tables(app: Any, changelogs: list[str]) -> None:
    """Let Faust's table router hash keys for the changelogs."""
    producer = app.producer._ensure_producer()
    for topic in changelogs:
        await producer.client.add_topic(topic)


PATCHES: tuple[Patch, ...] = ()
PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = (
    (RocksDBStore, "_db_for_partition"),
    (FaustProducer, "_ensure_producer"),
)
