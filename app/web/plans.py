"""`/plans`, `/plans/{plan_id}`: operation plans, their next fire times and windows, and
each occurrence's progress (per partition and shard); `/members/{buyer_id}/records`: a
buyer's operation records. HTML for people, JSON with `?format=json`."""

from __future__ import annotations

import html
import itertools
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from faust.web import Request, Response, View

from app.domain.allocation import NO_LOAD, Load, Operator
from app.domain.execution import COUNTS, FAILED, MISSED_FIRES, RUNNING, STOPPED, Progress
from app.domain.lift import results
from app.domain.operations import HOLDOUT
from app.domain.periods import time_zone, windows
from app.domain.plans import ASSIGN, Plan, fire_times
from app.web.orders import answer_where_owned, newest_first_page
from app.web.pages import page, table

if TYPE_CHECKING:
    import faust

    from app.config.settings import Settings
    from app.services.catalog import Catalog
    from app.services.plan_progress import OperatorLoads, PlanProgress
    from tables.operations import OperationTables

AHEAD = 3  # next fire times and windows shown
# A buyer's records read for one page of /members/{buyer_id}/records (newest first); a
# buyer with more shows the newest of these.
MAX_MEMBER_RECORDS = 10_000
PLAN_ACTION = "(plan's action)"  # how a plan without variants names its buyers' variant


def variant_counts(rows: Iterable[Progress]) -> dict[str, dict[str, int]]:
    """Each variant's counts summed over progress rows ("" for the plan's own action)."""
    summed: dict[str, dict[str, int]] = {}
    for row in rows:
        for name, counts in row.variants.items():
            into = summed.setdefault(name, {})
            for count_name, count in counts.items():
                into[count_name] = into.get(count_name, 0) + count
    return summed


def occurrence_summary(occurrence: str, rows: Mapping[int, Progress],
                       partitions: int) -> dict[str, Any]:
    """One occurrence over the partitions that started it: state and totals."""
    states = {row.state for row in rows.values()}
    state = (MISSED_FIRES if states == {MISSED_FIRES}
             else RUNNING if RUNNING in states or len(rows) < partitions
             else STOPPED if STOPPED in states else "done")
    first = next(iter(rows.values()))
    totals = dict.fromkeys(COUNTS, 0)
    for row in rows.values():
        for name, count in row.totals().items():
            totals[name] += count
    variants = {name or PLAN_ACTION: counts
                for name, counts in variant_counts(rows.values()).items()}
    finished = [row.finished_ms for row in rows.values() if row.finished_ms is not None]
    missed_until = [row.until_ms for row in rows.values() if row.until_ms is not None]
    return {"occurrence_id": occurrence, "fire_ms": first.fire_ms, "state": state,
            "partitions_started": len(rows), "finished_ms": max(finished) if (
                state != RUNNING and finished) else None,
            # missed: every fire time from fire_ms up to this one was too late to start
            "missed_until_ms": max(missed_until) if missed_until else None,
            **totals, "variants": variants}


def plan_results(plan: Plan, rows: Iterable[Progress]) -> list[dict[str, Any]]:
    """One row per variant (the plan's own, in listed order, then any an earlier version
    had) and for the holdout, summed over `rows`: buyers, conversions, paid amount and
    the lift against the holdout (app.domain.lift)."""
    counts = variant_counts(rows)
    listed = [variant.name for variant in plan.variants] or [""]
    earlier = sorted(set(counts) - set(listed) - {HOLDOUT})
    holdout = [HOLDOUT] if plan.holdout_bp or HOLDOUT in counts else []
    ordered = {name: counts.get(name, {}) for name in (*listed, *earlier, *holdout)}
    return [{**asdict(result), "variant": result.variant or PLAN_ACTION}
            for result in results(ordered)]


def operator_counts(operators: Iterable[Operator], loads: Mapping[str, Load], day: str
                    ) -> list[dict[str, Any]]:
    """An `assign` plan's shop's operators: assignments today (the plan's zone) and in total,
    beside their caps."""
    return [{"operator_id": op.operator_id, "active": op.active,
             "today": loads.get(op.operator_id, NO_LOAD).on(day), "daily_cap": op.daily_cap,
             "total": loads.get(op.operator_id, NO_LOAD).total, "total_cap": op.total_cap,
             "qualifications": sorted(op.qualifications)} for op in operators]


def plan_summary(plan: Plan, occurrences: Mapping[str, Mapping[int, Progress]], *,
                 default_tz: str, partitions: int, now_ms: int,
                 operators: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    zone = plan.zone(default_tz)
    failures = {row.reason for rows in occurrences.values() for row in rows.values()
                if row.state == FAILED}
    shown = {occurrence: rows for occurrence, rows in occurrences.items()
             if not any(row.state == FAILED for row in rows.values())}
    return {
        "plan_id": plan.plan_id, "name": plan.name, "shop_id": plan.shop_id,
        "state": FAILED if failures else plan.state,
        "failed": sorted(reason or "" for reason in failures) or None,
        "trigger": plan.trigger.kind, "tz": zone,
        "rate_per_s": plan.rate_per_s, "action": plan.action.kind, "sink": plan.action.sink,
        "next_fire_ms": list(itertools.islice(fire_times(plan, now_ms, default_tz), AHEAD)),
        "next_windows": [] if plan.period is None else [
            {"start_ms": start, "end_ms": end}
            for start, end in itertools.islice(windows(plan.period, zone, now_ms), AHEAD)],
        "occurrences": [occurrence_summary(occurrence, rows, partitions)
                        for occurrence, rows in shown.items()],
        "results": plan_results(plan, (row for rows in shown.values() for row in rows.values())),
        "operators": operators,
    }


def plan_detail(plan: Plan, occurrences: Mapping[str, Mapping[int, Progress]], *,
                default_tz: str, partitions: int, now_ms: int,
                operators: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    summary = plan_summary(plan, occurrences, default_tz=default_tz, partitions=partitions,
                           now_ms=now_ms, operators=operators)
    for entry in summary["occurrences"]:
        rows = occurrences[entry["occurrence_id"]]
        entry["partitions"] = {
            str(partition): {"state": row.state, "cursor": row.cursor,
                             "shards": {str(s): counts for s, counts in sorted(row.shards.items())}}
            for partition, row in sorted(rows.items())}
    return {**summary, "plan": plan.source}


def result_cells(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A results row for people: rates in %, the lift and its interval in points."""
    rate, lift = entry["conversion_rate"], entry["lift"]
    return {"variant": entry["variant"], "buyers": entry["buyers"], "actions": entry["actions"],
            "conversions": entry["conversions"],
            "conversion rate": None if rate is None else f"{rate:.2%}",
            "paid amount": entry["paid_amount"], "used": entry["used"],
            "replenished": entry["replenished"],
            "lift (points)": None if lift is None else f"{lift['difference'] * 100:+.2f}",
            "95 % interval": None if lift is None else (
                f"{lift['low'] * 100:+.2f} to {lift['high'] * 100:+.2f}"),
            "relative lift": None if lift is None or lift["relative"] is None
            else f"{lift['relative']:+.1%}"}


def register(*, app: faust.App, settings: Settings, catalog: Catalog,
             plan_progress: PlanProgress, operator_loads: OperatorLoads,
             operation_tables: OperationTables) -> None:
    """/plans, /plans/{plan_id}, /members/{buyer_id}/records."""
    default_tz, partitions = settings.plan_tz, settings.partitions
    records = operation_tables.member_records

    def operators_of(plan: Plan, now_ms: int) -> list[dict[str, Any]] | None:
        if plan.action.kind != ASSIGN:
            return None
        day = datetime.fromtimestamp(now_ms / 1000, time_zone(plan.zone(default_tz)))
        return operator_counts(catalog.operators_of(plan.shop_id),
                               operator_loads.of_shop(plan.shop_id),
                               day.date().isoformat())

    @app.page("/plans")
    class Plans(View):
        async def get(self, request: Request) -> Response:
            now_ms = int(time.time() * 1000)
            plans = [plan_summary(plan, plan_progress.of_plan(plan.plan_id), default_tz=default_tz,
                                  partitions=partitions, now_ms=now_ms,
                                  operators=operators_of(plan, now_ms))
                     for plan in sorted(catalog.plans.values(), key=lambda p: p.plan_id)]
            if request.query.get("format") == "json":
                return self.json({"ts_ms": now_ms, "plans": plans})
            rows = [{"plan": f"{p['plan_id']}", "name": p["name"], "state": p["state"],
                     "trigger": p["trigger"], "rate_per_s": p["rate_per_s"],
                     "next fire": p["next_fire_ms"][0] if p["next_fire_ms"] else None,
                     "occurrences": len(p["occurrences"]),
                     **({name: sum(o[name] for o in p["occurrences"])
                         for name in ("selected", "actions", "sent", "granted", "failed")})}
                    for p in plans]
            links = "".join(f'<li><a href="/plans/{html.escape(p["plan_id"])}">'
                            f'{html.escape(p["plan_id"])}</a></li>' for p in plans)
            return self.html(page("Operation plans", table(rows) + f"<ul>{links}</ul>",
                                  refresh_s=5))

    @app.page("/plans/{plan_id}")
    class OnePlan(View):
        async def get(self, request: Request, plan_id: str) -> Response:
            plan = catalog.plans.get(plan_id)
            if plan is None:
                return self.json({"error": f"no plan {plan_id!r}"}, status=404)
            now_ms = int(time.time() * 1000)
            detail = plan_detail(plan, plan_progress.of_plan(plan_id), default_tz=default_tz,
                                 partitions=partitions, now_ms=now_ms,
                                 operators=operators_of(plan, now_ms))
            if request.query.get("format") == "json":
                return self.json(detail)
            shards = [{"occurrence": o["occurrence_id"], "partition": partition,
                       "shard": shard, **counts}
                      for o in detail["occurrences"]
                      for partition, row in o["partitions"].items()
                      for shard, counts in row["shards"].items()]
            occurrences = [{k: v for k, v in o.items() if k not in ("partitions", "variants")}
                           for o in detail["occurrences"]]
            variants = [{"occurrence": o["occurrence_id"], "variant": name, **counts}
                        for o in detail["occurrences"] for name, counts in o["variants"].items()]
            windows_ = [{"start_ms": w["start_ms"], "end_ms": w["end_ms"]}
                        for w in detail["next_windows"]]
            failed = "".join(f"<p><b>failed</b>: {html.escape(reason)}</p>"
                             for reason in detail["failed"] or ())
            body = (f"{failed}<p>state <b>{html.escape(detail['state'])}</b>, trigger "
                    f"{html.escape(plan.trigger.kind)}, {plan.rate_per_s:g} actions/s, "
                    f"next fire times {detail['next_fire_ms']}</p>"
                    f"<h2>Next windows</h2>{table(windows_)}"
                    "<h2>Results</h2>"
                    f"{table([result_cells(entry) for entry in detail['results']])}"
                    + (f"<h2>Operators</h2>{table(detail['operators'])}"
                       if detail["operators"] is not None else "")
                    + f"<h2>Occurrences</h2>{table(occurrences)}"
                    f"<h2>Per variant</h2>{table(variants)}"
                    f"<h2>Per partition and shard</h2>{table(shards)}")
            return self.html(page(f"Plan {plan_id}", body, refresh_s=5))

    @app.page("/members/{buyer_id}/records")
    class MemberRecords(View):
        async def get(self, request: Request, buyer_id: str) -> Response:
            """A buyer's operation records, newest first, `limit` a page; `cursor` (from
            the previous page's `next_cursor`) goes on with older ones."""
            async def answer(partition: int) -> Response:
                found = records.scan_prefix(partition, buyer_id.encode() + b"\x1f",
                                            limit=MAX_MEMBER_RECORDS)
                return newest_first_page(
                    self, request, [asdict(record) for _key, record in found],
                    id_field="record_id", owner=("buyer_id", buyer_id), listed="records",
                    title=f"Operation records of {buyer_id}")
            return await answer_where_owned(self, request, records, buyer_id, answer,
                                            partitions)
