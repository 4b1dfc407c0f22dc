"""Value types of the attribution rules: clicks, shops, channels and order facts.

Plain frozen dataclasses; they know nothing of Kafka, JSON or Faust.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DAY_MS = 86_400_000
DEFAULT_WINDOW_MS = 7 * DAY_MS
# A shop keeps its CPS attribute this long after it exits CPS (SPEC 5.1).
CPS_EXIT_GRACE_MS = 15 * DAY_MS
DEFAULT_SETTLE_DAYS = 15


@dataclass(frozen=True, slots=True)
class Click:
    click_id: str
    ts_ms: int
    buyer_id: str
    shop_id: str
    channel_id: str
    promoter_id: str
    item_id: str | None = None
    activity_id: str | None = None
    group_leader_id: str | None = None
    base_id: str | None = None


@dataclass(frozen=True, slots=True)
class Shop:
    shop_id: str
    cps_joined_ms: int | None = None
    cps_exited_ms: int | None = None
    authorized_channels: frozenset[str] = frozenset()

    def is_cps_at(self, t_ms: int) -> bool:
        """Whether the shop has the CPS attribute at `t_ms`, with the 15-day exit rule."""
        if self.cps_joined_ms is None or self.cps_joined_ms > t_ms:
            return False
        exited = self.cps_exited_ms
        return exited is None or exited < self.cps_joined_ms or t_ms < exited + CPS_EXIT_GRACE_MS


@dataclass(frozen=True, slots=True)
class Channel:
    channel_id: str
    attribution_window_ms: int = DEFAULT_WINDOW_MS
    site_wide: bool = False
    self_purchase: bool = False
    settle_days: int = DEFAULT_SETTLE_DAYS
    settle_days_by_participant: Mapping[str, int] = field(default_factory=dict)
    self_operated_rate_bp: Mapping[str, int] = field(default_factory=dict)
    # Kept out of the repr, which a log line may print: the URL may hold credentials.
    webhook_url: str | None = field(default=None, repr=False)

    @classmethod
    def unconfigured(cls, channel_id: str) -> Channel:
        """The rules for a channel nobody configured: 7-day window, nothing else."""
        return cls(channel_id)


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What attribution needs from one order event."""

    order_id: str
    event: str
    ts_ms: int
    buyer_id: str
    shop_id: str
    channel_id: str | None = None
    fanstype: str | None = None
    tracking: str | None = None


@dataclass(frozen=True, slots=True)
class OrderLine:
    item_id: str
    category_id: str | None
    quantity: int
    amount: int


@dataclass(frozen=True, slots=True)
class Refund:
    refund_id: str
    item_id: str
    amount: int


ORDER_EVENTS = frozenset({"created", "paid", "refund_started", "refunded", "refund_cancelled",
                          "completed", "closed"})
REFUND_EVENTS = frozenset({"refund_started", "refunded", "refund_cancelled"})
LINE_EVENTS = frozenset({"created", "paid"})


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One order lifecycle event, validated."""

    order_id: str
    event: str
    ts_ms: int
    buyer_id: str
    shop_id: str
    channel_id: str | None = None
    fanstype: str | None = None
    tracking: str | None = None
    items: tuple[OrderLine, ...] = ()
    refund: Refund | None = None
    coupon_ids: tuple[str, ...] = ()  # rights used (grants' action ids), on created/paid

    def facts(self) -> OrderFacts:
        return OrderFacts(order_id=self.order_id, event=self.event, ts_ms=self.ts_ms,
                          buyer_id=self.buyer_id, shop_id=self.shop_id,
                          channel_id=self.channel_id, fanstype=self.fanstype,
                          tracking=self.tracking)
