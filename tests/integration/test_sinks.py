"""Sinks on the real broker with real local webhook receivers."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sink_setup import arrivals_per_s, delivered, orders, setup, sink, sink_stats, wait_for_sinks

from app.domain.model import DAY_MS

CPS = str(Path(sys.executable).with_name("cps"))
STATUSES = ("created", "paid", "completed")
# docs/sinks.md: a partition's offset is committed every half second (its oldest undelivered).
COMMITTED_EVERY_S = 0.5


def test_delivery_is_complete_signed_in_order_and_a_dead_sink_delays_nobody(
        make_worker, kafka, events, receivers):
    count = 40
    dead_timeout_s, dead_attempts = 1.5, 2
    good, throttling, hanging = receivers(), receivers(), receivers()
    good.respond = _first_created_fails_slowly(0.3)
    throttling.respond = lambda n, event: (429, {"Retry-After": "1"}, 0) if n <= 3 else (
        200, {}, 0)
    hanging.respond = lambda n, event: (200, {}, dead_timeout_s + 0.3)  # after every timeout
    worker = make_worker().start()
    setup(worker,
          good=sink(good.url, secret="s3cret", streams=["attributions", "order_status"],
                    max_in_flight=2 * count),
          throttled=sink(throttling.url),
          dead=sink(hanging.url, timeout_ms=int(dead_timeout_s * 1000), max_in_flight=count,
                    retry={"max_attempts": dead_attempts, "base_ms": 10, "max_ms": 10}),
          kuaishou_only=sink(good.url, filters={"channel_id": "kuaishou"}))
    ids = [f"o{i}" for i in range(count)]
    now = int(time.time() * 1000)
    kafka.produce("orders", [(o, events.order(o, f"u-{o}", now + step, event=status))
                             for step, status in enumerate(STATUSES) for o in ids])
    produced = time.monotonic()
    attributions = {f"attribution:{o}" for o in ids}
    statuses = {(o, status) for o in ids for status in STATUSES}

    def good_got_all(receiver) -> bool:
        got = {_identify(r) for r in delivered(receiver, sent_by="good")}
        return got >= attributions | statuses

    assert good.wait_for(good_got_all, 60), (
        len(delivered(good)), time.monotonic() - produced, worker.tail())
    dead_meanwhile = sink_stats(worker)["dead"]
    # The live sink had everything before the dead one could give up on a single event,
    # and the dead one was still trying.
    took = max(r["at"] for r in delivered(good)) - produced
    assert took < dead_attempts * dead_timeout_s, took
    assert dead_meanwhile["sent"] == 0 and dead_meanwhile["dead_lettered"] < count, (
        dead_meanwhile)
    assert throttling.wait_for(lambda r: {_identify(q) for q in delivered(r)} >= attributions, 60)

    # Nothing lost on the dead sink: each event tried, then dead-lettered once.
    letters = kafka.read("sinks.deadletter", until=lambda rs: len(rs) >= count, timeout=60)
    assert sorted(d["value"]["event_id"] for d in letters) == sorted(attributions)
    assert {(d["value"]["sink_id"], d["value"]["attempts"], d["value"]["error"])
            for d in letters} == {("dead", dead_attempts, "webhook: TimeoutError()")}
    assert Counter(r["event"]["event_id"] for r in hanging.requests) == {
        key: dead_attempts for key in attributions}

    # Each event once on success (no retry succeeded twice), each order's status changes
    # in their order although its first one was answered 500 and retried.
    good_deliveries = delivered(good, sent_by="good")
    assert Counter(map(_identify, good_deliveries)) == dict.fromkeys(attributions | statuses, 1)
    refused = [r for r in good.requests if r["status"] == 500]
    assert sorted(_identify(r) for r in refused) == sorted((o, "created") for o in ids)
    by_order: dict[str, list[str]] = {}
    for request in good_deliveries:
        if request["event"]["stream"] == "order_status":
            by_order.setdefault(request["event"]["event"]["order_id"], []).append(
                request["event"]["event"]["status"])
    assert by_order == {o: list(STATUSES) for o in ids}
    for request in good.requests:
        assert request["headers"]["X-CPS-Sink"] == "good"  # kuaishou_only matched nothing
        assert request["headers"]["Idempotency-Key"] == request["event"]["event_id"]
        digest = hmac.new(b"s3cret", request["body"], hashlib.sha256).hexdigest()
        assert request["headers"]["X-CPS-Signature"] == f"sha256={digest}"
    attribution = next(r["event"] for r in good_deliveries
                       if r["event"]["stream"] == "attributions")
    assert attribution["event"]["type"] == "none"

    assert [r["status"] for r in throttling.requests[:3]] == [429, 429, 429]
    assert sorted(_identify(r) for r in delivered(throttling)) == sorted(attributions)
    # The worker counts a dead letter once the broker has it: a moment after readers can.
    stats = wait_for_sinks(worker, lambda stats: stats["dead"]["dead_lettered"] >= count,
                           "the dead letters were never counted")
    assert stats["throttled"]["retried"] == 3
    assert stats["good"]["sent"] == 4 * count and stats["good"]["retried"] == count
    assert stats["dead"]["dead_lettered"] == count and stats["dead"]["sent"] == 0
    metrics = worker.get("/metrics")[1]
    assert f'cps_sink_sent_total{{sink="good"}} {4 * count}.0'.encode() in metrics


def _first_created_fails_slowly(delay_s: float):
    """A receiver's answers: each order's `created` status refused with 500 after `delay_s`
    the first time (long enough for its later statuses to overtake it if they could)."""
    refused: set[str] = set()

    def respond(n: int, event: dict) -> tuple[int, dict, float]:
        if event["stream"] == "order_status" and event["event"]["status"] == "created" \
                and event["event_id"] not in refused:
            refused.add(event["event_id"])
            return 500, {}, delay_s
        return 200, {}, 0.0
    return respond


def _identify(request: dict) -> str | tuple[str, str]:
    """An attribution's event id, or (order id, status) of a status change."""
    event = request["event"]
    if event["stream"] == "order_status":
        return event["event"]["order_id"], event["event"]["status"]
    return event["event_id"]


@pytest.mark.alone  # measures delivery rates
def test_rate_limit_holds_and_a_new_rate_applies_within_a_second(make_worker, kafka, events,
                                                                 receivers):
    receiver = receivers()
    worker = make_worker().start()
    setup(worker, limited=sink(receiver.url, rate_per_s=20, burst=1))
    orders(kafka, events, 500)
    assert receiver.wait_for(lambda r: len(r.requests) >= 30, 60)
    measured_from = time.monotonic()
    time.sleep(4)
    measured = arrivals_per_s(receiver, measured_from, measured_from + 4)
    assert 18 <= measured <= 22, measured

    changed = time.monotonic()
    assert worker.admin("PUT", "/admin/sinks/limited",
                        sink(receiver.url, rate_per_s=100, burst=1))[0] == 200
    time.sleep(max(0.0, changed + 3.1 - time.monotonic()))
    # It took effect at the first arrival from which ten came within 0.2 s (at 20/s and a
    # burst of 1 they take half a second, at 100/s a tenth), within a second of the ask.
    after = [r["at"] for r in delivered(receiver) if r["at"] >= changed]
    took_effect = next((first for first, tenth in zip(after, after[9:], strict=False)
                        if tenth - first <= 0.2), None)
    assert took_effect is not None and took_effect - changed <= 1.0, (
        took_effect and took_effect - changed)
    measured = arrivals_per_s(receiver, changed + 1.0, changed + 3.0)
    assert 90 <= measured <= 110, measured


def test_pause_resume_dead_letters_and_replay(make_worker, kafka, events, receivers):
    receiver = receivers()
    receiver.respond = lambda n, event: (400, {}, 0)  # refuses everything: no retry helps
    worker = make_worker().start()
    setup(worker, picky=sink(receiver.url))
    ids = orders(kafka, events, 5)
    expected = sorted(f"attribution:{o}" for o in ids)
    dead = kafka.read("sinks.deadletter", until=lambda rs: len(rs) >= 5, timeout=60)
    assert sorted(d["value"]["event_id"] for d in dead) == expected
    assert all(d["value"]["error"] == "webhook refused with 400" for d in dead)

    receiver.respond = lambda n, event: (200, {}, 0)
    assert worker.admin("POST", "/admin/sinks/picky/pause")[0] == 200
    wait_for_sinks(worker, lambda stats: stats["picky"]["paused"], "the sink never paused")
    replay = subprocess.run([CPS, "sinks", "replay", "picky"], env=worker.env,
                            capture_output=True, text=True, timeout=60)
    assert "requeued 5 dead letters" in replay.stdout, replay.stderr
    # Paused: the requeued events wait in the queue and nothing goes out.
    wait_for_sinks(worker, lambda stats: stats["picky"]["depth"] == 5,
                   "the requeued events never showed in the queue")
    time.sleep(1.5)
    assert receiver.event_ids() == []
    assert worker.admin("POST", "/admin/sinks/picky/resume")[0] == 200
    assert receiver.wait_for(lambda r: len(r.event_ids()) >= 5, 30)
    assert sorted(receiver.event_ids()) == expected


def test_a_worker_killed_mid_delivery_loses_nothing(make_worker, kafka, events, receivers):
    receiver = receivers()
    receiver.respond = lambda n, event: (200, {}, 0.05)
    rate, in_flight = 50, 4
    worker = make_worker().start()
    setup(worker, slow=sink(receiver.url, rate_per_s=rate, burst=1, max_in_flight=in_flight))
    ids = orders(kafka, events, 200)
    assert receiver.wait_for(lambda r: len(r.requests) >= 125, 60)
    killed_at = time.monotonic()
    worker.kill()
    time.sleep(0.2)  # what the killed worker had sent reaches the receiver
    sent_before = len(receiver.requests)
    worker.start()
    expected = {f"attribution:{o}" for o in ids}
    assert receiver.wait_for(lambda r: set(r.event_ids()) >= expected, 120), worker.tail()
    assert all(r["status"] == 200 and r["headers"]["Idempotency-Key"] == r["event"]["event_id"]
               for r in receiver.requests)
    before, after = receiver.requests[:sent_before], receiver.requests[sent_before:]
    assert {r["event"]["event_id"] for r in before + after} == expected
    # At least once, each event once per worker; the restarted one sends again only what
    # was delivered after the last commit: within the commit interval plus the requests
    # in flight before the kill.
    keys_before = Counter(r["event"]["event_id"] for r in before)
    keys_after = Counter(r["event"]["event_id"] for r in after)
    assert max(keys_before.values()) == 1 and max(keys_after.values()) == 1
    again = [r for r in before if r["event"]["event_id"] in keys_after]
    recent = killed_at - COMMITTED_EVERY_S - in_flight / rate - 1.0  # 1 s: a loaded machine
    assert all(r["at"] >= recent for r in again), (
        len(again), killed_at - min(r["at"] for r in again))
    assert before[0]["at"] < recent  # a worker that never committed would fail the above


def test_channel_webhook_gets_order_status_changes(make_worker, kafka, events, receivers):
    receiver = receivers()
    worker = make_worker(CPS_ATTRIBUTION_GRACE_MS="500").start()
    now = int(time.time() * 1000)
    assert worker.admin("PUT", "/admin/shops/s1", {"cps_joined_ms": now - DAY_MS})[0] == 200
    assert worker.admin("PUT", "/admin/channels/kuaishou", {"webhook_url": receiver.url})[0] == 200
    wait_for_sinks(worker, lambda stats: stats.get("channel-kuaishou", {}).get("ready"),
                   "the channel's sink never showed up")
    kafka.produce("clicks", [("u1", events.click("c1", "u1", now - 1000, channel="kuaishou"))])
    # The order's own channel names the webhook (its attribution may come later).
    kafka.produce("orders", [("o1", events.order("o1", "u1", now + i, event=kind,
                                                 channel_id="kuaishou"))
                             for i, kind in enumerate(STATUSES)])
    assert receiver.wait_for(lambda r: len(r.event_ids()) >= 3, 60), worker.tail()
    statuses = [r["event"]["event"]["status"] for r in receiver.requests]
    assert statuses[:3] == list(STATUSES)
    assert {r["event"]["stream"] for r in receiver.requests} == {"order_status"}
