"""`cps bench-transactions`: the CPU and time of one Kafka transaction, aiokafka and librdkafka."""

from __future__ import annotations

import click

from app.bench.transactions import CLIENTS, Commits, measure, table
from app.cli.bench import positive_counts, with_broker
from app.config.settings import Settings


@click.command("bench-transactions")
@click.option("--commits", type=click.IntRange(10), default=300, show_default=True,
              help="Transactions per client and size (after 5 left out to warm up).")
@click.option("--records", "records_text", default="10,100,1000", show_default=True,
              help="Records per transaction, comma-separated: one run per size and client.")
@click.option("--rounds", type=click.IntRange(1), default=2, show_default=True,
              help="Times each size runs for both clients, the clients' order swapped in "
              "each round (the broker's speed drifts as it fills).")
@click.pass_obj
def command(settings: Settings, commits: int, records_text: str, rounds: int) -> None:
    """Time Kafka transactions shaped like one engine commit, with each client.

    Each transaction sends the records (200 bytes each) to 2 topics x 8
    partitions, the offsets of 2 input topics x 8 partitions, and commits;
    aiokafka as the engine drives it, librdkafka (confluent-kafka, `pip install
    .[bench]`) with its transactional producer. Reports wall time per commit
    (p50 / p90) and CPU per commit, of the whole process and of the calling
    thread alone (librdkafka works in its own threads, outside the
    interpreter lock the engine's handlers need). Fresh topics each run.
    Without CPS_BROKER it uses (and starts if needed) the local broker of `cps
    kafka start`. The measurement behind docs/exactly-once.md's choice of client.
    """
    sizes = positive_counts(records_text, "--records")
    settings = with_broker(settings)
    results: list[Commits] = []
    for round_number in range(rounds):
        clients = CLIENTS if round_number % 2 == 0 else tuple(reversed(CLIENTS))
        for records in sizes:
            for client in clients:
                click.echo(f"round {round_number + 1}/{rounds}: {client}, {commits} commits "
                           f"of {records:,} records", err=True)
                try:
                    results.append(measure(client, settings.broker, commits=commits,
                                           records=records, round_number=round_number + 1))
                except RuntimeError as exc:
                    raise click.ClickException(str(exc)) from exc
    click.echo(table(sorted(results, key=lambda r: (r.records, r.client, r.round))))

