"""Operation plans on the real broker (SPEC 13): the selected set, holdout and variants,
exactly one action per buyer across kills and a joining worker, pause and resume, the
throttle, caps, quiet hours, missed fire times, bad input, and an event trigger.

The tests after the kills share one worker (`shared`): each has its own shop, buyers and
plans, so they see nothing of each other but the worker's start."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import mmh3
import orjson
import pytest
from conftest import Kafka, Receiver, Worker
from plan_setup import delivered_actions, members, plan_body, rights_sink, wait_loaded
from sink_setup import sink_stats
from sse_client import SSEClient


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
    held = {b for b in expected  # SPEC 13's bucket below holdout_bp
            if mmh3.hash(f"p-now:{b}", signed=False) % 10_000 < 1000}
    assert receiver.wait_for(
        lambda r: len(delivered_actions(r, "p-now")) >= len(expected - held), 120), (
        len(delivered_actions(receiver, "p-now")), len(expected - held), worker.tail())
    time.sleep(2)
    actions = delivered_actions(receiver, "p-now")
    counts = Counter(a["buyer_id"] for a in actions)
    assert set(counts) == expected - held
    assert max(counts.values()) == 1
    assert 0.07 <= len(held) / len(expected) <= 0.13
    for action in actions:  # A below 1000 + 9000 * 5000 // 10000, B above
        spec_bucket = mmh3.hash(f"p-now:{action['buyer_id']}", signed=False) % 10_000
        assert action["variant"] == ("A" if spec_bucket < 5500 else "B")
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
    # the results' denominators: each variant's exposed buyers, the holdout's held out
    exposed = Counter(a["variant"] for a in actions)
    assert [(r["variant"], r["buyers"], r["conversions"]) for r in detail["results"]] == [
        ("A", exposed["A"], 0), ("B", exposed["B"], 0), ("holdout", len(held), 0)]
    assert worker.get("/plans/p-now")[0] == 200  # the page, with its results table
    buyer = actions[0]["buyer_id"]
    status, body = worker.get(f"/members/{buyer}/records?format=json")
    assert status == 200
    assert [r["kind"] for r in orjson.loads(body)["records"]] == ["granted"]


# -- helpers of the tests below ---------------------------------------------------------

def _arrivals(receiver, plan_id: str) -> list[tuple[float, dict]]:
    """(monotonic arrival time, action) of each delivery of a `plan_id` action that the
    receiver took, in arrival order."""
    return [(r["at"], r["event"]["event"]) for r in receiver.requests
            if r["status"] == 200 and r["event"].get("stream") == "plan_actions"
            and r["event"]["event"]["plan_id"] == plan_id]


def _buyers(receiver, plan_id: str) -> Counter:
    """How often each buyer's action of `plan_id` reached the receiver."""
    return Counter(action["buyer_id"] for _at, action in _arrivals(receiver, plan_id))


def _put_plan(worker, plan_id: str, **fields) -> dict:
    status, answer = worker.admin("PUT", f"/admin/plans/{plan_id}", plan_body(**fields))
    assert status == 200, answer
    return answer["value"]


def _level_gte_1(profiles: dict[str, dict]) -> set[str]:
    """Whom plan_body's default audience selects."""
    return {buyer for buyer, profile in profiles.items() if profile["level"] >= 1}


def _records(kafka, plan_id: str, *, until=None, timeout: float = 60.0,
             settle: float = 0.0) -> list[dict]:
    """The operation records of `plan_id` on cps.operation_records (read_committed);
    `until` is asked about those."""
    def mine(records: list[dict]) -> list[dict]:
        return [r["value"] for r in records
                if r["value"] is not None and r["value"]["plan_id"] == plan_id]
    found = kafka.read("operation_records", timeout=timeout, settle=settle,
                       until=None if until is None else lambda rs: until(mine(rs)))
    return mine(found)


def _kinds(records: list[dict], kind: str) -> Counter:
    """How many `kind` records each buyer has."""
    return Counter(r["buyer_id"] for r in records if r["kind"] == kind)


def _occurrence(worker, plan_id: str, done, timeout: float = 30.0) -> dict:
    """The plan's one occurrence on /plans/{id}, once `done(occurrence)` holds."""
    occurrence: dict = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = worker.get(f"/plans/{plan_id}?format=json")
        if status == 200:
            detail = orjson.loads(body)
            assert len(detail["occurrences"]) <= 1, detail["occurrences"]
            occurrence = detail["occurrences"][0] if detail["occurrences"] else {}
            if occurrence and done(occurrence):
                return occurrence
        time.sleep(0.5)
    raise AssertionError(f"occurrence of {plan_id} not as expected: {occurrence}")


# -- kills and a joining worker --------------------------------------------------------------

# A fixed term in 2019: a plan written straight to cps.plans (the admin API refuses it)
# that can never fire again must not hold the worker up.
NEVER = {"trigger": {"kind": "schedule", "cron": "0 9 * * *"},
         "period": "0-0 0-0 0-0 24-25 4-4 * 2019-2019 2"}
REMIND = {"trigger": {"kind": "event", "on": "created_unpaid", "delay_ms": 2000}}
# Shorter than the run below, kills included: lateness decides whether an occurrence
# starts, never whether its later buyers are decided.
LATENESS_MS = 20_000


def test_sigkills_and_a_joining_worker_leave_exactly_one_action_per_selected_buyer(
        make_worker, kafka, receivers, events):
    receiver = receivers()
    first = make_worker("a", CPS_PLAN_MAX_LATENESS_MS=str(LATENESS_MS)).start()
    rights_sink(first, receiver)
    expected = _level_gte_1(members(kafka, 2000))
    wait_loaded(first)
    kafka.produce("plans", [("p-never", {**plan_body(**NEVER), "plan_id": "p-never",
                                         "created_ms": int(time.time() * 1000)})])
    # Event plans over every member: only the buyers whose order stays unpaid get one,
    # however often the worker restarts; a paused one's timers wait for its resume, which
    # comes too late: each of its buyers is recorded missed, once.
    _put_plan(first, "p-remind", **REMIND)
    _put_plan(first, "p-hold", state="paused", **REMIND)
    unpaid, paid = sorted(expected)[:20], sorted(expected)[20:30]
    created = int(time.time() * 1000)
    lives = [(f"o-{buyer}", events.order(f"o-{buyer}", buyer, created)) for buyer in unpaid]
    lives += [(f"o-{buyer}", events.order(f"o-{buyer}", buyer, created + offset, event=kind))
              for buyer in paid for offset, kind in ((0, "created"), (500, "paid"))]
    kafka.produce("orders", lives)
    assert receiver.wait_for(lambda r: len(_buyers(r, "p-remind")) >= len(unpaid), 60), (
        first.tail())
    # Slow enough that the first worker, back on its own before the second is ready,
    # does not finish the run before the second kill.
    created = _put_plan(first, "p-kill", rate_per_s=100, burst=30)["created_ms"]

    def delivered(at_least: int, timeout: float = 90):
        """Wait until `at_least` buyers got their action; the count then."""
        assert receiver.wait_for(lambda r: len(_buyers(r, "p-kill")) >= at_least, timeout), (
            len(_buyers(receiver, "p-kill")), first.tail(), second.tail())
        return len(_buyers(receiver, "p-kill"))

    second = make_worker("b", CPS_PLAN_MAX_LATENESS_MS=str(LATENESS_MS))
    delivered(200)
    first.kill()  # the only worker dies mid-run ...
    first.launch()  # ... comes back on its own state, and a second one joins
    second.launch()
    first.wait_ready()
    second.wait_ready()
    kafka.produce("orders", lives)  # every order event again, after payments and reminders
    so_far = delivered(len(_buyers(receiver, "p-kill")) + 200)
    assert so_far < len(expected) - 300, "the run ended before the second kill"
    first.kill()  # one of two dies: the other takes its partitions over
    delivered(len(expected), 120)
    assert second.admin("POST", "/admin/plans/p-hold/resume")[0] == 200
    missed = _records(kafka, "p-hold", settle=1.0,
                      until=lambda rs: len(_kinds(rs, "missed")) >= len(unpaid))
    time.sleep(1.0)

    ids = {f"p-kill@{created}:{buyer}" for buyer in expected}
    arrived = _arrivals(receiver, "p-kill")
    assert {action["action_id"] for _at, action in arrived} == ids
    for request in receiver.requests:  # a repeat after a kill carries the same key
        assert request["headers"]["Idempotency-Key"] == request["event"]["event_id"]
    assert all(action["action_id"] == request_id for request_id, action in (
        (r["event"]["event_id"], r["event"]["event"]) for r in receiver.requests))
    last = max(action["ts_ms"] for _at, action in arrived)
    assert last - created > LATENESS_MS, "the run was too short to outlast the lateness"
    reminders = {f"p-remind@o-{buyer}:created:{buyer}" for buyer in unpaid}
    assert {action["action_id"] for _at, action in _arrivals(receiver, "p-remind")} == reminders
    assert _arrivals(receiver, "p-hold") == []
    assert _kinds(missed, "missed") == Counter(unpaid) and len(missed) == len(unpaid)
    actions = [r["value"] for r in kafka.read(
        "plan_actions", timeout=60, settle=1.0,
        until=lambda rs: len(rs) >= len(ids) + len(unpaid))]
    counts = Counter(action["action_id"] for action in actions)
    assert set(counts) == ids | reminders
    assert max(counts.values()) == 1, counts.most_common(3)
    occurrence = _occurrence(second, "p-kill",
                             lambda o: o["granted"] == len(ids) and o["state"] == "done")
    assert occurrence["selected"] == occurrence["actions"] == len(ids), occurrence
    never = orjson.loads(second.get("/plans/p-never?format=json")[1])
    assert (never["next_fire_ms"], never["occurrences"], never["failed"]) == ([], [], None)
    repeats = len(arrived) - len(ids)
    print(f"{repeats} repeated deliveries (same Idempotency-Key) after the kills")


# -- one worker for the tests below: each its own shop, buyers and plans ------------------

@pytest.fixture(scope="module")
def shared(bootstrap, tmp_path_factory) -> Iterator[SimpleNamespace]:
    """A worker, its `rights` sink's receiver and the topics' Kafka, for tests that do not
    disturb each other (one worker start instead of one each). The quiet-hours plan is put
    at once, so that its wait for the quiet hours to end overlaps the tests before its own."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    receiver = Receiver().start()
    worker = Worker(bootstrap, prefix, tmp_path_factory.mktemp("plans") / "shared")
    try:
        worker.start()
        rights_sink(worker, receiver)
        kafka = Kafka(bootstrap, prefix)
        yield SimpleNamespace(worker=worker, receiver=receiver, kafka=kafka,
                              quiet=_quiet_plan(worker, kafka))
    finally:
        worker.stop()
        receiver.stop()


def _quiet_plan(worker, kafka) -> SimpleNamespace:
    """Plan p-quiet, quiet from an hour ago to the next minute at least 10 s away (HH:MM:
    whole minutes), in the plan's time zone, CPS_PLAN_TZ=UTC (its members name none)."""
    expected = _level_gte_1(members(kafka, 50, shop="s-quiet", tag="quiet"))
    wait_loaded(worker)
    now = datetime.now(UTC)
    end = (now + timedelta(seconds=70)).replace(second=0, microsecond=0)
    quiet = {"from": f"{now - timedelta(hours=1):%H:%M}", "to": f"{end:%H:%M}"}
    _put_plan(worker, "p-quiet", shop_id="s-quiet", quiet_hours=quiet)
    return SimpleNamespace(expected=expected, end_ms=int(end.timestamp() * 1000))


# -- pause and resume, the throttle --------------------------------------------------------

def test_pause_holds_every_delivery_within_a_second_and_resume_delivers_the_rest(shared):
    worker, receiver, kafka = shared.worker, shared.receiver, shared.kafka
    expected = _level_gte_1(members(kafka, 300, shop="s-pause", tag="pause"))
    wait_loaded(worker)
    _put_plan(worker, "p-pause", shop_id="s-pause", rate_per_s=50, burst=5)
    assert receiver.wait_for(lambda r: len(_arrivals(r, "p-pause")) >= 50, 60), worker.tail()
    status, answer = worker.admin("POST", "/admin/plans/p-pause/pause")
    assert status == 200, answer
    paused_at = time.monotonic()
    time.sleep(4.0)
    arrived = _arrivals(receiver, "p-pause")
    late = [at - paused_at for at, _action in arrived if at > paused_at + 1.0]
    assert not late, f"{len(late)} deliveries more than 1 s after the pause: {late[:5]}"
    held = len(arrived)
    assert held < len(expected)
    status, answer = worker.admin("POST", "/admin/plans/p-pause/resume")
    assert status == 200, answer
    resumed_at = time.monotonic()
    assert receiver.wait_for(lambda r: len(_arrivals(r, "p-pause")) > held, 10)
    assert _arrivals(receiver, "p-pause")[held][0] - resumed_at < 1.5
    assert receiver.wait_for(lambda r: len(_arrivals(r, "p-pause")) >= len(expected), 30), (
        len(_arrivals(receiver, "p-pause")), len(expected))
    time.sleep(1.0)
    counts = _buyers(receiver, "p-pause")
    assert set(counts) == expected and max(counts.values()) == 1


def _rate(arrived: list[tuple[float, dict]], start: float, seconds: float) -> float:
    return sum(1 for at, _action in arrived if start <= at < start + seconds) / seconds


def test_the_plans_rate_paces_delivery_and_a_new_rate_applies_at_once(shared):
    worker, receiver, kafka = shared.worker, shared.receiver, shared.kafka
    members(kafka, 1500, shop="s-rate", tag="rate")
    wait_loaded(worker)
    first = _put_plan(worker, "p-rate", shop_id="s-rate", rate_per_s=40, burst=20)
    assert receiver.wait_for(lambda r: len(_arrivals(r, "p-rate")) >= 40, 60), worker.tail()
    start = time.monotonic()
    time.sleep(6.0)
    slow = _rate(_arrivals(receiver, "p-rate"), start, 6.0)
    assert 40 * 0.85 <= slow <= 40 * 1.15, slow
    # The same plan at another rate: created_ms is kept, so it does not fire again. The
    # burst stays 20, less than a tick's worth at 100/s.
    again = _put_plan(worker, "p-rate", shop_id="s-rate", rate_per_s=100, burst=20)
    changed = time.monotonic()
    assert again["created_ms"] == first["created_ms"]
    time.sleep(5.5)
    arrived = _arrivals(receiver, "p-rate")
    fast = _rate(arrived, changed + 1.5, 4.0)
    assert 100 * 0.85 <= fast <= 100 * 1.15, (slow, fast)
    assert max(_buyers(receiver, "p-rate").values()) == 1
    _occurrence(worker, "p-rate", lambda o: o["state"] == "running")  # still one occurrence
    assert worker.admin("POST", "/admin/plans/p-rate/stop")[0] == 200  # the rest: dropped


def test_a_change_right_after_a_put_builds_on_that_plan(shared):
    # The admin API read the plan it changes from the catalog, which follows cps.plans a
    # moment behind the write: a re-PUT right after a PUT stamped a new created_ms (about
    # one in six here), so a `now` plan fired twice; a pause right after a re-PUT wrote
    # the plan as it was before it.
    worker = shared.worker
    for n in range(20):
        body = plan_body(shop_id="s-none", rate_per_s=10, burst=10)
        first = worker.admin("PUT", f"/admin/plans/p-quick-{n}", body)[1]["value"]
        again = worker.admin("PUT", f"/admin/plans/p-quick-{n}", {**body, "rate_per_s": 20})
        assert again[1]["value"]["created_ms"] == first["created_ms"], n
        assert worker.admin("POST", f"/admin/plans/p-quick-{n}/pause")[0] == 200
    time.sleep(1.0)
    listed = orjson.loads(worker.get("/plans?format=json")[1])["plans"]
    quick = [p for p in listed if p["plan_id"].startswith("p-quick-")]
    assert len(quick) == 20
    assert all(p["state"] == "paused" and p["rate_per_s"] == 20 for p in quick), quick
    assert all(len(p["occurrences"]) <= 1 for p in quick)


def test_live_subscribers_get_their_shops_actions_once_and_resume_by_event_id(shared):
    # Plan actions are read from cps.plan_actions itself, not from the live topic.
    worker, kafka = shared.worker, shared.kafka
    expected = _level_gte_1(members(kafka, 40, shop="s-live", tag="live"))
    wait_loaded(worker)
    client = SSEClient(worker.port, "/subscribe?stream=plan_actions&shop_id=s-live")
    elsewhere = SSEClient(worker.port, "/subscribe?stream=plan_actions&shop_id=s-nobody")
    assert client.status == elsewhere.status == 200
    time.sleep(1.0)
    _put_plan(worker, "p-live", shop_id="s-live")
    assert client.wait(len(expected), 60), worker.tail()
    time.sleep(1.0)
    got = [event for _id, event in client.events]
    assert sorted(event["buyer_id"] for event in got) == sorted(expected)
    assert {(event["plan_id"], event["shop_id"]) for event in got} == {("p-live", "s-live")}
    assert not elsewhere.events
    first_id = client.events[0][0]
    client.close()
    elsewhere.close()
    again = SSEClient(worker.port, "/subscribe?stream=plan_actions&shop_id=s-live",
                      last_event_id=first_id)
    assert again.wait(len(expected) - 1, 30), worker.tail()
    time.sleep(1.0)
    assert sorted(event["buyer_id"] for _id, event in again.events) == sorted(
        expected - {got[0]["buyer_id"]})
    again.close()


# -- caps, lateness, quiet hours --------------------------------------------------------

def test_a_frequency_cap_over_two_plans_of_a_shop_gives_each_buyer_one_action(shared):
    worker, receiver, kafka = shared.worker, shared.receiver, shared.kafka
    expected = _level_gte_1(members(kafka, 200, shop="s-cap", tag="cap"))
    wait_loaded(worker)
    cap = {"max": 1, "per_ms": 86_400_000}
    plans = ("p-cap-1", "p-cap-2")
    for plan_id in plans:
        _put_plan(worker, plan_id, shop_id="s-cap", frequency_cap=cap)

    def acted(plan_id: str) -> set[str]:
        return set(_buyers(receiver, plan_id))

    assert receiver.wait_for(lambda r: sum(len(acted(p)) for p in plans) >= len(expected),
                             60), worker.tail()
    capped = {plan_id: _kinds(_records(
        kafka, plan_id, timeout=30,
        until=lambda rs, plan_id=plan_id: len(_kinds(rs, "capped")) + len(acted(plan_id))
        >= len(expected)), "capped") for plan_id in plans}
    time.sleep(1.0)
    got = _buyers(receiver, plans[0]) + _buyers(receiver, plans[1])
    assert set(got) == expected and max(got.values()) == 1
    for plan_id, other in (plans, plans[::-1]):
        assert set(capped[plan_id]) == acted(other), plan_id
        assert max(capped[plan_id].values(), default=1) == 1


def test_a_now_plan_created_two_hours_ago_is_missed_and_sends_nothing(shared):
    worker, receiver, kafka = shared.worker, shared.receiver, shared.kafka
    members(kafka, 100, shop="s-late", tag="late")
    wait_loaded(worker)
    created = int(time.time() * 1000) - 2 * 3_600_000
    assert _put_plan(worker, "p-late", shop_id="s-late",
                     created_ms=created)["created_ms"] == created
    occurrence = _occurrence(worker, "p-late", lambda o: o["state"] == "missed")
    assert occurrence["fire_ms"] == created
    # every fire time up to the lateness limit as the worker saw it: one, the plan's
    assert created + 3_600_000 - 1 <= occurrence["missed_until_ms"] < created + 3_660_000
    assert (occurrence["selected"], occurrence["actions"]) == (0, 0)
    assert _records(kafka, "p-late", timeout=1.0) == []
    actions = kafka.read("plan_actions", timeout=1.0)
    assert [a for a in actions if a["value"]["plan_id"] == "p-late"] == []
    assert _arrivals(receiver, "p-late") == []


def test_quiet_hours_defer_the_actions_until_they_end(shared):
    worker, receiver, kafka = shared.worker, shared.receiver, shared.kafka
    expected, end_ms = shared.quiet.expected, shared.quiet.end_ms  # put with the worker
    # The wait after the quiet hours is generous: under the full suite's load a CI run once
    # took over 20 s to deliver them all. The test is about when and how often, not speed.
    assert receiver.wait_for(lambda r: len(_arrivals(r, "p-quiet")) >= len(expected),
                             end_ms / 1000 - time.time() + 60), (
        f"{len(_arrivals(receiver, 'p-quiet'))} of {len(expected)} actions arrived "
        f"{time.time() - end_ms / 1000:.1f} s after the quiet hours ended", worker.tail())
    records = _records(kafka, "p-quiet", timeout=20, settle=1.0,
                       until=lambda rs: len(_kinds(rs, "granted")) >= len(expected))
    deferred = _kinds(records, "deferred")
    assert set(deferred) == expected and max(deferred.values()) == 1
    assert all(r["ts_ms"] < end_ms for r in records if r["kind"] == "deferred")
    assert set(_kinds(records, "granted")) == expected
    # Decided again, and sent, only once the quiet hours ended.
    counts = _buyers(receiver, "p-quiet")
    assert set(counts) == expected and max(counts.values()) == 1
    assert all(action["ts_ms"] >= end_ms for _at, action in _arrivals(receiver, "p-quiet"))
    occurrence = _occurrence(worker, "p-quiet", lambda o: o["granted"] == len(expected))
    assert occurrence["selected"] == occurrence["deferred"] == len(expected)
    assert occurrence["actions"] == len(expected)


# -- bad input -----------------------------------------------------------------------------

BAD_PLANS = [
    ({"period": "* * * * * ? 99"}, "period"),
    ({"period": "* 20-30 8-20 * * ? 31 extra"}, "period"),
    ({"audience": {"all": [{"level_gte": 1},
                           {"any": [{"tag": "vip"}, {"spent_gte": 5}]}]}},
     "audience.all[1].any[1].spent_gte"),
    ({"audience": {"not": {"all": []}}}, "audience.not.all"),
    ({"trigger": {"kind": "schedule", "cron": "61 * * * *"}}, "trigger.cron"),
    ({"trigger": {"kind": "schedule", "cron": "0 9 * *"}}, "trigger.cron"),
    ({"quiet_hours": {"from": "25:00", "to": "08:00"}}, "quiet_hours"),
    ({"quiet_hours": {"from": "21:00"}}, "quiet_hours"),
    # Well formed, but they can never fire (SPEC 13); the first once stalled the worker.
    ({"trigger": {"kind": "schedule", "cron": "0 9 * * *"},
      "period": "0-0 0-0 0-0 24-25 4-4 * 2019-2019 2"}, "period"),
    ({"trigger": {"kind": "schedule", "cron": "0 9 30 2 *"}}, "trigger"),
]


def test_bad_plans_are_refused_naming_the_path_and_bad_records_dead_lettered(shared):
    worker, receiver, kafka = shared.worker, shared.receiver, shared.kafka
    for fields, path in BAD_PLANS:
        status, answer = worker.admin("PUT", "/admin/plans/p-bad",
                                      plan_body(shop_id="s-bad", **fields))
        assert status == 400, (fields, answer)
        assert answer["field"] == path and answer["error"].startswith(f"{path}: "), answer
    assert worker.get("/plans/p-bad?format=json")[0] == 404  # nothing was written

    profile = {"shop_id": "s-bad", "buyer_id": "bad-1", "level": 1}
    kafka.produce("members", [
        ("s-bad/bad-1", b"{not json"),
        ("s-bad-bad-1", profile),                                   # key without a slash
        ("s-bad/bad-2", profile),                                   # key names another buyer
        ("s-bad/bad-1", {**profile, "birthday": "13-45"}),
        ("s-bad/bad-1", {**profile, "tz": "Mars/Olympus_Mons"}),
    ])
    good = plan_body(shop_id="s-bad", created_ms=int(time.time() * 1000))
    kafka.produce("plans", [
        ("p-raw-1", b"[1, 2"),
        ("p-raw-2", {**good, "plan_id": "p-raw-2", "trigger": {"kind": "schedule",
                                                               "cron": "0 25 * * *"}}),
        ("p-raw-3", {**good, "plan_id": "p-other"}),
        ("p-raw-4", {**good, "plan_id": "p-raw-4", "audience": {"any": [{"level": 1}]}}),
    ])
    wanted = {("members", "s-bad/bad-1"): 3, ("members", "s-bad-bad-1"): 1,
              ("members", "s-bad/bad-2"): 1, ("plans", "p-raw-1"): 1, ("plans", "p-raw-2"): 1,
              ("plans", "p-raw-3"): 1, ("plans", "p-raw-4"): 1}

    def ours(records: list[dict]) -> list[dict]:
        return [r["value"] for r in records if r["value"] is not None
                and (r["value"]["topic"].removeprefix(kafka.prefix), r["value"]["key"])
                in wanted]

    letters = ours(kafka.read("deadletter", timeout=30, settle=1.0,
                              until=lambda rs: len(ours(rs)) >= sum(wanted.values())))
    found = Counter((r["topic"].removeprefix(kafka.prefix), r["key"]) for r in letters)
    assert found == wanted
    reasons = {(r["key"], r["error"].split(":")[0]) for r in letters}
    assert {("s-bad-bad-1", "key"), ("s-bad/bad-2", "key"), ("s-bad/bad-1", "birthday"),
            ("s-bad/bad-1", "tz"), ("p-raw-2", "trigger.cron"), ("p-raw-3", "plan_id"),
            ("p-raw-4", "audience.any[0].level")} <= reasons, reasons
    assert all(r["error"] for r in letters)

    # The worker goes on: a valid plan afterwards acts on its buyers.
    expected = _level_gte_1(members(kafka, 30, shop="s-bad", tag="ok"))
    wait_loaded(worker)
    assert worker.get("/ready")[0] == 200
    _put_plan(worker, "p-after-bad", shop_id="s-bad")
    assert receiver.wait_for(lambda r: len(_arrivals(r, "p-after-bad")) >= len(expected), 30)
    assert set(_buyers(receiver, "p-after-bad")) == expected


# -- event triggers ------------------------------------------------------------------------

def test_an_order_left_unpaid_gets_one_reminder_and_one_paid_in_time_none(shared, events):
    worker, receiver, kafka = shared.worker, shared.receiver, shared.kafka
    _put_plan(worker, "p-unpaid", shop_id="s-event", audience={"created_unpaid_for_ms": 3000},
              trigger={"kind": "event", "on": "created_unpaid", "delay_ms": 3000})
    deadline = time.monotonic() + 10
    while worker.get("/plans/p-unpaid?format=json")[0] != 200:  # the catalog has it
        assert time.monotonic() < deadline
        time.sleep(0.2)
    created = int(time.time() * 1000)
    kafka.produce("orders", [
        (order, events.order(order, buyer, created, shop="s-event"))
        for order, buyer in (("ev-o1", "ev-b1"), ("ev-o2", "ev-b2"))])
    time.sleep(1.0)
    kafka.produce("orders", [("ev-o2", events.order("ev-o2", "ev-b2", created + 1000,
                                                    event="paid", shop="s-event"))])
    assert receiver.wait_for(lambda r: _arrivals(r, "p-unpaid"), 20), worker.tail()
    time.sleep(3.0)  # the paid order's timer is due too by now
    [(_at, action)] = _arrivals(receiver, "p-unpaid")
    assert action["buyer_id"] == "ev-b1"
    assert action["occurrence_id"] == "p-unpaid@ev-o1:created"
    assert created + 3000 <= action["ts_ms"] <= created + 6000


# -- audience lists replaced and emptied; a re-PUT keeps the plan's state ----------------

def test_a_list_put_replaces_it_delete_empties_it_and_a_re_put_keeps_a_pause(shared):
    worker, receiver = shared.worker, shared.receiver

    def on_lists(plan_id: str, *list_ids: str) -> set[str]:
        """Whom a `now` plan on these lists selects and acts on, once the lists are read."""
        wait_loaded(worker, ("lists",))
        _put_plan(worker, plan_id, shop_id="s-lists",
                  audience={"any": [{"list": list_id} for list_id in list_ids]})
        selected = _occurrence(worker, plan_id, lambda o: o["state"] == "done")["selected"]
        assert receiver.wait_for(lambda r: len(_arrivals(r, plan_id)) >= selected, 30)
        acted = _buyers(receiver, plan_id)
        assert len(acted) == selected and all(n == 1 for n in acted.values()), acted
        return set(acted)

    for list_id, buyers, counts in (("clubs", ["la", "le"], (2, 0)),
                                    ("club", ["la", "lb", "lc"], (3, 0)),
                                    ("club", ["lb", "ld", "lb"], (2, 2))):
        status, answer = worker.admin("PUT", f"/admin/lists/{list_id}", buyers)
        assert status == 200 and (answer["buyers"], answer["removed"]) == counts, answer
    assert on_lists("p-club", "club") == {"lb", "ld"}
    status, answer = worker.admin("DELETE", "/admin/lists/club")
    assert status == 200 and (answer["buyers"], answer["removed"]) == (0, 2), answer
    assert on_lists("p-club-gone", "club", "clubs") == {"la", "le"}  # clubs kept its own
    assert worker.admin("POST", "/admin/plans/p-club/pause")[0] == 200
    again = {"shop_id": "s-lists", "audience": {"list": "club"}, "rate_per_s": 5}
    assert _put_plan(worker, "p-club", **again)["state"] == "paused"
    assert _put_plan(worker, "p-club", **again, state="active")["state"] == "active"


# -- stop and the kill switch (last: it pauses every plan of the shared worker) -------

def test_stop_drops_the_queued_actions_and_pause_all_pauses_every_plan(shared):
    worker, receiver, kafka = shared.worker, shared.receiver, shared.kafka
    expected = _level_gte_1(members(kafka, 500, shop="s-stop", tag="stop"))
    wait_loaded(worker)
    # The plan emits all its actions at once; the receiver takes 0.2 s each, 64 at a time,
    # so most wait in the sink's queue when the plan is stopped.
    receiver.respond = lambda n, event: (200, {}, 0.2 if event.get("stream") == "plan_actions"
                                         and event["event"]["plan_id"] == "p-stop" else 0.0)
    try:
        _put_plan(worker, "p-stop", shop_id="s-stop")
        assert receiver.wait_for(lambda r: len(_arrivals(r, "p-stop")) >= 50, 30)
        assert worker.admin("POST", "/admin/plans/p-stop/stop")[0] == 200
        stopped_at = time.monotonic()
        time.sleep(3.0)
    finally:
        receiver.respond = lambda n, event: (200, {}, 0.0)
    arrived = _arrivals(receiver, "p-stop")
    assert [at for at, _action in arrived if at > stopped_at + 1.0] == []
    assert len(arrived) < len(expected)
    assert sink_stats(worker)["rights"]["dropped"] > 0
    # The kill switch: every active plan paused at once (the other tests' plans too, all
    # done by now: this test comes last).
    for plan_id in ("p-all-1", "p-all-2"):
        _put_plan(worker, plan_id, shop_id="s-stop", rate_per_s=20, burst=5,
                  created_ms=int(time.time() * 1000))  # a `now` plan of its own
    assert receiver.wait_for(lambda r: all(_arrivals(r, p) for p in ("p-all-1", "p-all-2")),
                             30)
    status, answer = worker.admin("POST", "/admin/plans/pause-all")
    paused_at = time.monotonic()
    assert status == 200 and {"p-all-1", "p-all-2"} <= set(answer["paused"]), answer
    time.sleep(2.0)
    for plan_id in ("p-all-1", "p-all-2"):
        assert [at for at, _a in _arrivals(receiver, plan_id) if at > paused_at + 1.0] == []
        assert worker.admin("POST", f"/admin/plans/{plan_id}/stop")[0] == 200
