"""Several workers on one broker: isolation by prefix, sharing within a group."""

from __future__ import annotations

import time
import uuid

from app.domain.model import DAY_MS


def _shop(now: int) -> tuple[str, dict]:
    return "s1", {"shop_id": "s1", "cps_joined_ms": now - DAY_MS, "authorized_channels": []}


def test_two_engines_with_different_prefixes_never_see_each_other(kafka, make_worker, bootstrap,
                                                                  events):
    click, order = events.click, events.order
    other_prefix = f"t{uuid.uuid4().hex[:10]}."
    first = make_worker("a").start()
    second = make_worker("b", worker_prefix=other_prefix).start()
    other = type(kafka)(bootstrap, other_prefix)
    now = int(time.time() * 1000)
    for io in (kafka, other):
        io.produce("shops", [_shop(now)])
    time.sleep(1.0)
    for io, tag in ((kafka, "a"), (other, "b")):
        io.produce("clicks", [("u1", click(f"c-{tag}", "u1", now - 1000, promoter=f"p-{tag}"))])
        io.produce("orders", [(f"o-{tag}", order(f"o-{tag}", "u1", now))])
    mine = kafka.read("attributions", settle=2.0, until=lambda rs: len(rs) >= 1)
    theirs = other.read("attributions", settle=2.0, until=lambda rs: len(rs) >= 1)
    assert [(r["key"], r["value"]["click_id"]) for r in mine] == [("o-a", "c-a")], first.tail()
    assert [(r["key"], r["value"]["click_id"]) for r in theirs] == [("o-b", "c-b")], second.tail()


def test_two_workers_of_one_engine_share_the_partitions(kafka, make_worker, events):
    click, order = events.click, events.order
    first = make_worker("a").start()
    second = make_worker("b").start()
    assert first.get("/health")[0] == 200
    now = int(time.time() * 1000)
    kafka.produce("shops", [_shop(now)])
    time.sleep(2.0)  # the second worker's arrival rebalances the group
    buyers = [f"u{i}" for i in range(60)]
    kafka.produce("clicks", [(b, click(f"c-{b}", b, now - 1000, promoter=f"p-{b}"))
                             for b in buyers])
    kafka.produce("orders", [(f"o-{b}", order(f"o-{b}", b, now)) for b in buyers])
    records = kafka.read("attributions", settle=2.0, until=lambda rs: len(rs) >= len(buyers))
    assert sorted(r["key"] for r in records) == sorted(f"o-{b}" for b in buyers), (
        first.tail() + second.tail())
    assert all(r["value"]["click_id"] == f"c-{r['value']['buyer_id']}" for r in records)
    for worker in (first, second):
        assert worker.get("/ready")[0] == 200


def test_health_answers_before_the_worker_is_ready(make_worker):
    worker = make_worker().launch()
    deadline = time.monotonic() + 90
    health_before_ready = False
    ready = 0
    while time.monotonic() < deadline and ready != 200:
        health, ready = worker.get("/health")[0], worker.get("/ready")[0]
        health_before_ready = health_before_ready or (health == 200 and ready != 200)
        time.sleep(0.05)
    assert ready == 200, worker.tail()
    assert health_before_ready


def test_a_worker_logs_the_variables_that_are_no_settings_without_their_values(make_worker):
    worker = make_worker(CPS_VIEW_TOKNE="typo-value-1").start()
    worker.stop()
    log = worker.logs[-1].read_text()
    warning = "CPS_VIEW_TOKNE is not a setting (did you mean CPS_VIEW_TOKEN?); it is ignored"
    assert f"cps: {warning}" in log  # stderr, before the settings are read
    assert f"[WARNING] {warning}" in log  # the worker's log, once it is set up
    assert "typo-value-1" not in log
