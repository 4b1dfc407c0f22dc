"""Transactional state on top of Faust's changelog-backed RocksDB tables.

A handler's writes go to an in-memory overlay of its partition, never
straight to RocksDB. When the partition's Kafka transaction commits (with
the changelog records, the outputs and the input offsets), the overlay is
written to RocksDB in one WriteBatch together with the changelog offset.
So the local database only ever holds committed state: a worker killed at
any moment restarts from a database that agrees with Kafka, and Faust's
recovery replays the changelog from the offset stored beside the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import rocksdict

from app.engine.faust.table_access import rocksdb_of

DELETED: Any = object()


@dataclass(frozen=True, eq=False)
class StateTable:
    """A Faust table the engine writes transactionally; values are (de)coded here."""

    name: str
    table: Any  # faust.Table with raw key/value serializers and the rocksdb store
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]

    @property
    def changelog_topic(self) -> str:
        return self.table.changelog_topic.get_topic_name()

    def db(self, partition: int) -> rocksdict.Rdict:
        return rocksdb_of(self.table, partition)

    def read(self, partition: int, key: bytes) -> Any:
        raw = self.db(partition).get(key)
        return None if raw is None else self.decode(raw)

    def scan(self, partition: int):
        """Every (key, value) of the partition as committed (offset bookkeeping excluded)."""
        offset_key = self.table.data.offset_key
        for key, raw in self.db(partition).items():
            if key != offset_key:
                yield key, self.decode(raw)

    def keys_up_to(self, partition: int, last: bytes, limit: int) -> list[bytes]:
        """Committed keys from the first up to `last` (inclusive), in key order, at most `limit`."""
        offset_key = self.table.data.offset_key
        found = []
        for key in self.db(partition).keys():  # noqa: SIM118 - RocksDB iterates in key order
            if key > last or len(found) >= limit:
                break
            if key != offset_key:
                found.append(key)
        return found

    def scan_prefix(self, partition: int, prefix: bytes, *, after: bytes | None = None,
                    limit: int) -> list[tuple[bytes, Any]]:
        """Committed entries whose key starts with `prefix`, in key order, after `after`."""
        start = prefix if after is None else after + b"\x00"
        offset_key = self.table.data.offset_key
        found = []
        for key, raw in self.db(partition).items(from_key=start):
            if not key.startswith(prefix) or len(found) >= limit:
                break
            if key != offset_key:
                found.append((key, self.decode(raw)))
        return found

    def keys_with_prefix(self, partition: int, prefix: bytes, *, after: bytes | None = None,
                         limit: int) -> list[bytes]:
        """Committed keys starting with `prefix`, in key order, after `after` (not decoded)."""
        start = prefix if after is None else after + b"\x00"
        offset_key = self.table.data.offset_key  # a plain scan (prefix b"") reaches it
        found = []
        for key in self.db(partition).keys(from_key=start):
            if not key.startswith(prefix) or len(found) >= limit:
                break
            if key != offset_key:
                found.append(key)
        return found

    def apply(self, partition: int, rows: list[tuple[bytes, bytes | None]],
              changelog_offset: int) -> None:
        """Write committed (key, encoded value or None to delete) rows and the changelog
        offset they reach, atomically."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, raw in rows:
            if raw is None:
                batch.delete(key)
            else:
                batch.put(key, raw)
        batch.put(self.table.data.offset_key, str(changelog_offset).encode())
        self.db(partition).write(batch)


class Overlay:
    """Uncommitted writes of one partition, per table; later writes win."""

    __slots__ = ("writes",)

    def __init__(self) -> None:
        self.writes: dict[StateTable, dict[bytes, Any]] = {}

    def lookup(self, table: StateTable, key: bytes) -> tuple[bool, Any]:
        table_writes = self.writes.get(table)
        if table_writes is not None and key in table_writes:
            value = table_writes[key]
            return True, None if value is DELETED else value
        return False, None

    def put(self, table: StateTable, key: bytes, value: Any) -> None:
        table_writes = self.writes.get(table)
        if table_writes is None:
            table_writes = self.writes[table] = {}
        table_writes[key] = value

    def holds(self, table: StateTable, key: bytes) -> bool:
        table_writes = self.writes.get(table)
        return table_writes is not None and key in table_writes

    def drop(self, table: StateTable, key: bytes) -> None:
        """Forget a write (of a key no committed state holds) as if it never happened."""
        table_writes = self.writes[table]
        del table_writes[key]
        if not table_writes:
            del self.writes[table]

    def __bool__(self) -> bool:
        return bool(self.writes)
