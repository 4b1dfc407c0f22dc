"""Commission pools and how they are shared among participants (SPEC 6).

Each pool is split by the policy's participants in priority order: each
takes floor(base x share_bp / 10000) of the pool or of the line's net
amount, capped at what is left; the `rest` participant takes what remains,
so a pool is paid out to the last minor unit and lower-priority
participants may get zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

BP = 10_000


class Pool(StrEnum):
    PRODUCT = "product"
    GROUP_LEADER = "group_leader"
    CHANNEL = "channel"


class Participant(StrEnum):
    YOUZAN_PLATFORM = "youzan_platform"
    CHANNEL_PLATFORM = "channel_platform"
    FANS = "fans"
    PROMOTER = "promoter"
    GROUP_LEADER = "group_leader"


YOUZAN_ACCOUNT = "youzan"


@dataclass(frozen=True, slots=True)
class Share:
    participant: str
    share_bp: int = 0
    of_amount: bool = False  # base is the line's net amount instead of the pool
    rest: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    """Participants of the product and group-leader pools, in priority order."""

    product: tuple[Share, ...]
    group_leader: tuple[Share, ...]

    def shares(self, pool: Pool) -> tuple[Share, ...]:
        if pool is Pool.GROUP_LEADER:
            return self.group_leader
        if pool is Pool.CHANNEL:
            return CHANNEL_SHARES
        return self.product


DEFAULT_POLICY = Policy(
    product=(Share("youzan_platform", 1000), Share("channel_platform", 500), Share("fans", 0),
             Share("promoter", rest=True)),
    group_leader=(Share("youzan_platform", 1000), Share("group_leader", rest=True)),
)
# A self-operated order's single pool goes wholly to the channel platform.
CHANNEL_SHARES = (Share("channel_platform", rest=True),)


def pool_amount(net_amount: int, rate_bp: int) -> int:
    return net_amount * rate_bp // BP


def split(pool: int, net_amount: int, shares: Sequence[Share]) -> dict[str, int]:
    """Each participant's part of `pool`; the parts always sum to the pool."""
    parts: dict[str, int] = {}
    left = pool
    rest_participant = None
    for share in shares:
        if share.rest:
            rest_participant = share.participant
            continue
        base = net_amount if share.of_amount else pool
        take = min(base * share.share_bp // BP, left)
        parts[share.participant] = parts.get(share.participant, 0) + take
        left -= take
    if rest_participant is not None:
        parts[rest_participant] = parts.get(rest_participant, 0) + left
    return parts


def account_of(participant: str, *, promoter_id: str | None, group_leader_id: str | None,
               channel_id: str | None, buyer_id: str) -> str | None:
    """The account a participant's money goes to (SPEC 6 mapping)."""
    return {
        "promoter": promoter_id,
        "group_leader": group_leader_id,
        "channel_platform": channel_id,
        "youzan_platform": YOUZAN_ACCOUNT,
        "fans": buyer_id,
    }.get(participant)


def validate_policy(policy: Policy) -> str | None:
    """Why the policy cannot pay out every pool, or None when it can."""
    for name, shares in (("product", policy.product), ("group_leader", policy.group_leader)):
        rests = [s for s in shares if s.rest]
        if len(rests) != 1:
            return f"{name}: exactly one participant must be marked rest, found {len(rests)}"
        seen = set()
        for share in shares:
            if share.participant in seen:
                return f"{name}: participant {share.participant!r} appears twice"
            seen.add(share.participant)
    return None
