"""Pool split: floors, caps, the rest participant, every minor unit paid out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.pools import (
    DEFAULT_POLICY,
    Policy,
    Pool,
    Share,
    account_of,
    pool_amount,
    split,
    validate_policy,
)


@pytest.mark.parametrize(("net", "rate", "pool"), [
    (12900, 1000, 1290), (1, 1000, 0), (9, 1111, 0), (10, 1000, 1), (19999, 1, 1),
    (12345, 777, 959), (0, 5000, 0),
])
def test_pool_is_floored(net, rate, pool):
    assert pool_amount(net, rate) == pool


@pytest.mark.parametrize(("pool", "parts"), [
    (1290, {"youzan_platform": 129, "channel_platform": 64, "fans": 0, "promoter": 1097}),
    (1, {"youzan_platform": 0, "channel_platform": 0, "fans": 0, "promoter": 1}),
    (19, {"youzan_platform": 1, "channel_platform": 0, "fans": 0, "promoter": 18}),
    (20, {"youzan_platform": 2, "channel_platform": 1, "fans": 0, "promoter": 17}),
    (0, {"youzan_platform": 0, "channel_platform": 0, "fans": 0, "promoter": 0}),
])
def test_default_product_split(pool, parts):
    assert split(pool, 99_999, DEFAULT_POLICY.product) == parts


def test_caps_leave_lower_participants_with_zero():
    shares = (Share("a", 8000), Share("b", 5000), Share("c", 3000), Share("d", rest=True))
    assert split(100, 1000, shares) == {"a": 80, "b": 20, "c": 0, "d": 0}


def test_of_amount_base_is_capped_at_the_pool():
    shares = (Share("a", 1000, of_amount=True), Share("b", rest=True))
    assert split(50, 10_000, shares) == {"a": 50, "b": 0}      # 10 % of 10,000 > pool 50
    assert split(500, 1_000, shares) == {"a": 100, "b": 400}


def test_channel_pool_goes_wholly_to_the_channel_platform():
    assert split(387, 12900, DEFAULT_POLICY.shares(Pool.CHANNEL)) == {"channel_platform": 387}


def test_accounts():
    kw = {"promoter_id": "p", "group_leader_id": "g", "channel_id": "c", "buyer_id": "u"}
    assert [account_of(p, **kw) for p in ("promoter", "group_leader", "channel_platform",
                                          "youzan_platform", "fans", "other")] == [
        "p", "g", "c", "youzan", "u", None]


def test_policy_validation():
    assert validate_policy(DEFAULT_POLICY) is None
    assert "exactly one" in validate_policy(Policy((Share("a", 10),), DEFAULT_POLICY.group_leader))
    assert "twice" in validate_policy(Policy((Share("a", 10), Share("a", rest=True)),
                                             DEFAULT_POLICY.group_leader))


share_lists = st.lists(
    st.builds(Share, participant=st.sampled_from("abcdef"), share_bp=st.integers(0, 10_000),
              of_amount=st.booleans()),
    max_size=5, unique_by=lambda s: s.participant,
).map(lambda shares: (*shares, Share("rest", rest=True)))


@given(st.integers(0, 10**12), st.integers(0, 10**12), share_lists)
def test_shares_always_sum_to_the_pool_and_never_go_negative(pool, net, shares):
    parts = split(pool, net, shares)
    assert sum(parts.values()) == pool
    assert all(amount >= 0 for amount in parts.values())
