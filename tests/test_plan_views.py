"""What /plans makes of progress rows: occurrences per state, missed runs, failures."""

from __future__ import annotations

from app.domain.execution import Progress
from app.domain.plans import parse_plan
from app.web.plans import plan_summary

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
    from app.records.operations import OperationRecord
    from app.web.plans import newest_first

    records = [OperationRecord(f"r{n}", "p1", "p1@1", "b1", "s1", None, "sent", None,
                               T0 + n // 3) for n in range(25)]  # three share each time
    pages, cursor = [], None
    while True:
        rows, cursor = newest_first(records, 4, cursor)
        pages.append(rows)
        if cursor is None:
            break
    seen = [row["record_id"] for rows in pages for row in rows]
    assert seen == [r.record_id for r in sorted(records, key=lambda r: (r.ts_ms, r.record_id),
                                                reverse=True)]
    assert [len(rows) for rows in pages] == [4] * 6 + [1]
    assert newest_first(records, 4, "not-a-cursor") == ([], None)
