"""What a plan's variants converted, and their lift over the holdout (SPEC 13, Views).

A variant's buyers are the buyers it exposed (its `actions`); the holdout's
are its `held_out` buyers. The lift is the difference of the two conversion
proportions, with a 95 % interval by Newcombe's hybrid score method (1998,
method 10): a Wilson score interval for each proportion, combined. It stays
sensible with few buyers or no conversions, where the textbook normal
interval collapses to a point or leaves [-1, 1]. Rates and intervals are
statistics, so floats; amounts stay integers in minor units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import sqrt
from statistics import NormalDist

from app.domain.operations import HOLDOUT

Z_95 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True, slots=True)
class Lift:
    difference: float        # variant rate minus holdout rate
    low: float               # 95 % interval of the difference
    high: float
    relative: float | None   # difference / holdout rate; None when that rate is 0


@dataclass(frozen=True, slots=True)
class VariantResult:
    variant: str
    buyers: int              # the denominator: actions, or held_out for the holdout
    actions: int
    conversions: int
    conversion_rate: float | None   # None without buyers
    paid_amount: int         # minor units, of the converting orders
    used: int
    replenished: int
    lift: Lift | None        # None for the holdout, or without a measurable holdout


def wilson(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval for a proportion (no continuity correction)."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"{successes} of {trials}: not a proportion")
    share = successes / trials
    centre = 2 * successes + z * z
    spread = z * sqrt(z * z + 4 * successes * (1 - share))
    denominator = 2 * (trials + z * z)
    # Exact at the ends, where rounding would leave a bound a hair past 0 or 1.
    return (0.0 if successes == 0 else (centre - spread) / denominator,
            1.0 if successes == trials else (centre + spread) / denominator)


def difference(successes: int, trials: int, base_successes: int, base_trials: int,
               z: float = Z_95) -> Lift:
    """The first proportion minus the second (the base), with Newcombe's hybrid score
    interval: the difference goes down by the root sum of squares of the first rate's
    distance to its Wilson lower bound and the base's to its upper bound, and up alike."""
    rate, base = successes / trials, base_successes / base_trials
    low, high = wilson(successes, trials, z)
    base_low, base_high = wilson(base_successes, base_trials, z)
    point = rate - base
    return Lift(point,
                point - sqrt((rate - low) ** 2 + (base_high - base) ** 2),
                point + sqrt((high - rate) ** 2 + (base - base_low) ** 2),
                point / base if base else None)


def measurable(conversions: int, buyers: int) -> bool:
    return buyers > 0 and 0 <= conversions <= buyers


def results(counts: Mapping[str, Mapping[str, int]]) -> list[VariantResult]:
    """One result per variant in `counts` (variant -> its counts, in the order given),
    each variant's lift against `HOLDOUT`'s buyers; counts missing are 0. Counts that are
    no proportion (more conversions than buyers) show their rate but get no lift."""
    holdout = counts.get(HOLDOUT, {})
    base = holdout.get("converted", 0), holdout.get("held_out", 0)
    return [result(name, variant, base) for name, variant in counts.items()]


def result(name: str, counts: Mapping[str, int], base: tuple[int, int]) -> VariantResult:
    buyers = counts.get("held_out" if name == HOLDOUT else "actions", 0)
    conversions = counts.get("converted", 0)
    lift = (difference(conversions, buyers, *base)
            if name != HOLDOUT and measurable(conversions, buyers) and measurable(*base)
            else None)
    return VariantResult(name, buyers, counts.get("actions", 0), conversions,
                         conversions / buyers if buyers else None,
                         counts.get("converted_amount", 0), counts.get("used", 0),
                         counts.get("replenished", 0), lift)
