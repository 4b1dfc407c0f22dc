"""Operation plans on the real broker (SPEC 13): the selected set, holdout and variants,
exactly one action per buyer across kills and a joining worker, pause and resume, the
throttle, caps, quiet hours, missed fire times, and bad input."""

from __future__ import annotations

import time
from collections import Counter

import orjson
from plan_setup import delivered_actions, members, plan_body, rights_sink, wait_loaded

from app.domain.operations import bucket


def _selected(profiles: dict[str, dict], on_list: set[str]) -> set[str]:
    """The test's own reading of the rule below."""
    return {buyer for buyer, p in profiles.items()
            if p["level"] >= 2 and ("vip" in p["tags"] or p["follower"])
            and "new" not in p["tags"]} | on_list


RULE = {"any": [{"all": [{"level_gte": 2}, {"any": [{"tag": "vip"}, {"follower": True}]},
                         {"not": {"tag": "new"}}]},
                {"list": "winners"}]}


def test_a_now_plan_acts_once_on_exactly_the_selected_buyers(make_worker, kafka, receivers):
    receiver = receivers()
    worker = make_worker().start()
    rights_sink(worker, receiver)
    profiles = members(kafka, 3000)
    winners = {f"m{n:05d}" for n in range(0, 3000, 11)} | {f"list-only-{n}" for n in range(20)}
    status, _headers, answer = worker.request(
        "PUT", "/admin/lists/winners",
        "\n".join(orjson.dumps(b).decode() for b in winners).encode(), token="test-admin")
    assert status == 200, answer
    wait_loaded(worker, ("members", "lists"))
    status, answer = worker.admin("PUT", "/admin/plans/p-now", plan_body(
        audience=RULE, holdout_bp=1000,
        variants=[{"variant": "A", "weight_bp": 5000},
                  {"variant": "B", "weight_bp": 5000, "payload": {"coupon": "c-10"}}]))
    assert status == 200, answer
    expected = _selected(profiles, winners)
    held = {b for b in expected if bucket("p-now", b) < 1000}
    assert receiver.wait_for(
        lambda r: len(delivered_actions(r, "p-now")) >= len(expected - held), 120), (
        len(delivered_actions(receiver, "p-now")), len(expected - held), worker.tail())
    time.sleep(2)
    actions = delivered_actions(receiver, "p-now")
    counts = Counter(a["buyer_id"] for a in actions)
    assert set(counts) == expected - held
    assert max(counts.values()) == 1
    assert 0.07 <= len(held) / len(expected) <= 0.13
    for action in actions:
        assert action["variant"] in ("A", "B")
        assert action["payload"] == ({"coupon": "c-10"} if action["variant"] == "B"
                                     else {"coupon": "c-5"})
        assert action["action_id"] == f"{action['occurrence_id']}:{action['buyer_id']}"
    keys = {r["headers"]["Idempotency-Key"] for r in receiver.requests}
    assert keys == {a["action_id"] for a in actions}
    status, body = worker.get("/plans/p-now?format=json")
    assert status == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        detail = orjson.loads(worker.get("/plans/p-now?format=json")[1])
        occurrence = detail["occurrences"][0] if detail["occurrences"] else {}
        if occurrence.get("state") == "done" and occurrence.get("granted") == len(actions):
            break
        time.sleep(0.5)
    assert occurrence["selected"] == len(expected), occurrence
    assert occurrence["held_out"] == len(held) and occurrence["actions"] == len(actions)
    buyer = actions[0]["buyer_id"]
    status, body = worker.get(f"/members/{buyer}/records?format=json")
    assert status == 200
    assert [r["kind"] for r in orjson.loads(body)["records"]] == ["granted"]
