"""Executing an operation plan for one buyer (SPEC 13, seeds 001 and 003): the buyer's
shard, variant or holdout, frequency cap and quiet hours, and the deterministic ids
that make a replay change nothing.

Each step is a pure function of the plan, the buyer and the clock, so the
same buyer always lands in the same shard and variant, and an occurrence
executed twice (after a crash or a rebalance) decides the same for everyone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from itertools import accumulate
from zoneinfo import ZoneInfo

import mmh3

from app.domain.wallclock import first_instant_at

BASIS = 10_000
HOLDOUT = "holdout"


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    weight_bp: int


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    max: int
    per_ms: int


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time   # "from", inclusive
    end: time     # "to", exclusive; before `start` when the quiet spans midnight


def shard(buyer_id: str, shards: int) -> int:
    """The buyer's shard, 1..`shards` (a power of two), as seed 003 computes it."""
    if shards < 1 or shards & (shards - 1):
        raise ValueError(f"shards: {shards} is not a power of two")
    return (abs(mmh3.hash(buyer_id)) & (shards - 1)) + 1


def bucket(plan_id: str, buyer_id: str) -> int:
    return mmh3.hash(f"{plan_id}:{buyer_id}", signed=False) % BASIS


def variant_of(plan_id: str, buyer_id: str, holdout_bp: int,
               variants: Sequence[Variant]) -> str | None:
    """`HOLDOUT`, the name of the buyer's variant, or None (the plan's own action)."""
    chosen = bucket(plan_id, buyer_id)
    if chosen < holdout_bp:
        return HOLDOUT
    if not variants:
        return None
    total = sum(variant.weight_bp for variant in variants)
    weights_so_far = accumulate(variant.weight_bp for variant in variants)
    # The last bound is BASIS, above every bucket, so some variant is always found.
    return next(variant.name for variant, running in zip(variants, weights_so_far, strict=True)
                if chosen < holdout_bp + (BASIS - holdout_bp) * running // total)


def capped(sent_ms: Sequence[int], now_ms: int, cap: FrequencyCap | None) -> bool:
    """Whether one more action now would exceed the buyer's cap (actions of every plan of
    the shop, by the times they were sent)."""
    if cap is None:
        return False
    return sum(1 for at in sent_ms if at > now_ms - cap.per_ms) >= cap.max


def parse_quiet_hours(start: str, end: str) -> QuietHours:
    try:
        return QuietHours(time.fromisoformat(start), time.fromisoformat(end))
    except ValueError:
        raise ValueError(f"quiet_hours: {start!r} to {end!r} are not HH:MM times") from None


def quiet_until(now_ms: int, quiet: QuietHours | None, zone: ZoneInfo) -> int | None:
    """When the quiet hours around `now_ms` end (ms), or None when it is not quiet now."""
    if quiet is None or quiet.start == quiet.end:
        return None
    wall = datetime.fromtimestamp(now_ms / 1000, zone).replace(tzinfo=None)
    today = wall.date()
    spans_midnight = quiet.end < quiet.start
    for start_day in ((today - timedelta(days=1), today) if spans_midnight else (today,)):
        start = datetime.combine(start_day, quiet.start)
        end = datetime.combine(start_day + timedelta(days=1 if spans_midnight else 0),
                               quiet.end)
        if start <= wall < end:
            return first_instant_at(end, zone)
    return None


def action_id(occurrence_id: str, buyer_id: str) -> str:
    """One action per buyer and occurrence: the same id however often it is decided."""
    return f"{occurrence_id}:{buyer_id}"


def record_id(occurrence_id: str, buyer_id: str, kind: str) -> str:
    return f"{occurrence_id}:{buyer_id}:{kind}"
