"""Alerts: a condition that holds long enough fires; when it stops holding, it resolves.

Pure state machines fed with observations and the clock; every transition
is returned as a value so the caller can show it and send it on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class AlertState:
    name: str
    description: str
    state: str = "ok"              # ok | pending | firing
    since_ms: int | None = None    # when the condition started to hold
    fired_ms: int | None = None
    resolved_ms: int | None = None
    value: float | None = None
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    alert: AlertState
    kind: str  # "firing" | "resolved"

    @property
    def event_id(self) -> str:
        fired = self.alert.fired_ms
        return f"alert:{self.alert.name}:{fired}:{self.kind}"


def observe(alert: AlertState, *, holds: bool, value: float | None, threshold: float,
            for_ms: int, now_ms: int) -> tuple[AlertState, Transition | None]:
    """The alert after one observation, and the transition it made, if any."""
    alert = replace(alert, value=value, threshold=threshold)
    if holds:
        if alert.state == "ok":
            alert = replace(alert, state="pending", since_ms=now_ms)
        started = alert.since_ms if alert.since_ms is not None else now_ms
        if alert.state == "pending" and now_ms - started >= for_ms:
            fired = replace(alert, state="firing", fired_ms=now_ms, resolved_ms=None)
            return fired, Transition(fired, "firing")
        return alert, None
    if alert.state == "firing":
        resolved = replace(alert, state="ok", resolved_ms=now_ms, since_ms=None)
        return resolved, Transition(resolved, "resolved")
    return replace(alert, state="ok", since_ms=None), None
