"""`cps kafka start|stop|status`: the local single-node broker."""

from __future__ import annotations

import sys

import click

from app.broker.local import BrokerError, LocalBroker
from app.settings import Settings


def _broker(settings: Settings, port: int | None) -> LocalBroker:
    return LocalBroker(settings.kafka_home, settings.kafka_port if port is None else port,
                       report=lambda line: click.echo(line, err=True))


@click.group("kafka")
def command() -> None:
    """Run the local Kafka broker (KRaft, single node, 127.0.0.1).

    The broker jars are fetched from Maven Central with Maven into
    CPS_KAFKA_HOME once; data and logs live there too, per port.
    """


_port_option = click.option(
    "--port", type=click.IntRange(0, 65535), default=None,
    help="Broker port (default CPS_KAFKA_PORT, 9092; 0 picks a free one).",
)


@command.command("start")
@_port_option
@click.option("--fresh", is_flag=True, help="Delete the broker's data before starting.")
@click.pass_obj
def start(settings: Settings, port: int | None, fresh: bool) -> None:
    """Start the broker, or reuse the running one; last line is bootstrap=HOST:PORT."""
    try:
        state = _broker(settings, port).start(fresh=fresh)
    except BrokerError as exc:
        click.echo(f"cps kafka start: {exc}", err=True)
        sys.exit(1)
    click.echo(f"kafka {state.version} running, pid {state.pid}")
    click.echo(f"bootstrap={state.bootstrap}")


@command.command("stop")
@_port_option
@click.pass_obj
def stop(settings: Settings, port: int | None) -> None:
    """Stop the broker that `cps kafka start` began on this port."""
    state = _broker(settings, port).stop()
    click.echo("no broker was running" if state is None else f"stopped broker pid {state.pid}")


@command.command("status")
@_port_option
@click.pass_obj
def status(settings: Settings, port: int | None) -> None:
    """Tell whether the broker runs; exit code 1 when it does not."""
    state = _broker(settings, port).running()
    if state is None:
        click.echo("not running")
        sys.exit(1)
    click.echo(f"kafka {state.version} running, pid {state.pid}")
    click.echo(f"bootstrap={state.bootstrap}")
