"""Commission rate of an order line (SPEC 6): six levels, first matching level wins.

Only activities of the order's shop that are valid at the `paid` time count.
Inside a level the activity with the latest `start_ms` wins, then the
greatest `activity_id`. No matching activity means rate 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    TARGETED_PRODUCT = "targeted_product"
    TARGETED_BASE = "targeted_base"
    GROUP_LEADER = "group_leader"
    GENERIC_PRODUCT = "generic_product"
    SHOP_CATEGORY = "shop_category"
    SHOP_GENERIC = "shop_generic"


# SPEC 6's order, highest first: the first level with a matching activity decides the
# rate. Written out, not taken from the enum, so reordering the enum changes no rate.
PRIORITY = (
    Level.TARGETED_PRODUCT,
    Level.TARGETED_BASE,
    Level.GROUP_LEADER,
    Level.GENERIC_PRODUCT,
    Level.SHOP_CATEGORY,
    Level.SHOP_GENERIC,
)


@dataclass(frozen=True, slots=True)
class Activity:
    activity_id: str
    shop_id: str
    level: Level
    rate_bp: int
    start_ms: int
    end_ms: int | None = None
    group_leader_rate_bp: int | None = None
    item_ids: frozenset[str] | None = None
    category_ids: frozenset[str] | None = None
    promoter_ids: frozenset[str] | None = None
    base_ids: frozenset[str] | None = None
    group_leader_id: str | None = None

    def valid_at(self, t_ms: int) -> bool:
        return self.start_ms <= t_ms and (self.end_ms is None or t_ms < self.end_ms)


@dataclass(frozen=True, slots=True)
class LineContext:
    """What a rate may depend on: the line and the attributed click."""

    item_id: str
    category_id: str | None
    promoter_id: str | None
    base_id: str | None
    group_leader_id: str | None


@dataclass(frozen=True, slots=True)
class Rate:
    rate_bp: int
    activity_id: str | None
    level: str | None

    @classmethod
    def of(cls, activity: Activity | None) -> Rate:
        if activity is None:
            return NO_RATE
        return cls(activity.rate_bp, activity.activity_id, activity.level.value)


NO_RATE = Rate(0, None, None)


def matches(activity: Activity, line: LineContext) -> bool:
    """Whether the activity's level applies to the line (validity and shop aside)."""
    if activity.item_ids is not None and line.item_id not in activity.item_ids:
        return False
    if activity.category_ids is not None and line.category_id not in activity.category_ids:
        return False
    level = activity.level
    if level is Level.TARGETED_PRODUCT:
        return (activity.item_ids is not None and activity.promoter_ids is not None
                and line.promoter_id in activity.promoter_ids)
    if level is Level.TARGETED_BASE:
        return activity.base_ids is not None and line.base_id in activity.base_ids
    if level is Level.GROUP_LEADER:
        return line.group_leader_id is not None and line.group_leader_id == activity.group_leader_id
    if level is Level.GENERIC_PRODUCT:
        return activity.item_ids is not None
    if level is Level.SHOP_CATEGORY:
        return activity.category_ids is not None
    return True


def best_by_level(activities: Iterable[Activity], line: LineContext,
                  paid_ms: int) -> dict[Level, Activity]:
    """The winning activity of each level that has a match (tie-break applied)."""
    best: dict[Level, Activity] = {}
    for activity in activities:
        if not activity.valid_at(paid_ms) or not matches(activity, line):
            continue
        current = best.get(activity.level)
        if current is None or (activity.start_ms, activity.activity_id) > (
                current.start_ms, current.activity_id):
            best[activity.level] = activity
    return best


def product_rate(best: dict[Level, Activity]) -> Rate:
    """The line's product rate: the first level, in priority order, that has a match."""
    for level in PRIORITY:
        activity = best.get(level)
        if activity is not None:
            return Rate.of(activity)
    return NO_RATE


def group_leader_rate(best: dict[Level, Activity]) -> Rate:
    """The group-leader pool's rate: from the matching group_leader activity, if any."""
    activity = best.get(Level.GROUP_LEADER)
    if activity is None or not activity.group_leader_rate_bp:
        return NO_RATE
    return Rate(activity.group_leader_rate_bp, activity.activity_id, activity.level.value)


def self_operated_rate(rates_by_category: dict[str, int], category_id: str | None) -> Rate:
    """A self-operated line's rate: the channel's rate for the category, else '*', else 0."""
    if category_id is not None and category_id in rates_by_category:
        return Rate(rates_by_category[category_id], None, None)
    return Rate(rates_by_category.get("*", 0), None, None)
