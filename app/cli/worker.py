"""`cps worker`: one Faust worker of the engine."""

from __future__ import annotations

import asyncio
import sys

import click

from app.settings import Settings
from app.topology import TopologyError, check_copartitioned, ensure_topics

_LOG_LEVELS = {"debug": "debug", "info": "info", "warn": "warn", "error": "error"}


@click.command("worker")
@click.pass_obj
def command(settings: Settings) -> None:
    """Run a worker: create missing topics, recover tables, process, serve HTTP.

    Start as many as you like with the same CPS_APP_ID (each with its own
    CPS_DATA_DIR and CPS_WEB_PORT); Kafka spreads the partitions over them.
    """
    settings.require_secrets()
    from app.main import app, topics
    from app.services import engine, topology

    try:
        counts = asyncio.run(ensure_topics(
            settings.broker, topics.specs(), partitions=settings.partitions,
            replication=settings.replication,
        ))
        from app import wiring

        wiring.load()
        check_copartitioned(counts, engine.handlers, settings.partitions)
    except TopologyError as exc:
        click.echo(f"cps worker: {exc}", err=True)
        sys.exit(1)
    topology.record(counts)
    (settings.data_dir / "state").mkdir(parents=True, exist_ok=True)

    import faust

    worker = faust.Worker(app, loglevel=_LOG_LEVELS[settings.log_level], quiet=True)
    worker.execute_from_commandline()
