"""The adapter's entry points: `install()` once per process, `attach(app)` per engine, and
the check that the libraries still have every private part the adapter uses.

Each module of this package adapts one behaviour of Faust or aiokafka and
says which upstream bug or limit it works around; each declares the class
and module attributes it replaces (`PATCHES`) and the private attributes it
reads, calls or replaces (`PRIVATE_ATTRIBUTES`). Faust and aiokafka are
capped below their next minor versions in pyproject.toml for this reason;
after an upgrade, run tests/test_adapter.py first: it names what went away,
and `require()` stops a worker at start instead of failing later.
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

from app.engine.faust import (
    changelog_ends,
    delivery,
    fetch_batching,
    fetch_sessions,
    fetch_state,
    producers,
    rebalance_gc,
    recovery_end,
    resume_offsets,
    rocksdb_memory,
    slot_assignment,
    slot_producers,
    table_access,
    transaction_pacing,
)
from app.engine.faust.attached import Attached, attach_state
from app.engine.faust.patching import Patch, PrivateAttribute

ADAPTERS: tuple[ModuleType, ...] = (
    delivery, fetch_state, slot_producers, slot_assignment, fetch_batching, fetch_sessions,
    transaction_pacing, rocksdb_memory, rebalance_gc, resume_offsets, changelog_ends,
    recovery_end, producers, table_access)


def patches() -> tuple[Patch, ...]:
    return tuple(patch for module in ADAPTERS for patch in module.PATCHES)


def private_attributes() -> tuple[PrivateAttribute, ...]:
    return tuple(dict.fromkeys(pair for module in ADAPTERS
                               for pair in module.PRIVATE_ATTRIBUTES))


def install() -> None:
    """Check the libraries, then make every replacement of `patches()`; a second call (a
    second engine in the process) finds them made and changes nothing."""
    require()
    for owner, name, replacement in patches():
        if getattr(owner, name) is not replacement:
            setattr(owner, name, replacement)


def attach(app: Any, *, fetch_max_wait_ms: int, rocksdb_memory_bytes: int) -> Attached:
    """Adapt one engine's Faust app: its fetch wait, its tables' memory budget and its
    recovery watcher, kept on the app (attached.py); the engine itself comes with
    `delivery.deliver_to`."""
    state = attach_state(app)
    state.fetch_max_wait_ms = fetch_max_wait_ms
    rocksdb_memory.share(app, rocksdb_memory_bytes)
    recovery_end.watch_recovery(app)
    return state


def missing() -> list[str]:
    """`Owner.name` of every private attribute the installed libraries no longer have."""
    return [f"{_qualified(owner)}.{name}"
            for owner, name in private_attributes() if not _has(owner, name)]


def require() -> None:
    gone = missing()
    if gone:
        raise RuntimeError("this Faust/aiokafka version lacks what the engine relies on: "
                           + ", ".join(gone) + " (see app/engine/faust/)")


def _qualified(owner: Any) -> str:
    if inspect.ismodule(owner):
        return owner.__name__
    return f"{owner.__module__}.{owner.__qualname__}"


def _has(owner: Any, name: str) -> bool:
    if hasattr(owner, name):
        return True
    # Attributes set on instances: look for the assignment in the class's own code.
    for klass in getattr(owner, "__mro__", ()):
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if f"self.{name} =" in source or f"self.{name}:" in source:
            return True
    return False
