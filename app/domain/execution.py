"""What one occurrence of a plan does for one buyer (SPEC 13, execution steps 1-3).

`decide` is the whole decision, a pure function of the plan, the buyer as
the engine knows them, the buyer's recent actions at the shop and the
clock: not selected (None), `missed` (the buyer's turn came too late to
start: an event trigger or a deferral run more than the lateness limit
after it was due), `held_out`, `capped`, `deferred` (quiet hours, until
they end) or `send` with the buyer's variant. Executed twice, it decides
the same, which is what makes a replay after a crash harmless.

Lateness decides whether an occurrence starts, never whether a buyer of a
started one is decided: however long an occurrence's pages take (its rate,
a pause), each selected buyer gets its decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from app.domain.audience import Buyer, selects
from app.domain.operations import HOLDOUT, capped, quiet_until, variant_of
from app.domain.periods import time_zone
from app.domain.plans import Plan

SEND, HELD_OUT, CAPPED, DEFERRED, MISSED = "send", "held_out", "capped", "deferred", "missed"
OUTCOMES = (SEND, HELD_OUT, CAPPED, DEFERRED, MISSED)


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: str
    variant: str | None = None
    until_ms: int | None = None   # deferred: when the buyer's quiet hours end


def decide(plan: Plan, buyer_id: str, buyer: Buyer, *, now_ms: int, sent_ms: Sequence[int],
           default_tz: str, too_late: bool = False) -> Decision | None:
    """The buyer's outcome now; None when not selected. `too_late`: the buyer's turn
    started after the lateness limit (recorded `missed`, never sent)."""
    zone = plan.zone(default_tz)
    if not selects(plan.audience, buyer, now_ms, zone):
        return None
    excluded = plan.assignment.exclude if plan.assignment is not None else None
    if excluded is not None and selects(excluded, buyer, now_ms, zone):
        return None  # recall: the audience minus `exclude` (SPEC 14)
    variant = variant_of(plan.plan_id, buyer_id, plan.holdout_bp, plan.split)
    if too_late:
        return Decision(MISSED, variant)
    if variant == HOLDOUT:
        return Decision(HELD_OUT, variant)
    if capped(sent_ms, now_ms, plan.frequency_cap):
        return Decision(CAPPED, variant)
    until = quiet_until(now_ms, plan.quiet_hours, time_zone(buyer.member.tz or zone))
    if until is not None:
        return Decision(DEFERRED, variant, until)
    return Decision(SEND, variant)


# An occurrence's task in a partition: paging, finished, or ended by `stop`; or never
# started (its fire times came too late: one row for the run of them), or the plan's
# evaluation failed in the partition (one row per plan, `reason` says why).
RUNNING, DONE, STOPPED, MISSED_FIRES, FAILED = "running", "done", "stopped", "missed", "failed"
COUNTS = ("selected", "actions", "sent", "granted", "failed", "held_out", "capped",
          "deferred", "missed")
# What each outcome adds to; `send` queues an action, the sink's record says sent or failed.
COUNTED_AS = {SEND: "actions", HELD_OUT: "held_out", CAPPED: "capped", DEFERRED: "deferred",
              MISSED: "missed"}


@dataclass(slots=True)
class Progress:
    """An occurrence's progress in one partition: how far its task paged (the last buyer
    decided, in buyer id order) and what it decided, per shard."""

    plan_id: str
    occurrence_id: str
    fire_ms: int
    started_ms: int
    state: str = RUNNING
    cursor: str | None = None
    finished_ms: int | None = None
    shards: dict[int, dict[str, int | str]] = field(default_factory=dict)
    variants: dict[str, dict[str, int]] = field(default_factory=dict)  # "" for none
    until_ms: int | None = None   # missed: every fire time from fire_ms to this one
    reason: str | None = None     # failed: why

    def count(self, shard: int, name: str, buyer_id: str | None = None, *,
              variant: str | None = None) -> None:
        counts = self.shards.get(shard)
        if counts is None:
            counts = self.shards[shard] = dict.fromkeys(COUNTS, 0)
        counts[name] = int(counts.get(name, 0)) + 1
        if buyer_id is not None:
            counts["last"] = buyer_id
        if name != "selected":
            by_variant = self.variants.setdefault(variant or "", {})
            by_variant[name] = by_variant.get(name, 0) + 1

    def measure(self, variant: str | None, kind: str, amount: int = 0) -> None:
        """An outcome of one of the occurrence's actions or holdout decisions (used,
        replenished, converted, and what the order paid), counted per variant."""
        by_variant = self.variants.setdefault(variant or "", {})
        by_variant[kind] = by_variant.get(kind, 0) + 1
        if amount:
            by_variant[f"{kind}_amount"] = by_variant.get(f"{kind}_amount", 0) + amount

    def totals(self) -> dict[str, int]:
        return {name: sum(int(counts.get(name, 0)) for counts in self.shards.values())
                for name in COUNTS}

    def encode(self) -> dict:
        return {"plan_id": self.plan_id, "occurrence_id": self.occurrence_id,
                "fire_ms": self.fire_ms, "started_ms": self.started_ms, "state": self.state,
                "cursor": self.cursor, "finished_ms": self.finished_ms,
                "shards": {str(shard): counts for shard, counts in self.shards.items()},
                "variants": self.variants, "until_ms": self.until_ms, "reason": self.reason}

    @classmethod
    def decode(cls, obj: dict) -> Progress:
        return cls(obj["plan_id"], obj["occurrence_id"], obj["fire_ms"], obj["started_ms"],
                   obj["state"], obj["cursor"], obj["finished_ms"],
                   {int(shard): dict(counts) for shard, counts in obj["shards"].items()},
                   {name: dict(counts) for name, counts in obj.get("variants", {}).items()},
                   obj.get("until_ms"), obj.get("reason"))

    def copy(self) -> Progress:
        return Progress(self.plan_id, self.occurrence_id, self.fire_ms, self.started_ms,
                        self.state, self.cursor, self.finished_ms,
                        {shard: dict(counts) for shard, counts in self.shards.items()},
                        {name: dict(counts) for name, counts in self.variants.items()},
                        self.until_ms, self.reason)
