"""Sinks for the integration tests: a webhook sink's body, orders that get their
attribution at once, a worker set up with sinks, and what a receiver saw."""

from __future__ import annotations

import time
from collections.abc import Callable

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
    wait_for_sinks(worker, lambda stats: all(stats.get(name, {}).get("ready")
                                             for name in sinks), "sinks never showed up")


def wait_for_sinks(worker, condition: Callable[[dict], bool], failure: str,
                   timeout: float = 20.0) -> dict:
    """The sinks' figures (/sinks) once `condition` holds for them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = sink_stats(worker)
        if condition(stats):
            return stats
        time.sleep(0.2)
    raise AssertionError(f"{failure}: {sink_stats(worker)}")


def sink_stats(worker) -> dict:
    """Every sink's figures on this worker (/sinks)."""
    status, body = worker.get("/sinks?format=json")
    assert status == 200
    return orjson.loads(body)["sinks"]


def delivered(receiver, *, sent_by: str | None = None) -> list[dict]:
    """The requests the receiver answered with success, in arrival order (of one sink)."""
    return [r for r in receiver.requests if 200 <= r["status"] < 300
            and (sent_by is None or r["headers"].get("X-CPS-Sink") == sent_by)]


def arrivals_per_s(receiver, start: float, end: float) -> float:
    """Successful deliveries per second that arrived in [start, end) (time.monotonic)."""
    return sum(1 for r in delivered(receiver) if start <= r["at"] < end) / (end - start)
