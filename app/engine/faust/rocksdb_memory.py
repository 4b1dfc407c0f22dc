"""RocksDB memory: every table partition of a worker in one memory budget
(`CPS_ROCKSDB_MEMORY_MB`).

Limit worked around: Faust opens each table partition's RocksDB with a block
cache and write buffers of its own, and has no setting for a shared cache,
so a worker's RocksDB memory could grow with tables times partitions (17 x 8
here: up to 136 x (16 MiB + 2 x 8 MiB), 4.3 GiB). One LRU cache holds the
blocks of all of them, and a write buffer manager counts their memtables in
that cache, flushing the largest once they pass half of it.

Upstream: no upstream issue found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from app.engine.faust.attached import attach_state
from app.engine.faust.patching import Patch, PrivateAttribute

_faust_rocksdb_options = RocksDBOptions.as_options


@dataclass(frozen=True, eq=False)
class SharedMemory:
    """One budget: the cache, whose usage is what the databases hold, and the write buffer
    manager that charges their memtables to it."""

    cache: rocksdict.Cache
    write_buffers: Any

    @classmethod
    def of(cls, budget_bytes: int) -> SharedMemory:
        cache = rocksdict.Cache(budget_bytes)
        return cls(cache, rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            budget_bytes // 2, False, cache))

    def applied_to(self, options: RocksDBOptions) -> rocksdict.Options:
        """Faust's options of a database, its cache and write buffers this budget's."""
        made = _faust_rocksdb_options(options)
        # rocksdict cannot swap the cache of a table factory already set, so Faust's
        # factory (bloom filter, index) is set again around the shared cache.
        blocks = rocksdict.BlockBasedOptions()
        blocks.set_bloom_filter(options.bloom_filter_size, block_based=True)
        blocks.set_block_cache(self.cache)
        blocks.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        made.set_block_based_table_factory(blocks)
        made.set_write_buffer_manager(self.write_buffers)
        return made


def share(app: Any, budget_bytes: int) -> SharedMemory:
    """Make every RocksDB that Faust opens share one budget of `budget_bytes`."""
    memory = attach_state(app).rocksdb_memory = SharedMemory.of(budget_bytes)

    def as_options(self: RocksDBOptions) -> rocksdict.Options:
        return memory.applied_to(self)

    RocksDBOptions.as_options = as_options
    return memory


PATCHES: tuple[Patch, ...] = ()
PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = ()
