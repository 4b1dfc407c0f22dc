"""The engine's committer and forwarder, without Kafka: per-slot commits, forwards first.

The transactions and the forwarder are replaced by fakes the test controls,
so each test can hold one slot's commit or one forward open and see what
the others do meanwhile. The real broker path is covered by the
integration tests (tests/integration/test_chaos.py above all).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from app.engine import forwarding
from app.engine.forwarding import Forwarder, ForwardingFailed
from app.engine.processor import Engine
from app.engine.state import DELETED, StateTable
from app.engine.transactions import Record
from app.kafka.connection import KafkaConnection
from app.kafka.topology import Topology

INPUT = "in"


class FakeApp:
    consumer_generation_id = 1

    def __init__(self, partitions: int, owned: set[int] | None = None) -> None:
        self.conf = SimpleNamespace(id="engine-test")
        self.on_partitions_revoked = self.on_partitions_assigned = SimpleNamespace(
            connect=lambda receiver: receiver)
        actives = [TopicPartition(INPUT, p) for p in sorted(owned or range(partitions))]
        self.assignor = SimpleNamespace(assigned_actives=lambda: actives)
        self.crashed: list[BaseException] = []

    async def crash(self, reason: BaseException) -> None:
        self.crashed.append(reason)

    def topic(self, *topics: str, **options) -> tuple[str, ...]:
        return topics

    def agent(self, source, *, name: str):
        return lambda consume: consume


class HeldTransactions:
    """Commits that finish only when the test opens their slot's gate."""

    def __init__(self) -> None:
        self.gates: dict[tuple[int, int], asyncio.Event] = {}
        self.started: list[tuple[int, int]] = []
        self.committed: list[tuple[tuple[int, int], list[Record], dict]] = []

    def gate(self, slot: tuple[int, int]) -> asyncio.Event:
        return self.gates.setdefault(slot, asyncio.Event())

    async def commit(self, slot, anchor_topic, records, offsets):
        self.started.append(slot)
        await self.gate(slot).wait()
        self.committed.append((slot, list(records), dict(offsets)))
        return list(range(len(records)))


class HeldForwarder:
    def __init__(self) -> None:
        self.sent: list[Record] = []
        self.delivered = asyncio.get_running_loop().create_future()

    def forward(self, record: Record) -> asyncio.Future:
        self.sent.append(record)
        return self.delivered


def make_engine(partitions: int = 2, owned: set[int] | None = None
                ) -> tuple[Engine, FakeApp, HeldTransactions]:
    app = FakeApp(partitions, owned)
    engine = Engine(app, connection=KafkaConnection("127.0.0.1:1"),
                    topology=Topology(partitions), partitions=partitions,
                    deadletter_topic="deadletter", commit_linger_ms=0, commit_max_events=1000,
                    commit_max_records=1000,
                    rocksdb_options={})
    engine.checkpoint.transactions = held = HeldTransactions()
    engine.runtime.forwarder = HeldForwarder()
    return engine, app, held


def message(partition: int, offset: int) -> SimpleNamespace:
    return SimpleNamespace(topic=INPUT, partition=partition, offset=offset, key=b"k",
                           value=b"v", generation_id=FakeApp.consumer_generation_id)


def send_output(ctx, key, value) -> None:
    ctx.send("out", key, value)


def forward_output(ctx, key, value) -> None:
    ctx.forward("by-buyer", key, value)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def committed_table(name: str, committed: dict[bytes, bytes], **codec) -> StateTable:
    """A table whose committed state (every partition's) is `committed`."""
    faust_table = SimpleNamespace(data=SimpleNamespace(
        _db_for_partition=lambda partition: committed, offset_key=b"__offset"))
    return StateTable(name, faust_table, **codec)


def run(coroutine) -> None:
    asyncio.run(coroutine)


def test_a_slow_slot_does_not_hold_back_the_others():
    async def scenario():
        # Partitions 0 and 1 form a slot this worker owns wholly; 2 commits alone (3 is
        # another worker's).
        engine, _app, held = make_engine(4, owned={0, 1, 2})
        engine.pipeline("test", {INPUT: send_output})
        engine.deliver(message(0, 10))
        engine.deliver(message(2, 20))
        engine.checkpoint.start_due_commits()
        held.gate((2, 3)).set()  # the slot of 0 and 1 stays open
        await settle()
        assert [(slot, offsets) for slot, _records, offsets in held.committed] == [
            ((2, 3), {(INPUT, 2): 21})]
        # New work of a slot still committing waits for that commit, whichever partition.
        engine.deliver(message(1, 30))
        engine.deliver(message(2, 21))
        engine.checkpoint.start_due_commits()
        await settle()
        assert held.started == [(0, 2), (2, 3), (2, 3)]
        held.gate((0, 2)).set()
        await engine.commit_all()
        assert [(slot, offsets) for slot, _records, offsets in held.committed] == [
            ((2, 3), {(INPUT, 2): 21}), ((2, 3), {(INPUT, 2): 22}),
            ((0, 2), {(INPUT, 0): 11}), ((0, 2), {(INPUT, 1): 31})]
    run(scenario())


def test_the_partitions_of_a_slot_commit_in_one_transaction(tmp_path):
    async def scenario():
        import rocksdict

        engine, _app, held = make_engine(2)
        dbs = {p: rocksdict.Rdict(str(tmp_path / str(p)), options=rocksdict.Options(
            raw_mode=True)) for p in (0, 1)}
        table = StateTable("seen", SimpleNamespace(
            data=SimpleNamespace(_db_for_partition=dbs.__getitem__, offset_key=b"__offset"),
            changelog_topic=SimpleNamespace(get_topic_name=lambda: "seen-changelog")),
            encode=bytes, decode=bytes)

        def remember(ctx, key, value):
            ctx.put(table, key, value)
            ctx.send("out", key, value)

        engine.pipeline("test", {INPUT: remember})
        held.gate((0, 2)).set()
        engine.deliver(message(0, 10))
        engine.deliver(message(1, 20))
        engine.deliver(message(1, 21))
        await engine.commit_all()
        [(slot, records, offsets)] = held.committed
        assert slot == (0, 2) and offsets == {(INPUT, 0): 11, (INPUT, 1): 22}
        assert [r.topic for r in records] == ["out", "seen-changelog", "out", "out",
                                              "seen-changelog"]
        assert [r.partition for r in records if r.topic == "seen-changelog"] == [0, 1]
        # Each partition's database gets its rows and the offset of its last changelog record.
        assert dbs[0][b"__offset"] == b"1" and dbs[1][b"__offset"] == b"4"
        assert dbs[0][b"k"] == dbs[1][b"k"] == b"v"
        for db in dbs.values():
            db.close()
    run(scenario())


def test_offsets_wait_until_the_forwarded_records_are_acknowledged():
    async def scenario():
        engine, _app, held = make_engine()
        engine.pipeline("test", {INPUT: forward_output})
        held.gate((0, 2)).set()
        engine.deliver(message(0, 5))
        engine.deliver(message(0, 6))
        assert len(engine.runtime.forwarder.sent) == 2  # sent at once, not at the commit
        committing = asyncio.ensure_future(engine.commit_all())
        await settle()
        assert held.started == []
        engine.runtime.forwarder.delivered.set_result(None)
        await committing
        assert [(slot, records, offsets) for slot, records, offsets in held.committed] == [
            ((0, 2), [], {(INPUT, 0): 7})]
    run(scenario())


def test_a_failed_forward_commits_nothing_and_restarts_the_worker():
    async def scenario():
        engine, app, held = make_engine()
        restarts: list[BaseException] = []
        engine.on_failure = restarts.append
        engine.pipeline("test", {INPUT: forward_output})
        held.gate((0, 2)).set()
        engine.deliver(message(0, 5))
        committing = asyncio.ensure_future(engine.commit_all())
        await settle()
        engine.runtime.forwarder.delivered.set_exception(RuntimeError("producer gone"))
        await committing
        await settle()
        assert held.started == []
        assert [repr(reason) for reason in app.crashed] == ["RuntimeError('producer gone')"]
        assert [repr(reason) for reason in restarts] == ["RuntimeError('producer gone')"]
        assert repr(engine.failure) == "RuntimeError('producer gone')"
        assert 0 in engine.checkpoint.lost  # later deliveries of the partition are ignored
        assert not engine.deliver(message(0, 6)) and not engine.checkpoint.pending
    run(scenario())


def test_uncommitted_events_past_the_limit_make_every_idle_slot_due():
    async def scenario():
        engine, _app, held = make_engine(4, owned={0, 2})
        engine.checkpoint.linger_s = 60.0
        engine.checkpoint.max_events = 3
        engine.pipeline("test", {INPUT: send_output})
        engine.deliver(message(0, 1))
        engine.deliver(message(2, 1))
        assert engine.checkpoint.start_due_commits() is not None  # lingering, nothing started
        assert held.started == []
        engine.deliver(message(2, 2))
        engine.checkpoint.start_due_commits()
        await settle()
        assert sorted(held.started) == [(0, 1), (2, 3)]
    run(scenario())


def test_timers_hold_back_while_the_worker_holds_a_commits_worth_of_records():
    async def scenario():
        engine, _app, held = make_engine(4, owned={0, 1, 2})  # slots 0-1 and 2
        engine.checkpoint.linger_s = 60.0
        engine.checkpoint.max_records = 3
        engine.timers.may_tick = lambda: True  # ready, no rebalance
        engine.pipeline("test", {INPUT: send_output})
        engine.deliver(message(0, 1))
        engine.deliver(message(2, 1))
        sent = []

        def send_while_not_backlogged(ctx) -> None:
            while not ctx.backlogged():
                sent.append(ctx.send("out", b"k", b"v"))

        engine.timers.run_in_partition(1, send_while_not_backlogged)
        assert len(sent) == 1  # what it sent counts at once
        assert engine.checkpoint.context(2).backlogged()  # three records, in three partitions
        engine.checkpoint.start_due_commits()  # at the bound: every slot commits at once
        await settle()
        assert sorted(held.started) == [(0, 2), (2, 3)]
        timer = engine.checkpoint.context(0)  # a timer's view while the commits are under way
        assert timer.backlogged() and not timer.work
        held.gate((0, 2)).set()
        await settle()
        assert not timer.backlogged()  # one record left, in the commit of 2
        # Nothing new came in: the same context sees its own records committed.
        assert engine.checkpoint.context(0) is timer and timer.committing is None
        held.gate((2, 3)).set()
        await settle()
        assert (engine.checkpoint.pending_records, engine.checkpoint.committing_records) == (0, 0)
    run(scenario())


def test_records_past_three_times_the_bound_stop_the_reading():
    async def scenario():
        engine, _app, held = make_engine(2, owned={0, 1})
        engine.checkpoint.linger_s = 60.0
        engine.checkpoint.max_records = 100
        engine.pipeline("test", {INPUT: lambda ctx, key, value: [
            ctx.send("out", key, value) for _ in range(150)]})
        assert not engine.deliver(message(0, 1))  # 150: commit at once, go on reading
        assert engine.deliver(message(1, 1))  # 300: relieve() first
        held.gate((0, 2)).set()
        engine.registry._opened = True  # ready: its gates are open
        await asyncio.wait_for(engine.relieve(), 10)
        assert (engine.checkpoint.pending_records, engine.checkpoint.committing_records) == (0, 0)
    run(scenario())


class RefusingProducer:
    """A producer whose every send fails, as with a broker gone for good."""

    def __init__(self) -> None:
        self.client = SimpleNamespace(add_topic=self._known)
        self.attempts = 0

    async def _known(self, topic: str) -> None:
        return None

    def create_batch(self):
        return SimpleNamespace(append=lambda **record: record)

    async def send_batch(self, batch, topic, *, partition):
        self.attempts += 1
        raise KafkaConnectionError("broker gone")


def test_the_forwarder_retries_then_fails_the_waiting_and_every_later_forward(monkeypatch):
    monkeypatch.setattr(forwarding, "GIVE_UP_S", 0.5)

    async def scenario():
        forwarder = Forwarder(KafkaConnection("127.0.0.1:1"), client_id="engine-test")
        forwarder._producer = producer = RefusingProducer()
        sending = asyncio.ensure_future(Forwarder._send_loop(forwarder))
        waiting = forwarder.forward(Record("by-buyer", 0, b"u1", b"order"))
        done, _ = await asyncio.wait([waiting], timeout=10)
        assert waiting in done and isinstance(waiting.exception(), ForwardingFailed)
        assert producer.attempts > 1  # retried before giving up
        later = forwarder.forward(Record("by-buyer", 1, b"u2", b"order"))
        assert later.done() and isinstance(later.exception(), ForwardingFailed)
        await asyncio.wait_for(sending, 1)  # the loop has ended
    run(scenario())


def test_stopping_gives_up_on_a_commit_that_never_finishes():
    async def scenario():
        engine, _app, held = make_engine()
        engine.stop_commit_timeout_s = 0.2
        engine.pipeline("test", {INPUT: send_output})
        engine.deliver(message(0, 1))  # its transaction never ends
        await asyncio.wait_for(engine.on_stop(), 5)
        assert held.started == [(0, 2)] and held.committed == []
    run(scenario())


def test_a_key_written_and_deleted_before_any_commit_leaves_no_changelog_record():
    async def scenario():
        engine, _app, _held = make_engine(1)
        table = committed_table("waits", {b"old": b"1"}, encode=bytes, decode=bytes)
        ctx = engine.checkpoint.context(0)
        ctx.put(table, b"new", b"2")
        ctx.delete(table, b"new")    # only ever in this overlay: forgotten
        ctx.put(table, b"old", b"3")
        ctx.delete(table, b"old")    # in the committed state: needs its tombstone
        ctx.delete(table, b"never")  # not written here: a tombstone, as before
        assert ctx.work.overlay.writes == {table: {b"old": DELETED, b"never": DELETED}}
        assert ctx.get(table, b"new") is None and ctx.get(table, b"old") is None
    run(scenario())


def test_update_copies_a_committed_value_once_then_changes_its_own_copy():
    async def scenario():
        engine, _app, _held = make_engine(1)
        table = committed_table("counts", {b"count": b"1"}, encode=lambda v: str(v[0]).encode(),
                                decode=lambda raw: [int(raw)])
        ctx = engine.checkpoint.context(0)
        copies = []

        def copy(value):
            copies.append(value)
            return list(value)

        def add_one(value):
            value[0] += 1

        assert ctx.update(table, b"count", copy, add_one)
        assert ctx.update(table, b"count", copy, add_one)
        assert len(copies) == 1 and ctx.get(table, b"count") == [3]
        assert not ctx.update(table, b"missing", copy, add_one)
        ctx.delete(table, b"count")
        assert not ctx.update(table, b"count", copy, add_one)
        assert ctx.get(table, b"count") is None
    run(scenario())


def test_scans_of_a_table_skip_faust_s_offset_key(tmp_path):
    # A committed partition holds Faust's changelog offset beside the rows; a scan from
    # the first key (the plan timers') must not take it for a row.
    import rocksdict

    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))
    faust_table = SimpleNamespace(data=SimpleNamespace(
        _db_for_partition=lambda partition: db, offset_key=b"__faust\x00offset__"))
    table = StateTable("timers", faust_table, encode=bytes, decode=bytes)
    table.apply(0, [(b"0000000000000001:a", b"1"), (b"0000000000000002:b", b"2")], 41)
    assert table.keys_with_prefix(0, b"", limit=10) == [b"0000000000000001:a",
                                                         b"0000000000000002:b"]
    assert [key for key, _ in table.scan_prefix(0, b"", limit=10)] == [
        b"0000000000000001:a", b"0000000000000002:b"]
    assert db[b"__faust\x00offset__"] == b"41"
    db.close()
