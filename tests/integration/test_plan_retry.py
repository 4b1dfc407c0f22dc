"""A plan's failed actions: recorded `failed` when the sink gives up, queued again by
`cps plans retry PLAN`, then delivered with the same ids and recorded `granted`."""

from __future__ import annotations

import subprocess
import time

import orjson
from conftest import CPS
from plan_setup import delivered_actions, members, plan_body, rights_sink, wait_loaded
from sink_setup import setup, sink


def _records(kafka, kind: str, count: int) -> list[dict]:
    found = kafka.read("operation_records",
                       until=lambda rs: sum(r["value"]["kind"] == kind for r in rs) >= count,
                       timeout=60)
    return [r["value"] for r in found if r["value"]["kind"] == kind]


def test_failed_actions_are_retried_with_their_ids(make_worker, kafka, receivers):
    receiver = receivers()
    receiver.respond = lambda n, event: (400, {}, 0)  # refuses: no retry of the sink helps
    worker = make_worker().start()
    rights_sink(worker, receiver)
    members(kafka, 40)
    wait_loaded(worker)
    assert worker.admin("PUT", "/admin/plans/p-retry", plan_body())[0] == 200
    selected = 32  # levels 1-4 of 40 members
    failed = _records(kafka, "failed", selected)
    assert len({r["buyer_id"] for r in failed}) == selected
    assert all(r["ref"] == "webhook refused with 400" for r in failed)

    receiver.respond = lambda n, event: (200, {}, 0)
    retry = subprocess.run([CPS, "plans", "retry", "p-retry"], env=worker.env,
                           capture_output=True, text=True, timeout=60)
    assert f"requeued {selected} failed actions" in retry.stdout, retry.stderr
    assert receiver.wait_for(lambda r: len(delivered_actions(r, "p-retry")) >= selected, 60)
    granted = _records(kafka, "granted", selected)
    assert {r["buyer_id"] for r in granted} == {r["buyer_id"] for r in failed}
    assert {a["action_id"] for a in delivered_actions(receiver, "p-retry")} == {
        f"{r['occurrence_id']}:{r['buyer_id']}" for r in failed}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        totals = orjson.loads(worker.get("/plans/p-retry?format=json")[1])["occurrences"][0]
        if totals["granted"] == selected:
            break
        time.sleep(0.5)
    assert (totals["failed"], totals["granted"], totals["actions"]) == (
        selected, selected, selected)
    nothing = subprocess.run([CPS, "plans", "retry", "no-such-plan"], env=worker.env,
                             capture_output=True, text=True, timeout=60)
    assert nothing.returncode == 1 and "requeued 0" in nothing.stdout


def test_actions_failed_for_want_of_a_sink_are_retried_once_it_exists(make_worker, kafka,
                                                                       receivers):
    receiver = receivers()
    worker = make_worker().start()
    members(kafka, 10)
    wait_loaded(worker)
    body = plan_body(action={"kind": "grant", "sink": "late", "payload": {"coupon": "c"}})
    assert worker.admin("PUT", "/admin/plans/p-late", body)[0] == 200
    selected = 8  # levels 1-4 of 10 members
    failed = _records(kafka, "failed", selected)
    assert {r["ref"] for r in failed} == {"no sink 'late' to deliver it"}

    early = subprocess.run([CPS, "plans", "retry", "p-late"], env=worker.env,
                           capture_output=True, text=True, timeout=60)
    assert early.returncode == 1 and "requeued 0" in early.stdout
    assert f"left {selected} dead letters for sink 'late'" in early.stdout

    setup(worker, late=sink(receiver.url, streams=["commissions"], rate_per_s=1000,
                            burst=1000))
    retry = subprocess.run([CPS, "plans", "retry", "p-late"], env=worker.env,
                           capture_output=True, text=True, timeout=60)
    assert f"requeued {selected} failed actions" in retry.stdout, retry.stderr
    assert receiver.wait_for(lambda r: len(delivered_actions(r, "p-late")) >= selected, 60)
    assert {a["action_id"] for a in delivered_actions(receiver, "p-late")} == {
        f"{r['occurrence_id']}:{r['buyer_id']}" for r in failed}
    granted = _records(kafka, "granted", selected)
    assert {r["buyer_id"] for r in granted} == {r["buyer_id"] for r in failed}
