"""A plan written with its whole audience while no worker runs: the worker started on
that backlog (sink, profiles, list, plan, all at once) acts once on exactly the buyers
the rule selects, whichever topic it happens to read first."""

from __future__ import annotations

import time
from collections import Counter

from plan_setup import delivered_actions, members, plan_body
from sink_setup import NOT_CPS, sink


def test_a_plan_and_its_audience_written_before_the_worker_starts(make_worker, kafka,
                                                                   receivers):
    receiver = receivers()
    worker = make_worker().start()
    worker.stop()  # topics exist; from here on everything waits in Kafka
    kafka.produce("shops", [("s1", NOT_CPS)])
    kafka.produce("sinks", [("rights", {"sink_id": "rights", **sink(
        receiver.url, streams=["commissions"], rate_per_s=100_000, burst=10_000,
        max_in_flight=64)})])
    profiles = members(kafka, 1500)
    winners = {f"m{n:05d}" for n in range(0, 1500, 13)} | {"list-only-1", "list-only-2"}
    kafka.produce("lists", [(f"winners/{buyer}", {}) for buyer in winners])
    kafka.produce("plans", [("p-backlog", {**plan_body(
        audience={"any": [{"level_gte": 3}, {"list": "winners"}]}), "plan_id": "p-backlog",
        "created_ms": int(time.time() * 1000)})])
    expected = {b for b, p in profiles.items() if p["level"] >= 3} | winners
    worker.start()
    assert receiver.wait_for(
        lambda r: len(delivered_actions(r, "p-backlog")) >= len(expected), 120), (
        len(delivered_actions(receiver, "p-backlog")), len(expected), worker.tail())
    time.sleep(2)
    counts = Counter(a["buyer_id"] for a in delivered_actions(receiver, "p-backlog"))
    assert set(counts) == expected and max(counts.values()) == 1
