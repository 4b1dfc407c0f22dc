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

import os
import random
import time
from collections import Counter
from dataclasses import dataclass

import pytest
from scenarios import backlog_scenario, check_outputs, configure, produce

from app.domain.attribution import Mode, Reason


@dataclass(frozen=True)
class Scale:
    orders: int
    kills: int
    timeout_s: float  # for the outputs to be complete once the backlog is written


SCALES = {"short": Scale(orders=2000, kills=2, timeout_s=240),
          "full": Scale(orders=6000, kills=6, timeout_s=900)}
SCALE = SCALES[os.environ.get("CPS_CHAOS", "short")]
pytestmark = pytest.mark.timeout(1800 if SCALE is SCALES["full"] else 420)

SECRET = "test-secret"  # the link secret of the test workers (conftest.py)
# Orders without a fitting click wait this long for a late one; none comes here.
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
    rnd = random.Random(5)
    first.start()
    for n in range(SCALE.kills):
        time.sleep(rnd.uniform(0.5, 2.0))
        first.kill()
        if n == 0:
            first.wipe_state()  # its tables come back from their changelogs
        first.start()
        if n == SCALE.kills // 2:
            second.launch()  # joins mid-drain: the partitions are shared out anew
    second.wait_ready()
    check_outputs(kafka, first, built, timeout=SCALE.timeout_s, workers=[first, second])
