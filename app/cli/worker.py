"""`cps worker`: one Faust worker of the engine."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import threading

import click

from app.config.settings import Settings, unknown_variables
from app.kafka.topics import Role, TopicSpec
from app.kafka.topology import TopologyError, check_copartitioned, ensure_topics

_LOG_LEVELS = {"debug": "debug", "info": "info", "warn": "warn", "error": "error"}
# At debug level these quote secrets (SPEC 8): aiokafka's producer each record's key and
# value (a sink's secret and URL on their way to the configuration topic), its connections
# each request (a SASL PLAIN login holds the password). They stay at info whatever
# CPS_LOG_LEVEL says.
LOGGERS_QUOTING_SECRETS = ("aiokafka.producer.producer", "aiokafka.conn")
# The exit status of a worker that must be restarted from committed state (EX_TEMPFAIL).
EXIT_RESTART = 75
# How long such a worker may take to stop before it is ended at once, as by a kill.
STOP_GRACE_S = 30.0


@click.command("worker")
@click.pass_obj
def command(settings: Settings) -> None:
    """Run a worker: create missing topics, recover tables, process, serve HTTP.

    Start as many as you like with the same CPS_APP_ID (each with its own
    CPS_DATA_DIR and CPS_WEB_PORT); Kafka spreads the partitions over them.
    Exit status 75: the worker could no longer write a partition it owns (its
    transactions were fenced) and must be started again; it then recovers from
    what it committed.
    """
    settings.require_secrets()
    # Python's young-generation collection runs every 700 allocations of container
    # objects; a worker allocates millions a second (records, messages, futures), so the
    # collector took a quarter of its time. Measured with `cps bench --plan-members 100000`:
    # 3,134 actions/s at the default, 3,902 with 100,000 (older generations keep their ratios).
    gc.set_threshold(100_000, 10, 10)
    from app.bootstrap import build
    from app.engine.faust.app import Worker, leader_topic
    from app.kafka.connection import BrokerUnreachable

    services = build(settings)
    try:
        asyncio.run(services.connection.check(timeout_s=60))
    except BrokerUnreachable as exc:
        click.echo(f"cps worker: {exc}", err=True)
        sys.exit(1)
    engine, topics = services.engine, services.topics
    try:
        # Changelogs too, in the same request: Faust would create them one by one.
        changelogs = [TopicSpec(table.changelog_topic, Role.CHANGELOG) for table in engine.tables]
        counts = asyncio.run(ensure_topics(
            services.connection, [*topics.specs(), *changelogs], partitions=settings.partitions,
            replication=settings.replication,
        ))
        check_copartitioned(counts, [*engine.handlers, *(s.name for s in changelogs)],
                            settings.partitions)
        asyncio.run(ensure_topics(
            services.connection, [TopicSpec(leader_topic(settings), Role.INTERNAL)],
            partitions=1, replication=settings.replication))
    except TopologyError as exc:
        click.echo(f"cps worker: {exc}", err=True)
        sys.exit(1)
    services.topology.record(counts)
    (settings.data_dir / "state").mkdir(parents=True, exist_ok=True)

    worker = Worker(services.app, loglevel=_LOG_LEVELS[settings.log_level], quiet=True,
                    warnings=[variable.warning() for variable in unknown_variables(os.environ)])
    for name in LOGGERS_QUOTING_SECRETS:
        logging.getLogger(name).setLevel(logging.INFO)
    # Faust's start-up spinner sets the root logger to DEBUG for good, so every
    # debug call of aiokafka built a log record for nothing: 8 % of the CPU.
    worker.spinner = None
    engine.on_failure = _stop_for_restart
    try:
        worker.execute_from_commandline()
    except SystemExit:
        if engine.failure is not None:
            sys.exit(EXIT_RESTART)
        raise


def _stop_for_restart(cause: BaseException) -> None:
    """End the process so that its supervisor starts it again from committed state.

    Stopped as by SIGTERM, the worker leaves its group at once, so its partitions
    move without waiting for the session timeout; a stop that hangs (a crashed
    Faust app's may) is cut short after STOP_GRACE_S, which is as safe as a kill.
    """
    click.echo(f"cps worker: stopping to restart from committed state ({cause!r}); "
               f"exit status {EXIT_RESTART}", err=True)
    deadline = threading.Timer(STOP_GRACE_S, os._exit, args=(EXIT_RESTART,))
    deadline.daemon = True  # a stop done in time does not wait for it
    deadline.start()
    os.kill(os.getpid(), signal.SIGTERM)
