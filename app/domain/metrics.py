"""The engine's measurements as values: delay histograms and short time series.

Histograms have fixed, roughly geometric bucket bounds (in ms), so the
histograms of several workers or several intervals merge by adding counts,
and percentiles come from the merged counts. Time series keep the last hour
of points.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable

# Bucket upper bounds in ms: 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, ... up to 1 hour.
BOUNDS_MS: tuple[int, ...] = tuple(
    sorted({int(m * 10 ** e) for e in range(0, 7) for m in (1, 1.5, 2, 3, 5, 7)
            if m * 10 ** e <= 3_600_000})
)


class Histogram:
    """Counts of values per bucket (the last bucket holds everything above the bounds)."""

    __slots__ = ("counts", "sum_ms", "total")

    def __init__(self, counts: Iterable[int] | None = None) -> None:
        self.counts = list(counts) if counts is not None else [0] * (len(BOUNDS_MS) + 1)
        self.total = sum(self.counts)
        self.sum_ms = 0

    def record(self, value_ms: int) -> None:
        self.counts[bisect.bisect_left(BOUNDS_MS, max(0, value_ms))] += 1
        self.total += 1
        self.sum_ms += max(0, value_ms)

    def merge(self, other: Histogram) -> Histogram:
        merged = Histogram([a + b for a, b in zip(self.counts, other.counts, strict=True)])
        merged.sum_ms = self.sum_ms + other.sum_ms
        return merged

    def percentile(self, q: float) -> int | None:
        """The bucket bound at or above which a fraction q of the values fall (None if empty)."""
        if not self.total:
            return None
        rank = q * self.total
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank and count:
                return BOUNDS_MS[index] if index < len(BOUNDS_MS) else BOUNDS_MS[-1] * 2
        return BOUNDS_MS[-1] * 2

    def summary(self) -> dict[str, int | None]:
        return {"count": self.total, "p50": self.percentile(0.50),
                "p90": self.percentile(0.90), "p99": self.percentile(0.99),
                "max_bucket": self.percentile(1.0)}


class Series:
    """(ts_ms, value) points of the last `horizon_ms`, oldest first."""

    __slots__ = ("horizon_ms", "points")

    def __init__(self, horizon_ms: int = 3_600_000) -> None:
        self.horizon_ms = horizon_ms
        self.points: deque[tuple[int, float]] = deque()

    def add(self, ts_ms: int, value: float) -> None:
        self.points.append((ts_ms, value))
        while self.points and self.points[0][0] < ts_ms - self.horizon_ms:
            self.points.popleft()

    def since(self, ts_ms: int) -> list[tuple[int, float]]:
        return [point for point in self.points if point[0] >= ts_ms]

    def last(self) -> float | None:
        return self.points[-1][1] if self.points else None


class WindowedHistogram:
    """One histogram per interval for the last hour; percentiles over any recent window."""

    def __init__(self, interval_ms: int, horizon_ms: int = 3_600_000) -> None:
        self.interval_ms = interval_ms
        self.horizon_ms = horizon_ms
        self.windows: deque[tuple[int, Histogram]] = deque()

    def record(self, now_ms: int, value_ms: int) -> None:
        start = now_ms - now_ms % self.interval_ms
        if not self.windows or self.windows[-1][0] != start:
            self.windows.append((start, Histogram()))
            while self.windows and self.windows[0][0] < start - self.horizon_ms:
                self.windows.popleft()
        self.windows[-1][1].record(value_ms)

    def over(self, since_ms: int) -> Histogram:
        merged = Histogram()
        for start, histogram in self.windows:
            if start + self.interval_ms > since_ms:
                merged = merged.merge(histogram)
        return merged
