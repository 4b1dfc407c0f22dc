"""A struggling receiver: Retry-After honoured, the rate back within seconds, a rate change
at once, one slow order delaying only itself, and per-order order across a kill."""

from __future__ import annotations

import time

import pytest
from sink_setup import orders, setup, sink

EVENTS = ("created", "paid", "completed")


def _rate(receiver, seconds: float, *, accept=lambda request: True) -> float:
    """Successful deliveries per second over the next `seconds`."""
    def done():
        return sum(1 for r in receiver.requests if r["status"] == 200 and accept(r))
    start, before = time.monotonic(), done()
    time.sleep(seconds)
    return (done() - before) / (time.monotonic() - start)


@pytest.mark.alone  # measures delivery rates
def test_refusals_are_waited_out_and_a_new_rate_applies_at_once(make_worker, kafka, events,
                                                                 receivers):
    receiver = receivers()
    refusals = 10
    receiver.respond = lambda n, event: ((503, {"Retry-After": "1"}, 0.0) if n <= refusals
                                         else (200, {}, 0.0))
    worker = make_worker().start()
    setup(worker, struggling=sink(receiver.url, rate_per_s=20, burst=5, max_in_flight=4))
    ids = orders(kafka, events, 600)
    expected = {f"attribution:{o}" for o in ids}
    assert receiver.wait_for(lambda r: len(r.requests) >= 1, 60)
    began = time.monotonic()
    # Past the refusals and the climb back (5 s), the steady rate is the configured one.
    assert receiver.wait_for(lambda r: len(r.requests) > refusals, 60)
    time.sleep(6)
    steady = _rate(receiver, 6)
    assert 17 <= steady <= 23, steady
    assert receiver.wait_for(lambda r: set(r.event_ids()) >= expected,
                             30 + refusals * 1.0 - (time.monotonic() - began)), (
        len(set(receiver.event_ids()) & expected), worker.tail())
    refused = [r for r in receiver.requests if r["status"] == 503]
    assert len(refused) == refusals
    # Each Retry-After held the whole sink: nothing was sent within its second.
    refused_at = [r["at"] for r in refused]
    for answered in refused_at:
        sent_meanwhile = [r for r in receiver.requests
                          if answered + 0.05 < r["at"] < answered + 0.95]
        assert not sent_meanwhile, (answered, [r["at"] for r in sent_meanwhile])

    assert worker.admin("PUT", "/admin/sinks/struggling",
                        sink(receiver.url, rate_per_s=80, burst=5, max_in_flight=4))[0] == 200
    changed = time.monotonic()
    orders(kafka, events, 1200, start=600)
    time.sleep(max(0.0, changed + 2.0 - time.monotonic()))
    fast = _rate(receiver, 4)
    assert 68 <= fast <= 92, fast
    status = worker.get("/sinks?format=json")[1]
    assert b'"configured_rate_per_s":80.0' in status and b'"rate_reason":null' in status


@pytest.mark.alone  # measures delivery rates
def test_one_slow_order_delays_only_itself(make_worker, kafka, events, receivers):
    receiver = receivers()
    slow_order = "slow-1"
    receiver.respond = lambda n, event: (200, {}, 2.0 if event["event"].get("order_id")
                                         == slow_order else 0.0)
    worker = make_worker().start()
    setup(worker, statuses=sink(receiver.url, rate_per_s=20, burst=5, max_in_flight=4,
                                streams=["attributions", "order_status"]))
    now = int(time.time() * 1000)
    # The slow order first, with an event per status change: 2 s each, 8 s in all.
    kafka.produce("orders", [(slow_order, events.order(slow_order, "u-slow", now + i,
                                                       event=name))
                             for i, name in enumerate(EVENTS)])
    orders(kafka, events, 400, tag="fast-")
    assert receiver.wait_for(lambda r: any(q["event"]["event"].get("order_id") == slow_order
                                           for q in r.requests), 60)
    others = _rate(receiver, 6,
                   accept=lambda r: r["event"]["event"].get("order_id") != slow_order)
    assert 17 <= others <= 23, others


def test_a_kill_mid_delivery_skips_nothing_and_keeps_each_orders_order(make_worker, kafka,
                                                                      events, receivers):
    receiver = receivers()
    receiver.respond = lambda n, event: (503, {"Retry-After": "0"}, 0.0) if n % 7 == 0 else (
        200, {}, 0.02)
    worker = make_worker().start()
    setup(worker, statuses=sink(receiver.url, rate_per_s=60, burst=5, max_in_flight=4,
                                streams=["order_status"]))
    now = int(time.time() * 1000)
    ids = [f"k{i}" for i in range(120)]
    kafka.produce("orders", [(o, events.order(o, f"u-{o}", now + step, event=name))
                             for step, name in enumerate(EVENTS) for o in ids])
    assert receiver.wait_for(lambda r: len(r.requests) >= 60, 60)
    worker.kill()
    worker.start()
    expected = {(o, name) for o in ids for name in EVENTS}

    def delivered(r) -> list[tuple[str, str]]:
        return [(q["event"]["event"]["order_id"], q["event"]["event"]["status"])
                for q in r.requests if q["status"] == 200]

    assert receiver.wait_for(lambda r: set(delivered(r)) >= expected, 120), worker.tail()
    first_seen: dict[str, list[str]] = {}
    for order_id, status in delivered(receiver):
        seen = first_seen.setdefault(order_id, [])
        if status not in seen:
            seen.append(status)
    assert all(seen == list(EVENTS) for seen in first_seen.values()), first_seen
