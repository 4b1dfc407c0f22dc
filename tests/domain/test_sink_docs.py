"""What README.md and docs/sinks.md say of a sink's throttle is what app.domain.sinks does:
the numbers they name are the code's (the README once described a throttle replaced a
month before)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from app.domain.sinks import FLOOR_SHARE, RECOVERY_S, AdaptiveRate

ROOT = Path(__file__).resolve().parents[2]


def _flat(path: str) -> str:
    return " ".join((ROOT / path).read_text().split())


def test_the_docs_name_the_throttles_own_numbers():
    climb = f"climbs back to the configured rate within {RECOVERY_S:g} s"
    assert climb in _flat("README.md")
    assert f"within {RECOVERY_S:g} s" in _flat("docs/sinks.md")
    floor = Fraction(FLOOR_SHARE).limit_denominator()
    assert f"floor: {floor.numerator}/{floor.denominator} of the configured rate" in _flat(
        "docs/sinks.md")


def test_the_throttle_does_what_the_docs_say():
    # README: a Retry-After holds the sink exactly that long and the rate stays; without
    # one, a second's hold and half the rate, back to the configured rate within RECOVERY_S.
    told = AdaptiveRate(100.0)
    told.pushed_back(10.0, retry_after_s=3.0)
    assert (told.held_for(10.0), told.rate(13.0)) == (3.0, 100.0)
    silent = AdaptiveRate(100.0)
    silent.pushed_back(10.0, retry_after_s=None)
    assert (silent.held_for(10.0), silent.rate(10.0)) == (1.0, 50.0)
    assert silent.rate(10.0 + RECOVERY_S) == 100.0
