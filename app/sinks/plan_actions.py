"""What a sink asks about a plan action (SPEC 13): whether its plan still wants it sent
now, and, once it is delivered or given up, its operation record.

The plan's state is read from the catalog before every delivery, so a
pause holds the actions already queued (within the catalog's moment to see
it, well under a second), a resume lets them go, and a stopped or deleted
plan's actions are dropped. Records are written after the fact with
deterministic ids: a delivery repeated after a crash writes the same record
again, which its reader keeps once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from app.domain.operations import record_id
from app.domain.plans import PAUSED, STOPPED, Plan
from app.records.operations import record_for_action

STREAM = "plan_actions"
SEND, WAIT, DROP = "send", "wait", "drop"


class Plans(Protocol):
    plans: dict[str, Plan]


class PlanActionGate:
    def __init__(self, catalog: Plans, records_topic: str) -> None:
        self.catalog = catalog
        self.records_topic = records_topic

    def status(self, action: Mapping[str, Any]) -> str:
        plan = self.catalog.plans.get(action.get("plan_id"))  # type: ignore[arg-type]
        if plan is None or plan.state == STOPPED:
            return DROP
        return WAIT if plan.state == PAUSED else SEND

    def record(self, action: Mapping[str, Any], *, error: str | None = None
               ) -> tuple[bytes, bytes]:
        """(key, value) of the action's record: delivered (`granted` for a grant, else
        `sent`) or, with `error`, `failed`."""
        kind = "failed" if error is not None else (
            "granted" if action["kind"] == "grant" else "sent")
        record = record_for_action(
            action, kind, record_id(action["occurrence_id"], action["buyer_id"], kind),
            int(time.time() * 1000), None if error is None else error[:200])
        return action["buyer_id"].encode(), record.encode()
