"""A plan's failed actions: recorded `failed` when the sink gives up or does not exist,
queued again by `cps plans retry PLAN` (once the sink exists), then delivered with the
same ids and recorded `granted`."""

from __future__ import annotations

import subprocess
import time

import orjson
from conftest import CPS
from plan_setup import delivered_actions, members, plan_body, rights_sink, wait_loaded
from sink_setup import setup, sink


def _records(kafka, plan_id: str, kind: str, count: int) -> list[dict]:
    def mine(records: list[dict]) -> list[dict]:
        return [r["value"] for r in records
                if r["value"]["kind"] == kind and r["value"]["plan_id"] == plan_id]
    return mine(kafka.read("operation_records", until=lambda rs: len(mine(rs)) >= count,
                           timeout=60))


def _retry(worker, plan_id: str) -> subprocess.CompletedProcess:
    return subprocess.run([CPS, "plans", "retry", plan_id], env=worker.env,
                          capture_output=True, text=True, timeout=60)


def test_failed_actions_are_retried_with_their_ids(make_worker, kafka, receivers):
    receiver = receivers()
    receiver.respond = lambda n, event: (400, {}, 0)  # refuses: no retry of the sink helps
    worker = make_worker().start()
    rights_sink(worker, receiver)
    members(kafka, 40)
    wait_loaded(worker)
    assert worker.admin("PUT", "/admin/plans/p-retry", plan_body())[0] == 200
    late = plan_body(action={"kind": "grant", "sink": "late", "payload": {"coupon": "c"}})
    assert worker.admin("PUT", "/admin/plans/p-late", late)[0] == 200  # no such sink yet
    selected = 32  # levels 1-4 of 40 members
    failed = _records(kafka, "p-retry", "failed", selected)
    assert len({r["buyer_id"] for r in failed}) == selected
    assert all(r["ref"] == "webhook refused with 400" for r in failed)
    failed_late = _records(kafka, "p-late", "failed", selected)
    assert {r["ref"] for r in failed_late} == {"no sink 'late' to deliver it"}
    early = _retry(worker, "p-late")
    assert early.returncode == 1 and "requeued 0" in early.stdout, early.stderr
    assert f"left {selected} dead letters for sink 'late'" in early.stdout

    receiver.respond = lambda n, event: (200, {}, 0)
    retry = _retry(worker, "p-retry")
    assert f"requeued {selected} failed actions" in retry.stdout, retry.stderr
    setup(worker, late=sink(receiver.url, streams=["commissions"], rate_per_s=1000,
                            burst=1000))
    retry_late = _retry(worker, "p-late")
    assert f"requeued {selected} failed actions" in retry_late.stdout, retry_late.stderr
    for plan_id, gave_up in (("p-retry", failed), ("p-late", failed_late)):
        assert receiver.wait_for(lambda r, p=plan_id: len(delivered_actions(r, p)) >= selected,
                                 60)
        granted = _records(kafka, plan_id, "granted", selected)
        assert {r["buyer_id"] for r in granted} == {r["buyer_id"] for r in gave_up}
        assert {a["action_id"] for a in delivered_actions(receiver, plan_id)} == {
            f"{r['occurrence_id']}:{r['buyer_id']}" for r in gave_up}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        totals = orjson.loads(worker.get("/plans/p-retry?format=json")[1])["occurrences"][0]
        if totals["granted"] == selected:
            break
        time.sleep(0.5)
    assert (totals["failed"], totals["granted"], totals["actions"]) == (
        selected, selected, selected)
    nothing = _retry(worker, "no-such-plan")
    assert nothing.returncode == 1 and "requeued 0" in nothing.stdout
