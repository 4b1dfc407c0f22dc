"""Notification sinks' rules (SPEC 9): which events a sink wants, how fast, how to retry.

Pure functions and small state objects; the clock and the random source
are arguments, so the tests move time by hand.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

STREAMS = ("attributions", "commissions", "settlements", "order_status", "alerts",
           "plan_actions", "operation_records", "assignments")


@dataclass(frozen=True, slots=True)
class Retry:
    max_attempts: int = 10
    base_ms: int = 200
    max_ms: int = 30_000
    max_age_s: int = 86_400


@dataclass(frozen=True, slots=True)
class Sink:
    """A notification sink (SPEC 9); its delivery is app/sinks'."""

    sink_id: str
    kind: str
    streams: frozenset[str]
    # Kept out of the repr, which a log line or a traceback may print (SPEC 8).
    url: str | None = field(default=None, repr=False)
    topic: str | None = None
    secret: str | None = field(default=None, repr=False)
    filters: tuple[tuple[str, str], ...] = ()
    rate_per_s: float = 100.0
    burst: int = 100
    max_in_flight: int = 8
    timeout_ms: int = 5000
    retry: Retry = Retry()
    enabled: bool = True
    paused: bool = False


DEFAULT_PORTS = {"http": 80, "https": 443}


def shown_url(url: str) -> str:
    """A URL as views, answers and errors show it (SPEC 8): `scheme://host:port`, the port
    always written (none when it is no number), an IPv6 host in brackets. The rest (user
    and password, path, query, fragment) may hold a receiver's credentials, so it is shown
    nowhere."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an IPv6 bracket left open
        return "(not a URL)"
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    else:
        port = DEFAULT_PORTS.get(scheme) if port is None else port
    host = parts.hostname or ""
    shown_host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown_host}" + (f":{port}" if port is not None else "")


def matches(streams: frozenset[str], filters: Mapping[str, str], stream: str,
            facts: Mapping[str, object]) -> bool:
    """Whether a sink wants an event: its stream is subscribed and every filter agrees.

    `facts` are the order's fields a filter can name (channel_id, shop_id,
    promoter_id, type); a filter on a field the event does not know fails.
    """
    if stream not in streams:
        return False
    return all(facts.get(name) == wanted for name, wanted in filters.items())


def backoff_s(attempt: int, *, base_ms: int, max_ms: int, rnd: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, base x 2^attempt)]."""
    ceiling = min(max_ms, base_ms * (2 ** min(attempt, 30)))
    return rnd.uniform(0, ceiling) / 1000


def retry_after_s(value: str | None, now_s: float) -> float | None:
    """Seconds asked by a Retry-After header (delta seconds or an HTTP date), if any."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now_s)


# After a receiver's last push-back the rate climbs back to the configured one in this long.
RECOVERY_S = 5.0
# The lowest a push-back takes the rate, as a share of the configured one.
FLOOR_SHARE = 1 / 16


class AdaptiveRate:
    """How fast one sink sends now: the configured rate, lowered while the receiver pushes
    back, and why they differ.

    A 429 or 503 holds every send of the sink for exactly the time its
    `Retry-After` asks, and then the sink goes on at its rate: the receiver
    said when it can take more. One without `Retry-After` holds the sink for
    a second and halves the rate, once per hold (the answers to requests
    already on their way extend the hold but do not halve again); from there
    the rate climbs linearly back to the configured one within `RECOVERY_S`
    (multiplicative decrease, additive increase over time rather than per
    success, so a sink that saw a burst of refusals is back at full rate
    seconds after the receiver recovers, however few events it sent
    meanwhile). A new configured rate (the operator's) is the new ceiling and
    applies at once, forgetting earlier push-backs.
    """

    def __init__(self, configured: float) -> None:
        self.configured = configured
        self._low = configured       # the rate right after the last push-back
        self._pushed_at: float | None = None
        self.hold_until = 0.0

    def configure(self, configured: float) -> None:
        if configured != self.configured:
            self.configured = configured
            self._low = configured
            self._pushed_at = None

    def pushed_back(self, now_s: float, retry_after_s: float | None) -> None:
        """The receiver answered 429/503 (asking to wait `retry_after_s`, if it said)."""
        if retry_after_s is None and now_s >= self.hold_until:
            self._low = max(self.rate(now_s) / 2, self.configured * FLOOR_SHARE)
            self._pushed_at = now_s
        self.hold_until = max(self.hold_until, now_s + (1.0 if retry_after_s is None
                                                        else retry_after_s))

    def rate(self, now_s: float) -> float:
        """Sends per second allowed now (outside a hold)."""
        if self._pushed_at is None:
            return self.configured
        since = now_s - self._pushed_at
        if since >= RECOVERY_S - 1e-9:  # times are floats: the end must be exact
            return self.configured
        return self._low + (self.configured - self._low) * max(since, 0.0) / RECOVERY_S

    def held_for(self, now_s: float) -> float:
        """Seconds every send must still wait for the receiver's Retry-After."""
        return max(0.0, self.hold_until - now_s)

    def reason(self, now_s: float) -> str | None:
        """Why the effective rate is below the configured one: `retry_after`, `backoff`."""
        if self.held_for(now_s) > 0:
            return "retry_after"
        if self.rate(now_s) < self.configured:
            return "backoff"
        return None


class DeliveryProgress:
    """Which fetched records of one queue partition are still undelivered, and so the offset
    that may be committed: the oldest undelivered one (at least once, nothing skipped),
    however far later records of other orders got."""

    def __init__(self) -> None:
        self._fetched: deque[int] = deque()
        self._done: set[int] = set()
        self._next = -1  # the offset after the last fetched record; -1: nothing fetched

    def fetched(self, offset: int) -> None:
        self._fetched.append(offset)
        self._next = offset + 1

    def delivered(self, offset: int) -> None:
        self._done.add(offset)
        while self._fetched and self._fetched[0] in self._done:
            self._done.discard(self._fetched.popleft())

    @property
    def undelivered(self) -> int:
        return len(self._fetched) - len(self._done)

    def committable(self) -> int | None:
        """The offset to commit (None: nothing fetched yet)."""
        if self._fetched:
            return self._fetched[0]
        return self._next if self._next >= 0 else None
