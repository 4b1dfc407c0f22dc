"""What /plans makes of progress rows: occurrences per state, missed runs, failures, and
per-variant results with the lift against the holdout."""

from __future__ import annotations

import pytest

from app.domain.execution import Progress
from app.domain.plans import parse_plan
from app.web.plans import plan_summary, result_cells

T0 = 1_767_225_600_000
PLAN = parse_plan({"plan_id": "p1", "shop_id": "s1", "audience": {"level_gte": 1},
                   "trigger": {"kind": "schedule", "cron": "0 * * * *"},
                   "action": {"kind": "notify", "sink": "hook"}})


def summary(rows: dict[str, dict[int, Progress]]) -> dict:
    return plan_summary(PLAN, rows, default_tz="UTC", partitions=2, now_ms=T0)


def test_a_run_of_missed_fire_times_shows_as_one_missed_occurrence_with_its_range():
    missed = {partition: Progress("p1", f"p1@{T0}", T0, T0 + 99, state="missed",
                                  until_ms=T0 + 3_600_000 * partition)
              for partition in (0, 1)}
    (occurrence,) = summary({f"p1@{T0}": missed})["occurrences"]
    assert (occurrence["state"], occurrence["missed_until_ms"]) == ("missed", T0 + 3_600_000)
    assert occurrence["selected"] == 0


def test_a_failure_in_any_partition_marks_the_plan_failed_with_its_reason():
    failed = Progress("p1", "p1@failed", T0, T0, state="failed", reason="RuntimeError: x")
    running = Progress("p1", f"p1@{T0}", T0, T0)
    found = summary({"p1@failed": {1: failed}, f"p1@{T0}": {0: running}})
    assert (found["state"], found["failed"]) == ("failed", ["RuntimeError: x"])
    assert [o["occurrence_id"] for o in found["occurrences"]] == [f"p1@{T0}"]
    assert summary({f"p1@{T0}": {0: running}})["failed"] is None


def test_a_buyers_records_page_newest_first_and_every_record_once():
    from app.web.pages import newest_first

    records = [{"record_id": f"r{n}", "ts_ms": T0 + n // 3}
               for n in range(25)]  # three share each time
    pages, cursor = [], None
    while True:
        rows, cursor = newest_first(records, "record_id", 4, cursor)
        pages.append(rows)
        if cursor is None:
            break
    seen = [row["record_id"] for rows in pages for row in rows]
    assert seen == [r["record_id"] for r in sorted(
        records, key=lambda r: (r["ts_ms"], r["record_id"]), reverse=True)]
    assert [len(rows) for rows in pages] == [4] * 6 + [1]
    assert newest_first(records, "record_id", 4, "not-a-cursor") == ([], None)


AB_PLAN = parse_plan({"plan_id": "p2", "shop_id": "s1", "audience": {"level_gte": 1},
                      "trigger": {"kind": "schedule", "cron": "0 * * * *"},
                      "action": {"kind": "grant", "sink": "hook"}, "holdout_bp": 2000,
                      "variants": [{"variant": "B", "weight_bp": 5000},
                                   {"variant": "A", "weight_bp": 5000}]})


def progress(occurrence: str, variants: dict[str, dict[str, int]], state: str = "done",
             ) -> Progress:
    return Progress("p2", occurrence, T0, T0, state=state, variants=variants)


def test_results_sum_every_occurrence_and_partition_per_variant_and_the_holdout():
    occurrences = {
        "p2@1": {0: progress("p2@1", {
                     "A": {"actions": 30, "converted": 20, "converted_amount": 5_000,
                           "used": 7, "replenished": 1, "sent": 30},
                     "holdout": {"held_out": 40, "converted": 10, "converted_amount": 700}}),
                 1: progress("p2@1", {
                     "A": {"actions": 15, "converted": 12, "converted_amount": 2_000,
                           "used": 3},
                     "holdout": {"held_out": 15, "converted": 20}})},
        "p2@2": {1: progress("p2@2", {
                     "A": {"actions": 25, "converted": 24, "converted_amount": 500},
                     "B": {"actions": 10, "converted": 9, "converted_amount": 90},
                     "C": {"actions": 4, "converted": 1},   # a variant of an earlier version
                     "holdout": {"held_out": 25, "converted": 18}})},
        # a failed evaluation is shown as the plan's failure, not counted
        "p2@failed": {0: progress("p2@failed", {"A": {"actions": 99, "converted": 99}},
                                  state="failed")},
    }
    found = plan_summary(AB_PLAN, occurrences, default_tz="UTC", partitions=2, now_ms=T0)
    rows = {row["variant"]: row for row in found["results"]}
    assert list(rows) == ["B", "A", "C", "holdout"]  # listed order, earlier ones, holdout
    a, b, holdout = rows["A"], rows["B"], rows["holdout"]
    # A: 30 + 15 + 25 = 70 exposed, 20 + 12 + 24 = 56 converted; holdout 40 + 15 + 25 = 80
    # held out, 10 + 20 + 18 = 48 converted: Newcombe (1998) Table II's 56/70 vs 48/80.
    assert ({k: a[k] for k in ("buyers", "actions", "conversions", "paid_amount", "used",
                              "replenished")}
            == {"buyers": 70, "actions": 70, "conversions": 56, "paid_amount": 7_500,
                "used": 10, "replenished": 1})
    assert a["conversion_rate"] == pytest.approx(56 / 70)
    assert a["lift"]["difference"] == pytest.approx(56 / 70 - 48 / 80)
    assert (round(a["lift"]["low"], 4), round(a["lift"]["high"], 4)) == (0.0524, 0.3339)
    assert a["lift"]["relative"] == pytest.approx((56 / 70 - 48 / 80) / (48 / 80))
    assert (b["buyers"], b["conversions"], b["paid_amount"]) == (10, 9, 90)
    assert b["lift"]["difference"] == pytest.approx(0.9 - 0.6)
    assert b["lift"]["low"] < 0.3 < b["lift"]["high"]
    assert (holdout["buyers"], holdout["actions"], holdout["conversions"],
            holdout["paid_amount"], holdout["lift"]) == (80, 0, 48, 700, None)
    assert holdout["conversion_rate"] == pytest.approx(0.6)
    # each occurrence keeps its own per-variant counts, summed over its partitions
    first = next(o for o in found["occurrences"] if o["occurrence_id"] == "p2@1")
    assert first["variants"]["A"]["converted"] == 32
    assert first["variants"]["holdout"] == {"held_out": 55, "converted": 30,
                                            "converted_amount": 700}


def test_a_plan_without_a_holdout_shows_its_conversions_and_no_lift():
    rows = {0: Progress("p1", "p1@1", T0, T0, state="done",
                        variants={"": {"actions": 8, "converted": 2, "converted_amount": 40}})}
    (result,) = summary({"p1@1": rows})["results"]
    assert (result["variant"], result["buyers"], result["conversions"],
            result["conversion_rate"], result["paid_amount"], result["lift"]) == (
        "(plan's action)", 8, 2, 0.25, 40, None)


def test_a_plan_yet_to_run_shows_a_row_per_variant_and_the_holdout_without_rates():
    found = plan_summary(AB_PLAN, {}, default_tz="UTC", partitions=2, now_ms=T0)["results"]
    assert [(r["variant"], r["buyers"], r["conversion_rate"], r["lift"]) for r in found] == [
        ("B", 0, None, None), ("A", 0, None, None), ("holdout", 0, None, None)]


def test_a_results_row_for_people_in_percent_and_points():
    entry = {"variant": "A", "buyers": 70, "actions": 70, "conversions": 56,
             "conversion_rate": 0.8, "paid_amount": 7_500, "used": 10, "replenished": 1,
             "lift": {"difference": 0.2, "low": 0.05236, "high": 0.33394, "relative": 1 / 3}}
    cells = result_cells(entry)
    assert (cells["conversion rate"], cells["lift (points)"], cells["95 % interval"],
            cells["relative lift"]) == ("80.00%", "+20.00", "+5.24 to +33.39", "+33.3%")
    no_lift = result_cells({**entry, "conversion_rate": None, "lift": None})
    assert (no_lift["conversion rate"], no_lift["lift (points)"], no_lift["95 % interval"],
            no_lift["relative lift"]) == (None, None, None, None)
