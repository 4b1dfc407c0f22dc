"""Shards, variants and holdout, frequency caps, quiet hours, ids."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import mmh3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.operations import (
    HOLDOUT,
    FrequencyCap,
    Variant,
    action_id,
    bucket,
    capped,
    parse_quiet_hours,
    quiet_until,
    shard,
    variant_of,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@given(st.text(min_size=1, max_size=20), st.sampled_from([1, 2, 4, 8, 64]))
def test_the_shard_is_seed_003s(buyer, shards):
    assert shard(buyer, shards) == (abs(mmh3.hash(buyer)) & (shards - 1)) + 1
    assert 1 <= shard(buyer, shards) <= shards


def test_shards_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        shard("u1", 6)


def test_holdout_and_variants_follow_the_weights_and_never_move():
    variants = [Variant("A", 3000), Variant("B", 7000)]
    seen = Counter(variant_of("p1", f"u{n}", 1000, variants) for n in range(20_000))
    assert abs(seen[HOLDOUT] / 20_000 - 0.10) < 0.01
    assert abs(seen["A"] / 20_000 - 0.27) < 0.015
    assert abs(seen["B"] / 20_000 - 0.63) < 0.015
    assert all(variant_of("p1", f"u{n}", 1000, variants) == variant_of(
        "p1", f"u{n}", 1000, variants) for n in range(100))


@given(st.text(min_size=1, max_size=12), st.integers(0, 10_000),
       st.lists(st.integers(1, 10_000), min_size=1, max_size=4))
def test_the_variant_is_the_first_whose_bound_exceeds_the_bucket(buyer, holdout_bp, weights):
    variants = [Variant(f"v{n}", w) for n, w in enumerate(weights)]
    chosen = mmh3.hash("plan:" + buyer, signed=False) % 10_000  # SPEC 13
    assert bucket("plan", buyer) == chosen
    got = variant_of("plan", buyer, holdout_bp, variants)
    if chosen < holdout_bp:
        assert got == HOLDOUT
        return
    bounds = [holdout_bp + (10_000 - holdout_bp) * sum(weights[:n + 1]) // sum(weights)
              for n in range(len(weights))]
    assert got == variants[next(n for n, b in enumerate(bounds) if chosen < b)].name
    assert variant_of("plan", buyer, holdout_bp, []) is None


def test_frequency_cap_counts_the_window():
    cap = FrequencyCap(max=2, per_ms=1000)
    assert not capped([100], 1050, cap)
    assert capped([100, 900], 1050, cap)
    assert not capped([50, 900], 1050, cap)  # 50 is out of the window
    assert not capped([1, 2, 3], 10, None)


def test_quiet_hours_across_midnight_end_in_the_buyers_morning():
    quiet = parse_quiet_hours("21:00", "08:00")
    late = ms(datetime(2026, 11, 29, 22, 30, tzinfo=SHANGHAI))
    early = ms(datetime(2026, 11, 30, 7, 59, tzinfo=SHANGHAI))
    day = ms(datetime(2026, 11, 30, 12, 0, tzinfo=SHANGHAI))
    morning = ms(datetime(2026, 11, 30, 8, 0, tzinfo=SHANGHAI))
    assert quiet_until(late, quiet, SHANGHAI) == morning
    assert quiet_until(early, quiet, SHANGHAI) == morning
    assert quiet_until(day, quiet, SHANGHAI) is None
    assert quiet_until(morning, quiet, SHANGHAI) is None


def test_quiet_hours_within_a_day_and_bad_times():
    lunch = parse_quiet_hours("12:00", "13:30")
    inside = ms(datetime(2026, 11, 30, 12, 10, tzinfo=SHANGHAI))
    assert quiet_until(inside, lunch, SHANGHAI) == ms(
        datetime(2026, 11, 30, 13, 30, tzinfo=SHANGHAI))
    with pytest.raises(ValueError, match="quiet_hours"):
        parse_quiet_hours("9pm", "08:00")


def test_ids_are_deterministic():
    assert action_id("p1@1700000000000", "u1") == "p1@1700000000000:u1"
