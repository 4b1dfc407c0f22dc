"""One garbage collection per rebalance, and only after a database was dropped.

Bug worked around: Faust's RocksDB store runs a full garbage collection
after revoking a table's partitions (`Store.revoke_partitions`), even when
there were none: 17 tables, about 70 ms each in a worker with its state
loaded, all inside the assignment callback, during which aiokafka sends no
heartbeat (a callback longer than the session timeout costs the member its
place and a second rebalance). The stores drop their databases as before;
one collection follows the tables' rebalance (`TableManager.on_rebalance`),
and only if a database of that app was dropped.

Upstream: no upstream issue found.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.manager import TableManager

from app.engine.faust.attached import attached
from app.engine.faust.patching import Patch, PrivateAttribute

logger = logging.getLogger(__name__)

_faust_revoke_partitions = RocksDBStore.revoke_partitions
_faust_tables_on_rebalance = TableManager.on_rebalance


def _revoke_partitions(self: RocksDBStore, table: Any, tps: Any) -> None:
    """Faust's, leaving the collection that closes dropped databases to the tables' end."""
    state = attached(self.app)
    if state is None:
        _faust_revoke_partitions(self, table, tps)
        return
    for tp in tps:
        if (tp.topic in table.changelog_topic.topics
                and self._dbs.pop(tp.partition, None) is not None):
            logger.info("closing db %s partition %s", tp.topic, tp.partition)
            state.dropped_databases = True


async def _tables_on_rebalance(self: TableManager, *args: Any, **kwargs: Any) -> None:
    await _faust_tables_on_rebalance(self, *args, **kwargs)
    state = attached(self.app)
    if state is not None and state.dropped_databases:
        state.dropped_databases = False
        gc.collect()


PATCHES = (Patch(RocksDBStore, "revoke_partitions", _revoke_partitions),
           Patch(TableManager, "on_rebalance", _tables_on_rebalance))
PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = ((RocksDBStore, "_dbs"),)
