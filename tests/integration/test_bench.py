"""`cps bench --quick` on the real broker: all four implementations run and report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

CPS = str(Path(sys.executable).with_name("cps"))


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
    text = markdown_path.read_text()
    assert text.startswith("# Benchmarks\n\nintro") and "d. the engine as shipped" in text
