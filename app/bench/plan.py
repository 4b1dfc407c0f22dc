"""One `cps bench` run: prefill, every implementation's drain, then the further phases."""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiokafka.errors import KafkaError

from app.bench.live import measure_live, measure_state
from app.bench.plans import measure_plan
from app.bench.runner import (
    ENGINE,
    Result,
    delete_run_topics,
    engine,
    engine_name,
    implementations,
    is_engine,
    measure,
    prefill,
    run_directory,
)
from app.bench.workload import Shape
from app.config.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Phases:
    """What a run measures beyond draining: see app/bench/live.py."""
    live_seconds: int = 60        # 0: no live phase
    live_rate: int | None = None  # None: half the engine's drain rate
    state_buyers: int = 1_000_000  # 0: no state phase
    plan_members: int = 1_000_000  # 0: no plan phase
    plan_orders: int = 1000  # paid orders after the plan's actions, to convert; 0: none
    # The engine's drain and live phases run once per count, in this order; the first
    # sets the live rate and the ratios.
    engine_workers: tuple[int, ...] = (1,)
    # All implementations at once (a smoke run's speed; their numbers then not comparable).
    side_by_side: bool = False


def run_all(settings: Settings, shape: Shape, names: list[str], *, timeout_s: float,
            report: Callable[[str], None], phases: Phases = Phases()) -> tuple[list[Result], dict]:
    """Every implementation drains the prefilled input, then the live and state phases run.

    Returns the results and what the further phases found (`live_rate`, `state`, `plan`).
    """
    async def main() -> tuple[list[Result], dict]:
        # The output counters start as the topics are created; aiokafka logs the
        # leader elections it waits out as errors, which would only be noise here.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        prefix = f"bench.{secrets.token_hex(3)}."
        outcome = None
        try:
            outcome = await phases_of(prefix)
            return outcome
        finally:
            try:
                deleted, refused = await delete_run_topics(settings, prefix)
                report(f"bench: deleted the run's {deleted} topics (named with {prefix})"
                       + (f"; the broker refused to delete {refused}" if refused else ""))
            except KafkaError as exc:
                report(f"bench: the run's topics (named with {prefix}) not deleted: {exc!r}")
            # The workers' state and logs: kept only when something failed, for its log.
            if outcome is not None and not _failed(*outcome):
                shutil.rmtree(run_directory(prefix), ignore_errors=True)
            elif run_directory(prefix).exists():
                report(f"bench: the workers' logs are kept in {run_directory(prefix)}")

    async def phases_of(prefix: str) -> tuple[list[Result], dict]:
        data = await prefill(settings, shape, prefix, report)
        table = implementations(settings, phases.engine_workers)
        drained = [name for name in names if name != ENGINE] + (
            [engine_name(n) for n in phases.engine_workers] if ENGINE in names else [])

        async def drain(name: str) -> Result:
            report(f"bench: running {table[name].title}")
            result = await measure(settings, table[name], data, report, timeout_s=timeout_s)
            report(f"bench: {name}: " + (result.error or
                   f"{result.events_per_s:,.0f} events/s, {result.cpu_us_per_event:,.0f} "
                   f"CPU-us/event, peak RSS {result.peak_rss_mb:,.0f} MiB"))
            return result

        async def live(result: Result, rate: int) -> None:
            result.delays_ms = await measure_live(
                settings, table[result.name], rate=rate, seconds=phases.live_seconds,
                buyers=shape.buyers, run_prefix=prefix, report=report)
            report(f"bench: {result.name}: delay {result.delays_ms}")

        results = await _each(phases.side_by_side, [lambda n=n: drain(n) for n in drained])
        further: dict = {"side_by_side": phases.side_by_side}
        first = next((r for r in results if is_engine(r.name)), None)
        rate = phases.live_rate or (int(first.events_per_s / 2)
                                    if first and not first.error else None)
        if phases.live_seconds and rate:
            further["live_rate"] = rate
            further["live_rate_set"] = phases.live_rate is not None
            await _each(phases.side_by_side, [lambda r=r: live(r, rate) for r in results])
        if phases.state_buyers and ENGINE in names:
            further["state"] = await measure_state(
                settings, engine(settings), buyers=phases.state_buyers, run_prefix=prefix,
                report=report, timeout_s=timeout_s)
            report(f"bench: state: {further['state']}")
        if phases.plan_members and ENGINE in names:
            further["plan"] = await measure_plan(
                settings, engine(settings), members=phases.plan_members, run_prefix=prefix,
                report=report, timeout_s=timeout_s, orders=phases.plan_orders)
            report(f"bench: plan: {further['plan']}")
        return results, further
    return asyncio.run(main())


def _failed(results: list[Result], further: dict) -> bool:
    """Whether any implementation or phase of a run reported an error."""
    phases = [result.delays_ms for result in results] + [
        value for value in further.values() if isinstance(value, dict)]
    return any(result.error for result in results) or any("error" in phase for phase in phases)


async def _each(together: bool, jobs: list[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run the jobs one after the other, or all at once when `together`."""
    if together:
        return list(await asyncio.gather(*(job() for job in jobs)))
    return [await job() for job in jobs]
