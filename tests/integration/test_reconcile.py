"""`cps reconcile` on demo traffic: clean, then a difference it must report."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson

CPS = str(Path(sys.executable).with_name("cps"))


def run(worker, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([CPS, *args], env=worker.env, capture_output=True, text=True,
                          timeout=timeout)


def test_reconcile_is_clean_on_the_demo_and_reports_an_injected_difference(kafka, make_worker):
    worker = make_worker(CPS_ATTRIBUTION_GRACE_MS="1000",
                         CPS_SETTLEMENT_SCHEDULE="* * * * * *").start()
    demo = run(worker, "demo", "--rate", "3000", "--events", "6000", "--buyers", "500")
    assert demo.returncode == 0, demo.stderr

    deadline = time.monotonic() + 90
    while True:
        result = run(worker, "reconcile", "--in-flight-s", "0")
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(3)  # the worker may still be catching up
    assert result.returncode == 0, result.stdout[-3000:] + worker.tail()
    assert "reconcile: clean" in result.stdout
    counts = dict(line.strip().rsplit(": ", 1) for line in result.stdout.splitlines()
                  if line.startswith("  "))
    assert int(counts["orders"]) > 500 and int(counts["commission events"]) > 500
    settlements = kafka.read("settlements", timeout=30, until=lambda rs: any(
        r["value"]["state"] == "settled" for r in rs))
    assert any(r["value"]["state"] == "settled" for r in settlements)  # backdated orders

    commission = kafka.read("commissions", until=lambda rs: len(rs) >= 1)[0]["value"]
    forged = {**commission, "event_id": "forged", "delta": 1, "total": commission["total"] + 1}
    kafka.produce("commissions", [(commission["order_id"], orjson.dumps(forged))])
    result = run(worker, "reconcile", "--in-flight-s", "0")
    assert result.returncode == 1
    differences = [line for line in result.stdout.splitlines() if line.startswith("DIFFERENCE")]
    assert any(f"order {commission['order_id']} line {commission['item_id']}" in line
               for line in differences), result.stdout[-2000:]
    assert any(f"account {commission['account_id']}:" in line for line in differences), (
        result.stdout[-2000:])
    assert result.stdout.strip().endswith(f"reconcile: {len(differences)} differences")
