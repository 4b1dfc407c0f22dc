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
import os
import re
import time
from collections import Counter
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from scenarios import backlog_scenario, check_outputs, configure, produce

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
    worker = make_worker("a", **WORKER_SETTINGS).start()
    configure(kafka, built)
    assert worker.admin("POST", "/admin/engine/pause")[0] == 200
    produce(bootstrap, prefix, built.stream)
    time.sleep(2.0)  # the paused worker's fetcher buffers some of it meanwhile
    assert worker.admin("POST", "/admin/engine/resume")[0] == 200
    check_outputs(kafka, worker, built, timeout=SCALE.timeout_s, workers=[worker])
    status, body = worker.get("/metrics")
    waits = re.search(rb"^cps_catch_up_wait_ms_count (\S+)$", body, re.MULTILINE)
    assert status == 200 and waits and float(waits.group(1)) > 0


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
    first.start()
    total = input_lag(bootstrap, prefix)
    left = []
    for n in range(SCALE.kills):
        # Kills spread over the drain: at 3/4, 2/4, 1/4 of the backlog left (three kills).
        left.append(lag_down_to(bootstrap, prefix, total * (SCALE.kills - n) // (SCALE.kills + 1)))
        first.kill()
        if n == 0:
            first.wipe_state()  # its tables come back from their changelogs
        first.start()
        if n == 0:
            # A second worker joins: the first holds still meanwhile, so the partitions
            # are shared out anew with a backlog left on every input.
            assert first.admin("POST", "/admin/engine/pause")[0] == 200
            second.start()
            left.append(input_lag(bootstrap, prefix))
            assert first.admin("POST", "/admin/engine/resume")[0] == 200
    print(f"input lag at the kills and the join: {left} of {total}")
    assert all(left), f"a fault came after the drain: input lag {left} of {total}"
    check_outputs(kafka, first, built, timeout=SCALE.timeout_s, workers=[first, second])


def lag_down_to(bootstrap: str, prefix: str, threshold: int, timeout: float = 120) -> int:
    """Wait until the engine's input lag is at most `threshold`; the lag then."""
    deadline = time.monotonic() + timeout
    while (lag := input_lag(bootstrap, prefix)) > threshold and time.monotonic() < deadline:
        time.sleep(0.05)
    return lag


def input_lag(bootstrap: str, prefix: str) -> int:
    """Records of the input topics (re-keying topics included) the engine has not committed."""

    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                    isolation_level="read_committed")
        await admin.start()
        await consumer.start()
        try:
            committed = await admin.list_consumer_group_offsets(prefix.rstrip("."))
            inputs = [TopicPartition(prefix + name, partition) for name in INPUTS
                      for partition in range(PARTITIONS)]
            ends = await consumer.end_offsets(inputs)
            return sum(end - (committed[tp].offset if tp in committed else 0)
                       for tp, end in ends.items())
        finally:
            await consumer.stop()
            await admin.close()

    return asyncio.run(run())
