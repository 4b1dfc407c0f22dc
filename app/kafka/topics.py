"""Topic names (prefix + SPEC name) and how each topic is created."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DAY_MS = 86_400_000


class Role(StrEnum):
    INPUT = "input"          # produced by others, consumed by the engine
    PROFILE = "profile"      # compacted input, latest value per key (member profiles, lists)
    CONFIG = "config"        # compacted, keyed by id, read by every worker
    OUTPUT = "output"        # produced by the engine for others
    INTERNAL = "internal"    # produced and consumed by the engine (repartitioning)
    PROGRESS = "progress"    # compacted bookkeeping of the engine (click spool progress)
    CHANGELOG = "changelog"  # compacted changelog of a table


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    role: Role

    @property
    def compacted(self) -> bool:
        return self.role in (Role.PROFILE, Role.CONFIG, Role.PROGRESS, Role.CHANGELOG)

    @property
    def config(self) -> dict[str, str]:
        if self.compacted:
            return {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
        if self.role is Role.INTERNAL:
            return {"retention.ms": str(7 * DAY_MS)}
        return {}


class Topics:
    """Every topic of one engine instance, under its prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.clicks = prefix + "clicks"
        self.orders = prefix + "orders"
        self.shops = prefix + "shops"
        self.channels = prefix + "channels"
        self.activities = prefix + "activities"
        self.policy = prefix + "policy"
        self.sinks = prefix + "sinks"
        # Operation plans (SPEC 13): profiles and lists in, actions and records out.
        self.members = prefix + "members"
        self.lists = prefix + "lists"
        self.plans = prefix + "plans"
        # Operator allocation (SPEC 14): the operators assign plans give buyers to.
        self.operators = prefix + "operators"
        self.plan_actions = prefix + "plan_actions"
        self.operation_records = prefix + "operation_records"
        # Operator allocation (SPEC 14): assignments out; the buyers assign plans select,
        # sent to their shop's partition, which holds the shop's operators' counts.
        self.assignments = prefix + "assignments"
        self.assign_requests = prefix + "internal.assign-requests"
        self.attributions = prefix + "attributions"
        self.commissions = prefix + "commissions"
        self.settlements = prefix + "settlements"
        self.deadletter = prefix + "deadletter"
        self.sinks_deadletter = prefix + "sinks.deadletter"
        # Internal: input events re-keyed by buyer so they meet the buyer's clicks,
        # and orders a producer did not key by order id, re-keyed for billing.
        self.clicks_by_buyer = prefix + "internal.clicks-by-buyer"
        self.orders_by_buyer = prefix + "internal.orders-by-buyer"
        self.orders_by_order = prefix + "internal.orders-by-order"
        # Attributed orders re-keyed by promoter for the promoters' order lists.
        self.orders_by_promoter = prefix + "internal.orders-by-promoter"
        # Member profiles and list entries re-keyed by buyer, to meet the buyer's behaviour.
        self.profiles_by_buyer = prefix + "internal.profiles-by-buyer"
        # Every result with the facts filters name, for live subscriptions (/subscribe).
        self.live = prefix + "internal.live"
        # How far each worker's click spool has reached cps.clicks.
        self.spool_progress = prefix + "internal.spool-progress"

    def specs(self) -> list[TopicSpec]:
        roles = {
            self.clicks: Role.INPUT, self.orders: Role.INPUT,
            self.shops: Role.CONFIG, self.channels: Role.CONFIG, self.activities: Role.CONFIG,
            self.policy: Role.CONFIG, self.sinks: Role.CONFIG, self.plans: Role.CONFIG,
            self.operators: Role.CONFIG,
            self.members: Role.PROFILE, self.lists: Role.PROFILE,
            self.plan_actions: Role.OUTPUT, self.operation_records: Role.OUTPUT,
            self.assignments: Role.OUTPUT, self.assign_requests: Role.INTERNAL,
            self.attributions: Role.OUTPUT, self.commissions: Role.OUTPUT,
            self.settlements: Role.OUTPUT, self.deadletter: Role.OUTPUT,
            self.sinks_deadletter: Role.OUTPUT,
            self.clicks_by_buyer: Role.INTERNAL, self.orders_by_buyer: Role.INTERNAL,
            self.orders_by_order: Role.INTERNAL, self.orders_by_promoter: Role.INTERNAL,
            self.live: Role.INTERNAL, self.profiles_by_buyer: Role.INTERNAL,
            self.spool_progress: Role.PROGRESS,
        }
        return [TopicSpec(name, role) for name, role in roles.items()]

    @property
    def config_topics(self) -> tuple[str, ...]:
        return (self.shops, self.channels, self.activities, self.policy, self.sinks, self.plans,
                self.operators)
