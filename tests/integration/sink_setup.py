"""Sinks for the integration tests: a webhook sink's body, orders that get their
attribution at once, and a worker set up with sinks."""

from __future__ import annotations

import time

import orjson

NOT_CPS = {"shop_id": "s1", "cps_joined_ms": None, "authorized_channels": []}


def sink(url: str, **extra) -> dict:
    return {"kind": "webhook", "url": url, "streams": ["attributions"], "rate_per_s": 1000,
            "burst": 100, "retry": {"max_attempts": 20, "base_ms": 50, "max_ms": 500}, **extra}


def orders(kafka, events, count: int, *, start: int = 0, tag: str = "o") -> list[str]:
    """Orders at a shop outside CPS: each gets its attribution at once, one event per order."""
    now = int(time.time() * 1000)
    ids = [f"{tag}{i}" for i in range(start, start + count)]
    kafka.produce("orders", [(o, events.order(o, f"u-{o}", now)) for o in ids])
    return ids


def setup(worker, **sinks: dict) -> None:
    assert worker.admin("PUT", "/admin/shops/s1", NOT_CPS)[0] == 200
    for name, body in sinks.items():
        status, answer = worker.admin("PUT", f"/admin/sinks/{name}", body)
        assert status == 200, answer
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        stats = sink_stats(worker)
        if all(stats.get(name, {}).get("ready") for name in sinks):
            return
        time.sleep(0.3)
    raise AssertionError("sinks never showed up")


def sink_stats(worker) -> dict:
    """Every sink's figures on this worker (/sinks)."""
    status, body = worker.get("/sinks?format=json")
    assert status == 200
    return orjson.loads(body)["sinks"]
