"""Monitoring on the real broker: exact lag, draining, alerts firing and resolving."""

from __future__ import annotations

import re
import time

import orjson
from waiting import until

NOT_CPS = {"shop_id": "s1", "cps_joined_ms": None, "authorized_channels": []}


def _json(worker, path: str) -> dict:
    status, body = worker.get(path)
    assert status == 200, (path, body[:300])
    return orjson.loads(body)


def _clicks_lag(worker, prefix: str) -> int:
    view = _json(worker, "/lag?format=json")
    return sum(row["lag"] for row in view["partitions"]
               if row["topic"] == prefix + "clicks" and row["group"] == prefix.rstrip("."))


def test_lag_shows_a_backlog_exactly_drains_and_alerts(make_worker, kafka, events, prefix,
                                                       receivers):
    receiver = receivers()
    worker = make_worker(CPS_MONITOR_INTERVAL_S="1", CPS_ALERT_LAG="30",
                         CPS_ALERT_LAG_FOR_S="2").start()
    assert worker.admin("PUT", "/admin/shops/s1", NOT_CPS)[0] == 200
    assert worker.admin("PUT", "/admin/sinks/pager", {
        "kind": "webhook", "url": receiver.url, "streams": ["alerts"]})[0] == 200
    now = int(time.time() * 1000)
    kafka.produce("clicks", [(f"u{i}", events.click(f"warm{i}", f"u{i}", now))
                             for i in range(10)])
    assert until(lambda: _clicks_lag(worker, prefix) == 0 and
                 _json(worker, "/lag?format=json")["partitions"]), worker.tail()

    assert worker.admin("POST", "/admin/engine/pause")[1] == {
        "worker": f"http://127.0.0.1:{worker.port}", "processing": False}
    time.sleep(1)
    kafka.produce("clicks", [(f"u{i}", events.click(f"c{i}", f"u{i}", now)) for i in range(100)])
    assert until(lambda: _clicks_lag(worker, prefix) == 100, 30), _json(worker, "/lag?format=json")
    view = _json(worker, "/lag?format=json")
    assert set(view) >= {"ts_ms", "partitions"}
    assert set(view["partitions"][0]) == {"group", "topic", "partition", "committed", "end",
                                          "lag"}
    firing = until(lambda: [a for a in _json(worker, "/alerts?format=json")["alerts"]
                            if a["name"] == "consumer_lag" and a["state"] == "firing"], 30)
    assert firing and firing[0]["value"] >= 100
    assert worker.get("/alerts")[0] == 200

    assert worker.admin("POST", "/admin/engine/resume")[1]["processing"] is True
    assert until(lambda: _clicks_lag(worker, prefix) == 0, 60)
    resolved = until(lambda: [a for a in _json(worker, "/alerts?format=json")["alerts"]
                              if a["name"] == "consumer_lag" and a["state"] == "ok"
                              and a["resolved_ms"]], 30)
    assert resolved
    assert receiver.wait_for(lambda r: len(r.event_ids()) >= 2, 30)
    sent = [r["event"]["event"] for r in receiver.requests]
    assert [(e["name"], e["transition"]) for e in sent[:2]] == [("consumer_lag", "firing"),
                                                                ("consumer_lag", "resolved")]

    monitor = _json(worker, "/monitor?format=json")
    rates = monitor["rate_series"][prefix + "clicks"]
    assert any(value > 0 for _ts, value in rates)
    assert monitor["workers"][0]["recovery"]["completed"] is True
    metrics = worker.get("/metrics")[1]
    assert b"cps_consumer_lag{" in metrics and b"cps_attribution_delay_ms_bucket" in metrics
    transactions = re.search(rb"^cps_commit_ms_count (\S+)$", metrics, re.MULTILINE)
    committed = re.search(rb"^cps_commit_records_total (\S+)$", metrics, re.MULTILINE)
    assert float(transactions.group(1)) >= 1 and float(committed.group(1)) >= 100
    assert worker.get("/dashboard")[0] == 200
    assert worker.get("/static/uPlot.iife.min.js")[0] == 200
    assert worker.get("/static/../settings.py")[0] == 404


def test_attribution_delays_are_measured(make_worker, kafka, events):
    worker = make_worker(CPS_MONITOR_INTERVAL_S="1", CPS_ATTRIBUTION_GRACE_MS="500").start()
    now = int(time.time() * 1000)
    assert worker.admin("PUT", "/admin/shops/s1", {"cps_joined_ms": now - 86_400_000})[0] == 200
    time.sleep(1.5)
    kafka.produce("clicks", [(f"u{i}", events.click(f"c{i}", f"u{i}", now - 5000))
                             for i in range(20)])
    kafka.produce("orders", [(f"o{i}", events.order(f"o{i}", f"u{i}", int(time.time() * 1000)))
                             for i in range(20)])
    kafka.produce("orders", [("old", events.order("old", "u0", now - 2 * 3_600_000))])
    view = until(lambda: (v := _json(worker, "/monitor?format=json"))["delay_last_minute"][
        "count"] >= 20 and v["backfilled"] >= 1 and v)
    assert view, worker.tail()
    delay, click_delay = view["delay_last_minute"], view["click_delay_last_minute"]
    assert 0 < delay["p50"] <= delay["p99"] < 10_000
    assert click_delay["p50"] >= 5000       # clicks were 5 s before their orders
    assert view["backfilled"] >= 1          # the two-hour-old order is not in the figures
    assert view["delay_series"]["p99"]
