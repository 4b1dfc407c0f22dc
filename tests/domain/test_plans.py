"""An `assign` plan's payload (SPEC 14): `requires`, `priority` and `exclude` checked when
the plan is, a refusal naming the path, and the lists `exclude` names among the plan's."""

from __future__ import annotations

import pytest

from app.domain.audience import Rule
from app.domain.plans import Assignment, PlanError, parse_plan

BODY = {"plan_id": "p1", "shop_id": "s1", "audience": {"list": "spring"},
        "trigger": {"kind": "now"}, "created_ms": 1}


def assign(payload: object = None, **fields) -> dict:
    action = {"kind": "assign", "sink": "crm"}
    if payload is not None:
        action["payload"] = payload
    return {**BODY, "action": action, **fields}


def test_the_payload_becomes_the_plans_assignment():
    plan = parse_plan(assign({"requires": ["vip", "refunds", "vip"], "priority": 5,
                              "exclude": {"any": [{"tag": "blocked"},
                                                  {"list": "do-not-call"}]},
                              "note": "extra fields are ignored"}))

    assert plan.assignment == Assignment(
        requires=frozenset({"vip", "refunds"}), priority=5,
        exclude=Rule("any", parts=(Rule("tag", "blocked"), Rule("list", "do-not-call"))))
    # A buyer excluded by list is looked up on it like a buyer of the audience's lists.
    assert plan.lists == frozenset({"spring", "do-not-call"})


@pytest.mark.parametrize("payload", [None, {}, {"requires": None, "priority": None,
                                                "exclude": None}])
def test_each_part_of_the_payload_has_a_default(payload):
    plan = parse_plan(assign(payload))
    assert plan.assignment == Assignment(requires=frozenset(), priority=0, exclude=None)
    assert plan.lists == frozenset({"spring"})


def test_a_priority_may_be_below_zero():
    assert parse_plan(assign({"priority": -3})).assignment.priority == -3


@pytest.mark.parametrize("kind", ["grant", "notify"])
def test_other_kinds_have_no_assignment_and_a_free_payload(kind):
    plan = parse_plan({**BODY, "action": {"kind": kind, "sink": "hook",
                                          "payload": {"requires": "anything", "priority": "x",
                                                      "exclude": {"list": "x"}}}})
    assert plan.assignment is None
    assert plan.lists == frozenset({"spring"})


@pytest.mark.parametrize(("payload", "path"), [
    ("vip", "action.payload"),
    ({"requires": "vip"}, "action.payload.requires"),
    ({"requires": {"vip": True}}, "action.payload.requires"),
    ({"requires": [f"q{n}" for n in range(101)]}, "action.payload.requires"),
    ({"requires": ["vip", ""]}, "action.payload.requires[1]"),
    ({"requires": [7]}, "action.payload.requires[0]"),
    ({"requires": ["vip", "x" * 129]}, "action.payload.requires[1]"),
    ({"priority": "high"}, "action.payload.priority"),
    ({"priority": 1.5}, "action.payload.priority"),
    ({"priority": True}, "action.payload.priority"),
    ({"priority": 2**53}, "action.payload.priority"),
    ({"exclude": "blocked"}, "action.payload.exclude"),
    ({"exclude": []}, "action.payload.exclude"),
    ({"exclude": {"tag": ""}}, "action.payload.exclude.tag"),
    ({"exclude": {"all": [{"tag": "a"}, ["x"]]}}, "action.payload.exclude.all[1]"),
    ({"exclude": {"not": {"colour": "red"}}}, "action.payload.exclude.not.colour"),
    ({"exclude": {"any": [{"list": "ok"}, {"list": 5}]}}, "action.payload.exclude.any[1].list"),
])
def test_a_bad_payload_is_refused_naming_its_path(payload, path):
    with pytest.raises(PlanError) as refused:
        parse_plan(assign(payload))
    assert refused.value.path == path
    assert str(refused.value).startswith(path + ": ")


def test_an_assign_plans_variants_share_its_payload():
    # Recall (exclude) and rank (priority) are decided before the buyer's variant.
    variants = [{"variant": "A", "weight_bp": 1}, {"variant": "B", "weight_bp": 1,
                                                   "sink": "crm-b"}]
    plan = parse_plan(assign({"priority": 2}, variants=variants))
    assert plan.action_for("B").payload == {"priority": 2}
    assert plan.action_for("B").sink == "crm-b"

    with pytest.raises(PlanError) as refused:
        parse_plan(assign({"priority": 2}, variants=[
            variants[0], {**variants[1], "payload": {"priority": 9}}]))
    assert refused.value.path == "variants[1].payload"
