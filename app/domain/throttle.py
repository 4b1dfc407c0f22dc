"""Rate limits: a token bucket, and the throttle of operation plans built on it.

A plan is throttled here and nowhere else (SPEC 13): `PlanThrottle` holds a
bucket per plan on each worker, filled at the worker's share (its part of
the partitions) of the plan's `rate_per_s` and `burst`, so the workers
together send at the plan's rate however the partitions are spread. The
sinks' own throttle (Retry-After, halving) is app/sinks/delivery.py's, over
the same bucket.
"""

from __future__ import annotations

import math


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up (`tokens` at the start, `burst`
    unless given); the rate may change any time."""

    def __init__(self, rate: float, burst: int, now_s: float, *,
                 tokens: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst if tokens is None else min(tokens, burst))
        self.updated = now_s

    def reconfigure(self, rate: float, burst: int, now_s: float) -> None:
        self._refill(now_s)
        self.rate, self.burst = rate, burst
        self.tokens = min(self.tokens, float(burst))

    def take(self, now_s: float) -> float:
        """Take one token; returns how long to wait first (0 when one is there)."""
        self._refill(now_s)
        self.tokens -= 1.0
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate if self.rate > 0 else float("inf")

    def try_take(self, now_s: float) -> bool:
        """Take one token if there is one (never runs into debt)."""
        self._refill(now_s)
        if self.tokens < 1.0 - 1e-6:  # 1e-6: rounding of epoch seconds, not a token
            return False
        self.tokens -= 1.0
        return True

    def _refill(self, now_s: float) -> None:
        elapsed = max(0.0, now_s - self.updated)
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
        self.updated = now_s


class PlanThrottle:
    """A token bucket per plan, at this worker's share of the plan's rate and burst."""

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s  # tokens are taken only on the engine's timer ticks
        self.share = 1.0
        self._buckets: dict[str, TokenBucket] = {}

    def set_share(self, share: float) -> None:
        """This worker's part of the partitions (0 to 1), asked once per tick."""
        self.share = share

    def try_take(self, plan_id: str, rate_per_s: float, burst: int, now_ms: int) -> bool:
        """Take a token for one action of the plan, if there is one now."""
        rate = rate_per_s * self.share
        saved = max(1, int(burst * self.share))
        # Tokens are taken once a tick, leaving less than one; until the next take (a tick
        # and its jitter) up to two ticks' worth accrue on top. Capped lower, what comes
        # between ticks overflows and the plan goes out below its rate.
        capacity = max(saved, 1 + math.ceil(rate * 2 * self.tick_s))
        now_s = now_ms / 1000
        bucket = self._buckets.get(plan_id)
        if bucket is None:  # a plan starts with its burst
            bucket = self._buckets[plan_id] = TokenBucket(rate, capacity, now_s, tokens=saved)
        elif (bucket.rate, bucket.burst) != (rate, capacity):
            bucket.reconfigure(rate, capacity, now_s)  # a live rate change: from this buyer on
        return bucket.try_take(now_s)
