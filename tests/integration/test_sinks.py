"""Sinks on the real broker with real local webhook receivers."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
import time
from pathlib import Path

from sink_setup import orders, setup, sink, sink_stats

from app.domain.model import DAY_MS

CPS = str(Path(sys.executable).with_name("cps"))


def test_delivery_is_complete_signed_in_order_and_a_dead_sink_delays_nobody(
        make_worker, kafka, events, receivers):
    good, throttling = receivers(), receivers()
    throttling.respond = lambda n, event: (429, {"Retry-After": "1"}, 0) if n <= 3 else (
        200, {}, 0)
    worker = make_worker().start()
    setup(worker, good=sink(good.url, secret="s3cret"),
          throttled=sink(throttling.url),
          dead=sink("http://127.0.0.1:9/nothing-listens", retry={"max_attempts": 1000}),
          kuaishou_only=sink(good.url, filters={"channel_id": "kuaishou"}))
    ids = orders(kafka, events, 60)
    expected = {f"attribution:{o}" for o in ids}
    assert good.wait_for(lambda r: set(r.event_ids()) >= expected, 60), worker.tail()
    assert throttling.wait_for(lambda r: set(r.event_ids()) >= expected, 60)
    time.sleep(1)
    assert sorted(good.event_ids()) == sorted(expected)          # no loss, no duplicate
    first = good.requests[0]
    assert first["headers"]["Idempotency-Key"] == first["event"]["event_id"]
    digest = hmac.new(b"s3cret", first["body"], hashlib.sha256).hexdigest()
    assert first["headers"]["X-CPS-Signature"] == f"sha256={digest}"
    assert first["event"]["stream"] == "attributions"
    assert first["event"]["event"]["type"] == "none"
    assert [r["status"] for r in throttling.requests[:3]] == [429, 429, 429]
    stats = sink_stats(worker)
    assert stats["dead"]["depth"] > 0 and stats["dead"]["sent"] == 0
    assert stats["dead"]["last_error"]
    assert stats["throttled"]["retried"] >= 3
    assert stats["good"]["sent"] == len(expected)
    metrics = worker.get("/metrics")[1]
    assert b'cps_sink_sent_total{sink="good"} 60.0' in metrics


def test_rate_limit_holds_and_a_new_rate_applies_within_a_second(make_worker, kafka, events,
                                                                 receivers):
    receiver = receivers()
    worker = make_worker().start()
    setup(worker, limited=sink(receiver.url, rate_per_s=20, burst=1))
    orders(kafka, events, 400)
    assert receiver.wait_for(lambda r: len(r.requests) >= 30, 60)
    start, count_at_start = time.monotonic(), len(receiver.requests)
    time.sleep(4)
    measured = (len(receiver.requests) - count_at_start) / (time.monotonic() - start)
    assert 18 <= measured <= 22, measured

    assert worker.admin("PUT", "/admin/sinks/limited",
                        sink(receiver.url, rate_per_s=100, burst=1))[0] == 200
    changed = time.monotonic()
    time.sleep(1.0)
    start, count_at_start = time.monotonic(), len(receiver.requests)
    time.sleep(2)
    measured = (len(receiver.requests) - count_at_start) / (time.monotonic() - start)
    assert 90 <= measured <= 110, measured
    assert start - changed <= 1.1


def test_pause_resume_dead_letters_and_replay(make_worker, kafka, events, receivers):
    receiver = receivers()
    receiver.respond = lambda n, event: (400, {}, 0)  # refuses everything: no retry helps
    worker = make_worker().start()
    setup(worker, picky=sink(receiver.url))
    ids = orders(kafka, events, 5)
    dead = kafka.read("sinks.deadletter", until=lambda rs: len(rs) >= 5, timeout=60)
    assert {d["value"]["event_id"] for d in dead} == {f"attribution:{o}" for o in ids}
    assert all(d["value"]["error"] == "webhook refused with 400" for d in dead)

    receiver.respond = lambda n, event: (200, {}, 0)
    assert worker.admin("POST", "/admin/sinks/picky/pause")[0] == 200
    time.sleep(2)
    replay = subprocess.run([CPS, "sinks", "replay", "picky"], env=worker.env,
                            capture_output=True, text=True, timeout=60)
    assert "requeued 5 dead letters" in replay.stdout, replay.stderr
    time.sleep(2)
    assert receiver.event_ids() == []                          # paused: nothing goes out
    assert worker.admin("POST", "/admin/sinks/picky/resume")[0] == 200
    assert receiver.wait_for(lambda r: len(r.event_ids()) >= 5, 30)
    assert sorted(receiver.event_ids()) == sorted(f"attribution:{o}" for o in ids)


def test_a_worker_killed_mid_delivery_loses_nothing(make_worker, kafka, events, receivers):
    receiver = receivers()
    receiver.respond = lambda n, event: (200, {}, 0.05)
    worker = make_worker().start()
    setup(worker, slow=sink(receiver.url, rate_per_s=30, burst=1))
    ids = orders(kafka, events, 150)
    assert receiver.wait_for(lambda r: len(r.requests) >= 30, 60)
    worker.kill()
    worker.start()
    expected = {f"attribution:{o}" for o in ids}
    assert receiver.wait_for(lambda r: set(r.event_ids()) >= expected, 120), worker.tail()
    duplicates = len(receiver.event_ids()) - len(expected)
    assert 0 <= duplicates <= 500   # at least once: the batch in flight may come again


def test_channel_webhook_gets_order_status_changes(make_worker, kafka, events, receivers):
    receiver = receivers()
    worker = make_worker(CPS_ATTRIBUTION_GRACE_MS="500").start()
    now = int(time.time() * 1000)
    assert worker.admin("PUT", "/admin/shops/s1", {"cps_joined_ms": now - DAY_MS})[0] == 200
    assert worker.admin("PUT", "/admin/channels/kuaishou", {"webhook_url": receiver.url})[0] == 200
    time.sleep(2)
    kafka.produce("clicks", [("u1", events.click("c1", "u1", now - 1000, channel="kuaishou"))])
    # The order's own channel names the webhook (its attribution may come later).
    kafka.produce("orders", [("o1", events.order("o1", "u1", now + i, event=kind,
                                                 channel_id="kuaishou"))
                             for i, kind in enumerate(("created", "paid", "completed"))])
    assert receiver.wait_for(lambda r: len(r.event_ids()) >= 3, 60), worker.tail()
    statuses = [r["event"]["event"]["status"] for r in receiver.requests]
    assert statuses[:3] == ["created", "paid", "completed"]
    assert {r["event"]["stream"] for r in receiver.requests} == {"order_status"}
