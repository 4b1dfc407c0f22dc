"""`cps bench --quick` on the real broker: all four implementations run and report; and
`cps bench-transactions`, both clients."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from app.bench.runner import run_directory
from app.kafka.connection import KafkaConnection, started

CPS = str(Path(sys.executable).with_name("cps"))
# They time the implementations and the clients, and would time the other tests too.
pytestmark = pytest.mark.alone


def test_quick_bench_runs_every_implementation(bootstrap, tmp_path):
    json_path, markdown_path = tmp_path / "bench.json", tmp_path / "BENCHMARKS.md"
    markdown_path.write_text("# Benchmarks\n\nintro\n")
    env = dict(os.environ, CPS_BROKER=bootstrap, CPS_PARTITIONS="4")
    done = subprocess.run([CPS, "bench", "--quick", "--timeout-s", "240", "--json",
                           str(json_path), "--markdown", str(markdown_path)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = orjson.loads(json_path.read_bytes())
    results = {r["name"]: r for r in run["results"]}
    assert set(results) == {"raw", "peer", "naive", "engine"}
    for result in results.values():
        assert result["error"] is None
        assert result["attributions"] == result["orders"] > 0  # one per order, none missing
        assert result["events_per_s"] > 0 and result["cpu_s"] > 0 and result["peak_rss_mb"] > 0
    assert set(run["ratios"]) == {"d/a", "d/b", "d/c"}
    for result in results.values():  # the live phase: every order attributed, delays measured
        delays = result["delays_ms"]
        assert delays["orders"] > 0 and delays["missing"] == 0, (result["name"], delays)
        assert 0 <= delays["p50"] <= delays["p99"] <= delays["max"]
    state = run["state"]
    assert (state["buyers"], state["lag"], state["dead_letters"], state["alive"]) == (
        10_000, 0, 0, True)
    assert state["peak_rss_mb"] > 0
    plan = run["plan"]
    assert (plan["members"], plan["actions"]) == (5000, 5000)
    conversions = plan["conversions"]  # each of 300 members paid an order: one converted each
    assert (conversions["orders"], conversions["attributed"], conversions["converted"]) == (
        300, 300, 300) and conversions["exactly_once"], conversions
    assert 0 <= conversions["p50"] <= conversions["p99"] <= conversions["max"]
    text = markdown_path.read_text()
    assert text.startswith("# Benchmarks\n\nintro") and "d. the engine as shipped" in text
    # The run's topics go (a broker kept for many runs would run out of files), within
    # the moment the broker takes to see the controller's deletions.
    prefix = re.search(r"deleted the run's \d+ topics \(named with (bench\.[0-9a-f]+\.)\)",
                       done.stdout).group(1)
    assert asyncio.run(_gone(bootstrap, prefix, timeout_s=30))
    assert not run_directory(prefix).exists()  # nothing failed: no worker state or log kept


async def _gone(bootstrap: str, prefix: str, *, timeout_s: float) -> bool:
    """Whether no topic named with `prefix` is left within `timeout_s`."""
    async with started(KafkaConnection(bootstrap).admin()) as admin:
        deadline = time.monotonic() + timeout_s
        while any(prefix in topic for topic in await admin.list_topics()):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.5)
        return True


def test_bench_transactions_times_both_clients(bootstrap):
    env = dict(os.environ, CPS_BROKER=bootstrap)
    done = subprocess.run([CPS, "bench-transactions", "--commits", "10", "--records", "10,200",
                           "--rounds", "1"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines()
            if line.startswith("| aiokafka") or line.startswith("| librdkafka")]
    assert sorted((client.strip(), records.strip(), commits.strip())
                  for client, records, _round, commits, *_figures in rows) == [
        ("aiokafka", "10", "10"), ("aiokafka", "200", "10"),
        ("librdkafka", "10", "10"), ("librdkafka", "200", "10")]
    for *_run, wall, cpu, thread_cpu in rows:
        p50, p90 = (float(ms) for ms in wall.split("/"))
        assert 0 < p50 <= p90 and float(cpu) > 0 and float(thread_cpu) > 0
