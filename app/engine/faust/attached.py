"""What the adapter keeps for one Faust app, attached to the app itself.

The class patches serve every app of the process (a test may build two
engines); what differs between apps lives here, one `Attached` per app, so
that no engine sees another's engine, fetch wait, memory budget or flags.
An app nobody attached (Faust's own tests, a bare `faust.App`) keeps
Faust's behaviour in every patched method.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

# Our own attribute on faust.App; no Faust name starts with "cps_".
ATTRIBUTE = "cps_adapter"


@dataclass(eq=False)
class Attached:
    """One app's part of the adapter."""

    fetch_max_wait_ms: int = 0
    rocksdb_memory: Any = None  # rocksdb_memory.SharedMemory
    engine: Any = None  # the engine its consumer feeds (delivery.py)
    dropped_databases: bool = False  # since the tables' last rebalance (rebalance_gc.py)
    recovery_watchers: set[asyncio.Future] = field(default_factory=set)


def attached(app: Any) -> Attached | None:
    """`app`'s part of the adapter, or None for an app nobody attached."""
    return vars(app).get(ATTRIBUTE)


def attach_state(app: Any) -> Attached:
    """`app`'s part of the adapter, made on the first call."""
    state = attached(app)
    if state is None:
        state = Attached()
        setattr(app, ATTRIBUTE, state)
    return state
