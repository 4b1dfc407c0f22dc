"""Merging the monitoring snapshots of several workers into one view."""

from __future__ import annotations

from app.domain.metrics import Histogram
from app.services.monitor import merge_snapshots


def _counts(*values_ms: int) -> list[int]:
    histogram = Histogram()
    for value in values_ms:
        histogram.record(value)
    return histogram.counts


def _snapshot(worker: str, sampled_ms: int, *, lag_rows: list[dict], delays: list[int],
              dead: dict[str, int], alerts: list[dict], sent: int) -> dict:
    return {
        "worker": worker, "sampled_ms": sampled_ms, "engine_group": "cps-engine",
        "lag": lag_rows, "lag_series": {"cps.clicks": [[sampled_ms, 1]]},
        "rate_series": {}, "delay_windows": [[60_000, _counts(*delays)]],
        "click_delay_windows": [], "backfilled": 1, "waited": 2, "dead_letters": dead,
        "sinks": {"crm": {"sent": sent, "retried": 0, "dead_lettered": 0, "rate_per_s": 5.0}},
        "alerts": alerts, "transitions": [],
        "recovery": {"in_recovery": False, "remaining": 0, "completed": True},
        "assignment": [0, 1],
    }


def _row(group: str, topic: str, partition: int, lag: int) -> dict:
    return {"group": group, "topic": topic, "partition": partition, "committed": 0,
            "end": lag, "lag": lag}


def _alert(state: str) -> dict:
    return {"name": "consumer_lag", "description": "lag", "state": state, "since_ms": None,
            "fired_ms": None, "resolved_ms": None, "value": 1, "threshold": 0}


def test_workers_merge_into_one_view():
    stale_rows = [_row("cps-engine", "cps.clicks", 0, 999)]
    fresh_rows = [_row("cps-engine", "cps.clicks", 0, 3), _row("cps-engine", "cps.orders", 1, 4),
                  _row("cps-engine-sink-crm", "cps.sink.crm", 0, 7)]
    view = merge_snapshots([
        _snapshot("w1", 1_000, lag_rows=stale_rows, delays=[5, 10], dead={"event": 2},
                  alerts=[_alert("firing")], sent=10),
        None,  # a worker that did not answer
        _snapshot("w2", 2_000, lag_rows=fresh_rows, delays=[400], dead={"event": 1, "x": 1},
                  alerts=[_alert("ok")], sent=5),
    ], now_ms=100_000)

    # Lag comes from the freshest sample: every worker reads the same broker.
    assert view["lag"] == fresh_rows
    assert view["engine_lag"] == 7
    assert view["sinks"]["crm"] == {"sent": 15, "retried": 0, "dead_lettered": 0,
                                    "rate_per_s": 10.0, "depth": 7}
    # Delays of all workers add up, bucket by bucket.
    assert view["delay_last_minute"]["count"] == 3
    assert view["delay_last_minute"]["p99"] == Histogram(_counts(5, 10, 400)).percentile(0.99)
    assert view["dead_letters"] == {"event": 3, "x": 1}
    assert [a["state"] for a in view["alerts"]] == ["firing"]  # the worst state wins
    assert [w["worker"] for w in view["workers"]] == ["w1", "w2"]
    assert (view["backfilled"], view["waited"]) == (2, 4)
