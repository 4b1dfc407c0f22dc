"""RocksDB memory: every table partition of a worker in one memory budget
(`CPS_ROCKSDB_MEMORY_MB`).

Limit worked around: Faust opens each table partition's RocksDB with a block
cache and write buffers of its own, and has no setting for a shared cache,
so a worker's RocksDB memory could grow with tables times partitions (17 x 8
here: up to 136 x (16 MiB + 2 x 8 MiB), 4.3 GiB). One LRU cache holds the
blocks of all of them, and a write buffer manager counts their memtables in
that cache, flushing the largest once they pass half of it.

Each engine has a budget of its own: the budget travels in its tables'
options (`table_options()`, kept by Faust's `RocksDBOptions` among its extra
options), and `RocksDBOptions.as_options`, replaced once per process, applies
the budget of the options it is asked for; options without one stay Faust's.

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
# The key of a table option no RocksDB setting is named after.
_TABLE_OPTION = "cps_shared_memory"


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

    def table_options(self) -> dict[str, Any]:
        """What a table's options carry for its databases to use this budget."""
        return {_TABLE_OPTION: self}

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
    """`app`'s budget of `budget_bytes`, for the tables whose options carry it."""
    memory = attach_state(app).rocksdb_memory = SharedMemory.of(budget_bytes)
    return memory


def _as_options(self: RocksDBOptions) -> rocksdict.Options:
    memory = self.extra_options.get(_TABLE_OPTION)
    if memory is None:
        return _faust_rocksdb_options(self)
    return memory.applied_to(self)


PATCHES = (Patch(RocksDBOptions, "as_options", _as_options),)
PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = ()
