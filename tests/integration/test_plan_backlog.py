"""A plan written with its whole audience while no worker runs: the worker started on
that backlog (sink, profiles, list, plan, all at once) acts once on exactly the buyers
the rule selects, whichever topic it happens to read first; and an unpaid-order reminder
plan whose orders wait in the backlog too, delivered twice and out of order, reminds
exactly the buyers whose order stays unpaid, once."""

from __future__ import annotations

import time
from collections import Counter

from plan_setup import delivered_actions, members, plan_body
from sink_setup import NOT_CPS, sink


def test_a_plan_and_its_audience_written_before_the_worker_starts(make_worker, kafka,
                                                                   receivers, events):
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
    now = int(time.time() * 1000)
    kafka.produce("plans", [("p-remind", {**plan_body(
        audience={"level_gte": 0}, trigger={"kind": "event", "on": "created_unpaid",
                                            "delay_ms": 2000}),
        "plan_id": "p-remind", "created_ms": now})])
    buyers = sorted(profiles)
    unpaid, paid, closed = buyers[:15], buyers[15:30], buyers[30:40]

    def life(buyer: str, *kinds: str) -> list[tuple[str, dict]]:
        return [(f"o-{buyer}", events.order(f"o-{buyer}", buyer, now + n, event=kind))
                for n, kind in enumerate(kinds)]

    kafka.produce("orders", [record for buyer in unpaid for record in life(
        buyer, "created", "created")])
    kafka.produce("orders", [record for buyer in paid for record in life(
        buyer, "paid", "created", "created")])  # paid first, then its creation, twice
    kafka.produce("orders", [record for buyer in closed for record in life(
        buyer, "created", "closed", "created")])  # closed unpaid, then a replay
    worker.start()
    assert receiver.wait_for(
        lambda r: len(delivered_actions(r, "p-backlog")) >= len(expected), 120), (
        len(delivered_actions(receiver, "p-backlog")), len(expected), worker.tail())
    time.sleep(2)
    counts = Counter(a["buyer_id"] for a in delivered_actions(receiver, "p-backlog"))
    assert set(counts) == expected and max(counts.values()) == 1
    assert receiver.wait_for(lambda r: len(delivered_actions(r, "p-remind")) >= len(unpaid),
                             60), worker.tail()
    time.sleep(3)  # the other orders' timers are due by now too
    reminded = Counter(a["buyer_id"] for a in delivered_actions(receiver, "p-remind"))
    assert reminded == Counter(unpaid)
