"""The adapter to Faust and aiokafka (app/engine/faust/): the private parts it uses are all
still there, it installs once, and what it adapts behaves as intended.

After upgrading either library, this test names every attribute that went
away (each module of app/engine/faust/ lists those it uses and says what for).
"""

from __future__ import annotations

import asyncio

import pytest
from faust.transport.consumer import Consumer

from app.engine.faust import adapter, delivery, rebalance_gc, rocksdb_memory, slot_assignment
from app.engine.faust.attached import attach_state


def test_every_private_attribute_the_engine_uses_exists():
    assert adapter.missing() == []


def test_a_removed_attribute_is_named(monkeypatch):
    monkeypatch.setattr(rebalance_gc, "PRIVATE_ATTRIBUTES",
                        (*rebalance_gc.PRIVATE_ATTRIBUTES, (Consumer, "_removed_in_a_release")))
    assert adapter.missing() == [
        "faust.transport.consumer.Consumer._removed_in_a_release"]
    with pytest.raises(RuntimeError, match=r"Consumer\._removed_in_a_release"):
        adapter.require()


def test_install_replaces_once_and_a_second_call_changes_nothing(monkeypatch):
    for owner, name, _ in adapter.patches():  # restored after the test
        monkeypatch.setattr(owner, name, getattr(owner, name))
    adapter.install()
    assert [(owner, name) for owner, name, replacement in adapter.patches()
            if getattr(owner, name) is not replacement] == []
    # Faust's own method stays what the replacement falls back on.
    assert Consumer._drain_messages is delivery._drain
    assert delivery._faust_drain is not delivery._drain
    made: list[tuple] = []
    monkeypatch.setattr(adapter, "setattr", lambda *change: made.append(change), raising=False)
    adapter.install()
    assert made == []


def _faust_assignment(assignor_class, clients: list[str], replicas: int) -> dict:
    from faust.assignor.client_assignment import CopartitionedAssignment

    cluster = {client: CopartitionedAssignment(topics={"in"}) for client in clients}
    assignor = assignor_class(topics={"in"}, cluster_asgn=cluster, num_partitions=8,
                              replicas=replicas)
    return {client: (sorted(a.actives), sorted(a.standbys))
            for client, a in assignor.get_assignment().items()}


def test_the_leader_lays_each_worker_s_share_out_as_whole_slots():
    from faust.assignor.copartitioned_assignor import CopartitionedAssignor

    # Faust alone interleaves two new workers: no slot larger than one partition.
    spread = _faust_assignment(CopartitionedAssignor, ["w1", "w2"], replicas=0)
    assert {tuple(actives) for actives, _ in spread.values()} == {(0, 2, 4, 6), (1, 3, 5, 7)}
    aligned = _faust_assignment(slot_assignment.SlotAlignedAssignor, ["w1", "w2"], replicas=0)
    assert aligned == {"w1": ([0, 1, 2, 3], []), "w2": ([4, 5, 6, 7], [])}
    # With standby replicas Faust's own layout stays: its standbys are placed against it.
    assert _faust_assignment(slot_assignment.SlotAlignedAssignor, ["w1", "w2"], replicas=1) == \
        _faust_assignment(CopartitionedAssignor, ["w1", "w2"], replicas=1)


def test_a_rebalance_collects_garbage_once_and_only_after_dropping_a_database(monkeypatch):
    from types import SimpleNamespace

    from faust.types import TP

    collections: list[int] = []
    monkeypatch.setattr(rebalance_gc.gc, "collect", lambda: collections.append(1))

    async def faust_rebalance(manager, assigned, revoked, newly_assigned, generation_id=0):
        for store in manager.stores:
            store.revoke_partitions(store.table, revoked)

    monkeypatch.setattr(rebalance_gc, "_faust_tables_on_rebalance", faust_rebalance)
    app = SimpleNamespace()
    attach_state(app)

    def store(topic: str, partitions: list[int]) -> SimpleNamespace:
        table = SimpleNamespace(changelog_topic=SimpleNamespace(topics={topic}))
        made = SimpleNamespace(app=app, table=table, _dbs={p: object() for p in partitions})
        made.revoke_partitions = lambda table, tps: rebalance_gc._revoke_partitions(made, table,
                                                                                     tps)
        return made

    stores = [store("a-changelog", [0, 1]), store("b-changelog", [0, 1])]
    manager = SimpleNamespace(app=app, stores=stores)
    rebalance = rebalance_gc._tables_on_rebalance

    asyncio.run(rebalance(manager, set(), set(), set()))
    assert collections == []  # a first assignment revokes nothing
    revoked = {TP("a-changelog", 1), TP("b-changelog", 1), TP("clicks", 1)}
    asyncio.run(rebalance(manager, set(), revoked, set()))
    assert collections == [1]  # one collection for both tables
    assert [sorted(s._dbs) for s in stores] == [[0], [0]]
    asyncio.run(rebalance(manager, set(), revoked, set()))
    assert collections == [1]  # nothing left to drop


def test_every_rocksdb_counts_its_write_buffers_in_one_shared_budget(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from faust.stores.rocksdb import RocksDBOptions

    # As install() makes it, restored after the test.
    monkeypatch.setattr(RocksDBOptions, "as_options", rocksdb_memory._as_options)
    budget = 64 * 1024 * 1024
    memory = rocksdb_memory.share(SimpleNamespace(), budget)
    sizes = {"write_buffer_size": 4 * 1024 * 1024, "max_write_buffer_number": 2}
    options = RocksDBOptions(**sizes, **memory.table_options())
    databases = [options.open(tmp_path / f"db{n}") for n in range(4)]
    assert memory.cache.get_usage() < 1024 * 1024
    for db in databases:
        for n in range(3_000):
            db[b"key-%d" % n] = b"x" * 1000
    # About 12 MiB of memtables across the four, charged to the one cache.
    charged = memory.cache.get_usage()
    assert 8 * 1024 * 1024 < charged <= budget
    # A database whose options carry no budget keeps Faust's own cache.
    other = RocksDBOptions(**sizes).open(tmp_path / "other")
    for n in range(3_000):
        other[b"key-%d" % n] = b"x" * 1000
    assert memory.cache.get_usage() - charged < 1024 * 1024
    for db in (*databases, other):
        db.close()
