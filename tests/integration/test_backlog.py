"""A backlog on every input: the result must not depend on which topic the worker reads first.

Each test writes every click (some through the engine's re-keying topic)
and then every order of a few thousand order lives while no worker reads
them, then lets the engine drain that backlog, and compares every output
with the independent recomputation of scenarios.py: every mode and reason
of SPEC 5, each order to the click the rules choose among all of its
buyer's clicks, commissions and settlements to the minor unit. A worker
that decided an order before reading an older-in-event-time click of its
buyer already in Kafka would attribute it to the wrong click (or to none).

`make test` runs the short form; `make chaos` (CPS_CHAOS=full) more orders
and more kills.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from conftest import slot_ids, take_over
from scenarios import backlog_scenario, check_outputs, configure, produce

from app.cli.worker import EXIT_RESTART
from app.domain.attribution import Mode, Reason


@dataclass(frozen=True)
class Scale:
    orders: int
    kills: int
    timeout_s: float  # for the outputs to be complete once the backlog is written


SCALES = {"short": Scale(orders=3000, kills=3, timeout_s=240),
          "full": Scale(orders=6000, kills=6, timeout_s=900)}
SCALE = SCALES[os.environ.get("CPS_CHAOS", "short")]
pytestmark = pytest.mark.timeout(1800 if SCALE is SCALES["full"] else 420)

SECRET = "test-secret"  # the link secret of the test workers (conftest.py)
# Orders without a fitting click wait this long for a late one; none comes here.
PARTITIONS = 4  # CPS_PARTITIONS of the test workers
INPUTS = ("clicks", "orders", "internal.clicks-by-buyer", "internal.orders-by-buyer")
COMMIT_BOUND = 100  # CPS_COMMIT_MAX_EVENTS and _RECORDS of the paused worker: many commits
WORKER_SETTINGS = {"CPS_ATTRIBUTION_GRACE_MS": "5000", "CPS_SETTLEMENT_SCHEDULE": "* * * * * *"}


def test_the_backlog_covers_every_mode_and_reason():
    built = backlog_scenario(SCALE.orders, seed=21, now=1_800_000_000_000, secret=SECRET)
    results = built.expected.attributions.values()
    assert {r["mode"] for r in results} >= {mode.value for mode in Mode}
    assert {r["reason"] for r in results} >= {reason.value for reason in Reason}
    assert {r["delayed"] for r in results} == {True, False}
    topics = Counter(topic for topic, _key, _value in built.stream)
    assert topics["internal.clicks-by-buyer"] > 0 and topics["clicks"] > 0
    # Every click is written before every order.
    kinds = [topic == "orders" for topic, _key, _value in built.stream]
    assert kinds == sorted(kinds)


def test_a_paused_worker_resumed_on_a_backlog_attributes_by_the_rules(kafka, make_worker,
                                                                      bootstrap, prefix):
    built = backlog_scenario(SCALE.orders, seed=21, now=int(time.time() * 1000),
                             secret=SECRET)
    worker = make_worker("a", **WORKER_SETTINGS, CPS_COMMIT_MAX_EVENTS=str(COMMIT_BOUND),
                         CPS_COMMIT_MAX_RECORDS=str(COMMIT_BOUND)).start()
    configure(kafka, built)
    assert worker.admin("POST", "/admin/engine/pause")[0] == 200
    produce(bootstrap, prefix, built.stream)
    time.sleep(2.0)  # the paused worker's fetcher buffers some of it meanwhile
    assert worker.admin("POST", "/admin/engine/resume")[0] == 200
    check_outputs(kafka, worker, built, timeout=SCALE.timeout_s, workers=[worker])
    status, body = worker.get("/metrics")
    waits = re.search(rb"^cps_catch_up_wait_ms_count (\S+)$", body, re.MULTILINE)
    assert status == 200 and waits and float(waits.group(1)) > 0
    # At most 3 times the bound of output records (and one event's more), and the
    # changelog of at most 3 times the bound of events, a few rows each. Without the
    # bound on records (before 2026-12), the orders the backlog's end freed went in one
    # transaction per slot: 8,940 records here.
    largest = re.search(rb"^cps_commit_records_max (\S+)$", body, re.MULTILINE)
    assert largest and float(largest.group(1)) <= 10 * COMMIT_BOUND, largest


def test_a_worker_fenced_on_a_backlog_exits_and_restarted_loses_nothing(kafka, make_worker,
                                                                        bootstrap, prefix):
    # The fenced-exit path (docs/exactly-once.md, "Known limits") with a backlog on every
    # input: the worker resumes on it, its first commit is refused, it exits to restart,
    # and what it read, forwarded or decided meanwhile must count once, not twice.
    built = backlog_scenario(SCALE.orders, seed=23, now=int(time.time() * 1000),
                             secret=SECRET, paid_first_share=0.0)
    # Its first commit only a while after it resumes: the backlog's clicks come first, and
    # a commit refused before it read into the orders would leave none re-keyed (a CI run
    # on a loaded machine did so).
    late_commits = {"CPS_COMMIT_LINGER_MS": "4000", "CPS_COMMIT_MAX_EVENTS": "1000000",
                    "CPS_COMMIT_MAX_RECORDS": "1000000"}
    worker = make_worker("a", **WORKER_SETTINGS, **late_commits).start()
    configure(kafka, built)
    assert worker.admin("POST", "/admin/engine/pause")[0] == 200
    produce(bootstrap, prefix, built.stream)
    asyncio.run(take_over(kafka.connection, slot_ids(worker.logs[-1].read_text(errors="replace"))))
    with contextlib.suppress(OSError):  # gone already if a timer's commit met the fencing
        worker.admin("POST", "/admin/engine/resume")
    assert worker.process.wait(timeout=90) == EXIT_RESTART, worker.tail()
    assert "stopping to restart from committed state" in worker.tail(200)
    # Orders it re-keyed before its commit was refused: the restarted worker sends them again.
    forwarded = kafka.read("internal.orders-by-buyer", timeout=3.0)
    print(f"orders re-keyed before the exit: {len(forwarded)}")
    assert forwarded
    worker.start()
    check_outputs(kafka, worker, built, timeout=SCALE.timeout_s, workers=[worker])


def test_a_backlog_drained_through_kills_and_a_joining_worker(kafka, make_worker, bootstrap,
                                                              prefix):
    # No order sends `paid` first here: T would be the `paid` time if a restart took
    # longer than the grace period before `created` was read (SPEC 5).
    built = backlog_scenario(SCALE.orders, seed=22, now=int(time.time() * 1000),
                             secret=SECRET, paid_first_share=0.0)
    first = make_worker("a", **WORKER_SETTINGS).start()
    configure(kafka, built)
    first.stop()
    produce(bootstrap, prefix, built.stream)
    second = make_worker("b", **WORKER_SETTINGS)
    with InputLag(bootstrap, prefix) as lag:
        total = lag()
        first.launch()
        left = [lag.down_to(total * 3 // 4)]
        first.kill()
        first.wipe_state()  # its tables come back from their changelogs
        first.launch()
        # A second worker joins while the first holds still, both paused from before they
        # process anything: the partitions are shared out anew with a backlog on every
        # input. The second then holds still, so a backlog is left at every later kill.
        switch(first, "pause")
        second.launch()
        switch(second, "pause")
        second.wait_ready()
        left.append(lag())
        switch(first, "resume")
        for _kill in range(SCALE.kills - 1):
            before = lag()
            left.append(lag.down_to(before - before // 16, timeout=60))
            first.kill()
            first.launch()
        switch(second, "resume")
    first.wait_ready()
    print(f"input lag at the kills and the join: {left} of {total}")
    assert all(left), f"a fault came after the drain: input lag {left} of {total}"
    check_outputs(kafka, first, built, timeout=SCALE.timeout_s, workers=[first, second])


def switch(worker, action: str, timeout: float = 60) -> None:
    """Pause or resume the worker's processing, as soon as its web server answers."""
    deadline = time.monotonic() + timeout
    while worker.admin("POST", f"/admin/engine/{action}")[0] != 200:
        assert time.monotonic() < deadline, worker.tail()
        time.sleep(0.1)


class InputLag:
    """Records of the engine's inputs (re-keying topics included) it has not committed,
    asked of the broker by clients that live as long as the test (a poll takes milliseconds)."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.group = prefix.rstrip(".")
        self.inputs = [TopicPartition(prefix + name, partition) for name in INPUTS
                       for partition in range(PARTITIONS)]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> InputLag:
        self.thread.start()
        self._run(self._start())
        return self

    async def _start(self) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                         isolation_level="read_committed")
        await self.admin.start()
        await self.consumer.start()

    def __exit__(self, *exc) -> None:
        self._run(self.consumer.stop())
        self._run(self.admin.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def __call__(self) -> int:
        return self._run(self._lag())

    async def _lag(self) -> int:
        committed = await self.admin.list_consumer_group_offsets(self.group)
        ends = await self.consumer.end_offsets(self.inputs)
        return sum(end - (committed[tp].offset if tp in committed else 0)
                   for tp, end in ends.items())

    def down_to(self, threshold: int, timeout: float = 120) -> int:
        """Wait until the lag is at most `threshold`; the lag then."""
        deadline = time.monotonic() + timeout
        while (lag := self()) > threshold and time.monotonic() < deadline:
            time.sleep(0.02)
        return lag
