"""What a pipeline declares when it registers: the topics it reads and writes and the
tables it keeps, so the built engine can show its own topology (`cps topology`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pipeline:
    name: str
    inputs: tuple[str, ...]
    # Topics its handlers, timers and hooks send to (the engine's dead letters aside);
    # a sink's queue as the pattern of every sink's (`<prefix>sink.*`).
    outputs: tuple[str, ...]
    tables: tuple[str, ...]
