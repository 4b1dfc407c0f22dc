"""`cps reconcile`: check the money invariants from the topics alone."""

from __future__ import annotations

import asyncio
import sys
import time

import click

from app.config.settings import Settings
from app.kafka.connection import KafkaConnection, started
from app.kafka.topics import Topics
from app.services.reconcile import ConsumedRecord, reconcile


@click.command("reconcile")
@click.option("--since-ms", type=int, default=None,
              help="Check only orders whose first event was written at or after this time.")
@click.option("--until-ms", type=int, default=None,
              help="Check only orders whose first event was written before this time.")
@click.option("--in-flight-s", type=click.IntRange(0), default=60, show_default=True,
              help="Skip orders with an event newer than this: they may still be in process.")
@click.pass_obj
def command(settings: Settings, since_ms: int | None, until_ms: int | None,
            in_flight_s: int) -> None:
    """Recompute every order's money from the input topics and compare with the outputs.

    Checks: exactly one attribution per order; for every line, pool and
    participant the published deltas sum to the split of the net amount;
    settlements (frozen + adjusted + clawbacks) equal the commissions per
    account, each settled amount equals what was frozen, nothing settled
    before its due time; no event published twice. Prints a summary and
    every difference; exit code 1 when there is any.

    The recomputation uses the engine's own billing rules, so a mistake in
    them gives the same wrong amounts on both sides and passes; settlement
    states and due times are taken as published. Nor does it see which click
    an order went to, or a due payee left unsettled. It finds events lost,
    doubled or forged and sums that do not add up.
    """
    topics = Topics(settings.topic_prefix)
    names = [*topics.config_topics, topics.orders, topics.attributions, topics.commissions,
             topics.settlements]
    started = time.time()
    records = asyncio.run(_read_all(KafkaConnection.from_settings(settings), names))
    report = reconcile(records, topics, now_ms=int(time.time() * 1000),
                       in_flight_ms=in_flight_s * 1000, since_ms=since_ms, until_ms=until_ms)
    click.echo(f"read {len(records)} records in {time.time() - started:.1f}s")
    for name, count in report.counts.items():
        click.echo(f"  {name}: {count}")
    for difference in report.differences:
        click.echo(f"DIFFERENCE {difference}")
    if report.clean:
        click.echo("reconcile: clean")
    else:
        click.echo(f"reconcile: {len(report.differences)} differences")
        sys.exit(1)


async def _read_all(connection: KafkaConnection, names: list[str]) -> list[ConsumedRecord]:
    """Every committed record of the topics up to their end at the start of the read."""
    consumer = connection.consumer(*names, group_id=None, enable_auto_commit=False,
                                   isolation_level="read_committed",
                                   auto_offset_reset="earliest", max_poll_records=10_000)
    records: list[ConsumedRecord] = []
    async with started(consumer):
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        ends = await consumer.end_offsets(list(consumer.assignment()))
        starts = await consumer.beginning_offsets(list(consumer.assignment()))
        total = sum(ends[tp] - starts[tp] for tp in ends) or 1
        remaining = {tp for tp, end in ends.items() if end > starts[tp]}
        for tp in set(ends) - remaining:
            consumer.pause(tp)
        progress = _ProgressBar(total)
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, messages in batch.items():
                records.extend(ConsumedRecord(m.topic, m.partition, m.offset, m.timestamp, m.key,
                                      m.value) for m in messages if m.offset < ends[tp])
                if tp in remaining and await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
            progress.draw(len(records))
        progress.close()
    return records


class _ProgressBar:
    """`[####......] read N of about M` on stderr while reading, when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.enabled = sys.stderr.isatty()
        self.last = 0.0

    def draw(self, done: int) -> None:
        if not self.enabled or time.monotonic() - self.last < 0.2:
            return
        self.last = time.monotonic()
        filled = min(30, 30 * done // self.total)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] read {done} of about "
                         f"{self.total}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
