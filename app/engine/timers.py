"""Timers (`every tick`) and the hooks of barriers, run in a partition under the same rules
as an event (`Timers`): their work is committed like an event's, so a timeout decided
by the wall clock is committed exactly once too."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from app.engine.assignment import Assignment
from app.engine.checkpoint import Checkpoint
from app.engine.handler_context import Tick
from app.engine.registration import Registry

logger = logging.getLogger(__name__)


class Timers:
    """Runs the registered timers in every owned partition each `tick_interval_s`."""

    def __init__(self, app: Any, *, registry: Registry, assignment: Assignment,
                 checkpoint: Checkpoint, ready: Callable[[], bool]) -> None:
        self.app = app
        self.registry = registry
        self.assignment = assignment
        self.checkpoint = checkpoint
        self.ready = ready
        self.tick_interval_s = 0.25

    async def run(self, should_stop: Callable[[], bool]) -> None:
        while not should_stop():
            await asyncio.sleep(self.tick_interval_s)
            ticks = self.registry.ticks
            if not ticks or not self.may_tick():
                continue
            for partition in sorted(self.assignment.owned() - self.checkpoint.lost):
                for tick in ticks:
                    self.run_in_partition(partition, tick)

    def run_in_partition(self, partition: int, action: Tick) -> bool:
        """Run a timer or a barrier's hook in `partition`, its work committed like an event's;
        False when the partition cannot run it now (not ready, rebalancing, not owned)."""
        checkpoint = self.checkpoint
        if (not self.may_tick() or partition in checkpoint.lost
                or partition not in self.assignment.owned()):
            return False
        context = checkpoint.context(partition)
        context.message = None
        context.now_ms = int(time.time() * 1000)
        try:
            action(context)
        except Exception:
            logger.exception("timer or hook %s of partition %s failed",
                             getattr(action, "__name__", action), partition)
        checkpoint.count_records(context)
        work = context.work
        if work:
            checkpoint.work_added(work)
            if checkpoint.urgent:
                checkpoint.commits_due.set()
        return True

    def may_tick(self) -> bool:
        app = self.app
        return (self.ready() and not app.rebalancing and app.flow_control.is_active()
                and app.tables.recovery.completed.is_set())
