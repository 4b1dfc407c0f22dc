"""`cps bench`: the engine against the raw Kafka limit, a peer and naive Faust, same run."""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import asdict, replace
from pathlib import Path

import click
import orjson

from app.bench.plan import Phases, run_all
from app.bench.plans import DEMO_ORDERS_PER_S
from app.bench.report import as_json, markdown, write_section
from app.bench.workload import Shape
from app.broker.local import BrokerError, LocalBroker
from app.config.settings import Settings

NAMES = ("raw", "peer", "naive", "engine")
DEFAULT = Shape()
QUICK = Shape(events=10_000, buyers=5_000, shops=100)
DEFAULT_PHASES = Phases()
# A smoke run in under a minute: everything side by side, the live phase at a fixed low rate.
QUICK_PHASES = Phases(live_seconds=5, live_rate=200, state_buyers=10_000, plan_members=5_000,
                      plan_orders=300, side_by_side=True)


@click.command("bench")
@click.option("--events", type=click.IntRange(1000), default=DEFAULT.events, show_default=True,
              help="Input events (about 70 % clicks, 30 % order events).")
@click.option("--buyers", type=click.IntRange(1), default=DEFAULT.buyers, show_default=True)
@click.option("--quick", is_flag=True,
              help=f"{QUICK.events:,} events, a smoke run in under a minute: the implementations "
              "run side by side, so its numbers are not comparable.")
@click.option("--only", default=",".join(NAMES), show_default=True,
              help="Implementations to run, comma-separated: raw, peer, naive, engine.")
@click.option("--live-seconds", type=click.IntRange(0), default=DEFAULT_PHASES.live_seconds,
              show_default=True, help="Length of the live phase (delays); 0 skips it.")
@click.option("--live-rate", type=click.IntRange(1), default=None,
              help="Events/s of the live phase.  [default: half the engine's drain rate]")
@click.option("--state-buyers", type=click.IntRange(0), default=DEFAULT_PHASES.state_buyers,
              show_default=True, help="Distinct buyers the engine takes into its state in "
              "the memory phase (one click each, all written at once); 0 skips it.")
@click.option("--plan-members", type=click.IntRange(0), default=DEFAULT_PHASES.plan_members,
              show_default=True, help="Members a `now` plan acts on in the plan phase (every "
              "one gets an action through a local webhook); 0 skips it.")
@click.option("--plan-orders", type=click.IntRange(0), default=DEFAULT_PHASES.plan_orders,
              show_default=True, help="After the plan's actions, members who pay an order "
              f"each at the plan's shop, at the demo's order rate ({DEMO_ORDERS_PER_S}/s), timed "
              "from each order's attribution to its `converted` record; 0 skips it.")
@click.option("--workers", "workers_text", default="1", show_default=True,
              help="Engine worker processes in one consumer group, each with its own data "
              "directory and web port; a comma-separated list (e.g. 1,2,4) runs the engine's "
              "drain and live phases once per count, the first count setting the live rate "
              "and the ratios. CPU is summed over the workers, peak RSS is the largest's.")
@click.option("--timeout-s", type=click.IntRange(10), default=3600, show_default=True,
              help="Give up on an implementation that has not finished after this long.")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              default=Path("artifacts/bench.json"), show_default=True)
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), default=None,
              help="Also write the results as Markdown into this file (e.g. BENCHMARKS.md), "
              "replacing the previous results and keeping the text around them.")
@click.pass_obj
def command(settings: Settings, events: int, buyers: int, quick: bool, only: str,
            live_seconds: int, live_rate: int | None, state_buyers: int, plan_members: int,
            plan_orders: int, workers_text: str, timeout_s: int,
            json_path: Path, markdown_path: Path | None) -> None:
    """Fill the input topics once, then time each implementation draining them.

    a. raw: a bare aiokafka loop with rocksdict (the machine's limit);
    b. peer: the same attribution with Quix Streams (`pip install .[bench]`);
    c. naive: a plain Faust agent with a Faust table; d. engine: `cps worker`.
    All run the engine's own attribution rules over the same bytes, one after
    the other on the same broker. Reports events/s, CPU time per event, peak
    memory and the engine's ratios to the others. Then each is fed live at
    half the engine's drain rate for the attribution delay (from an order's
    time to its committed attribution) and its CPU per event while live, with
    how busy the machine was; the engine drains one click each
    of many buyers written at once for its memory with them in state; and a
    `now` operation plan acts on many members through a local webhook (time
    to the last action, actions/s, peak RSS), then some of them pay an order
    each at the demo's order rate (the time from each order's attribution to
    its `converted` record, and whether each came exactly once). At the end
    it deletes the run's topics, and the workers' state and logs in $TMPDIR/cps-bench.<run>
    unless something failed. Without CPS_BROKER it uses (and starts if needed) the local broker of
    `cps kafka start`. It measures over PLAINTEXT only: the peers it compares
    with take a bootstrap address and nothing else.
    """
    names = [name.strip() for name in only.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("name at least one implementation", param_hint="--only")
    unknown = [name for name in names if name not in NAMES]
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; choose from {NAMES}",
                                 param_hint="--only")
    workers = positive_counts(workers_text)
    shape = QUICK if quick else Shape(events=events, buyers=buyers)
    settings = with_broker(settings)
    phases = replace(QUICK_PHASES if quick else Phases(live_seconds, live_rate, state_buyers,
                                                       plan_members, plan_orders),
                     engine_workers=workers)
    results, further = run_all(settings, shape, names, timeout_s=timeout_s, report=click.echo,
                               phases=phases)
    run = as_json(results, further, "cps " + shlex.join(sys.argv[1:]), asdict(shape))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_bytes(orjson.dumps(run, option=orjson.OPT_INDENT_2))
    text = markdown(run)
    click.echo(text)
    if markdown_path is not None:
        write_section(markdown_path, text)
    click.echo(f"results: {json_path}" + (f", {markdown_path}" if markdown_path else ""))
    state, plan = further.get("state", {}), further.get("plan", {})
    conversions = plan.get("conversions", {})
    if any(result.error or result.delays_ms.get("error") for result in results) or (
            state.get("error") or state.get("dead_letters") or plan.get("error")) or (
            conversions and not conversions["exactly_once"]):
        sys.exit(1)


def with_broker(settings: Settings) -> Settings:
    """`settings` on the broker to measure on: CPS_BROKER, or the local broker (started
    if needed). PLAINTEXT only: the peers measured take a bootstrap address alone."""
    if settings.kafka_security_protocol != "PLAINTEXT":
        raise click.ClickException(
            f"CPS_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}: the benchmark "
            "measures over PLAINTEXT only (its peers take no credentials); unset it")
    if os.environ.get("CPS_BROKER"):
        return settings
    try:
        state = LocalBroker(settings.kafka_home, settings.kafka_port, report=click.echo).start()
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    return replace(settings, broker=state.bootstrap)


def positive_counts(text: str, option: str = "--workers") -> tuple[int, ...]:
    """A comma-separated option of counts (`--workers`): distinct positive whole numbers,
    in the order given."""
    counts: list[int] = []
    for part in text.split(","):
        try:
            count = int(part)
        except ValueError:
            count = 0
        if count < 1:
            raise click.BadParameter(f"{part.strip()!r} is not a positive whole number",
                                     param_hint=option)
        if count not in counts:
            counts.append(count)
    return tuple(counts)
