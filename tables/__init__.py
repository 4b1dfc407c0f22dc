"""Table definitions of the engine, one module per business concept, each with
`define(engine)` (called by app/bootstrap.py) returning its group of tables."""

from __future__ import annotations

from dataclasses import fields
from typing import Any


def every_table(group: Any) -> tuple[Any, ...]:
    """The tables of one module's group (a dataclass of tables), in field order."""
    return tuple(getattr(group, field.name) for field in fields(group))
