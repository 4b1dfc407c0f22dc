"""`cps kafka start|stop|status`: the local single-node broker."""

from __future__ import annotations

import shlex
import sys

import click

from app.broker.local import BrokerError, BrokerState, LocalBroker
from app.config.settings import Settings


def _broker(settings: Settings, port: int | None) -> LocalBroker:
    return LocalBroker(settings.kafka_home, settings.kafka_port if port is None else port,
                       report=lambda line: click.echo(line, err=True))


def _describe(state: BrokerState) -> None:
    """The running broker, a secure one's client settings as `export` lines, and last
    `bootstrap=HOST:PORT` (scripts take it with `tail -n 1`)."""
    security = " (SASL_SSL, SCRAM-SHA-512)" if state.secure else ""
    click.echo(f"kafka {state.version} running, pid {state.pid}{security}")
    for name, value in state.client_settings().items():
        click.echo(f"export {name}={shlex.quote(value)}")
    click.echo(f"bootstrap={state.bootstrap}")


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
@click.option("--secure", is_flag=True,
              help="Serve clients over SASL_SSL with a SCRAM-SHA-512 login (needs openssl).")
@click.pass_obj
def start(settings: Settings, port: int | None, fresh: bool, secure: bool) -> None:
    """Start the broker, or reuse the running one; last line is bootstrap=HOST:PORT.

    With --secure the port takes SASL_SSL only: a throwaway CA and a certificate
    for 127.0.0.1 and localhost, and a SCRAM-SHA-512 user with a random password,
    are made when the data is formatted and kept with it. The output then holds
    the client settings as `export CPS_KAFKA_...=...` lines, before the last line
    (`eval "$(cps kafka start --secure | grep ^export)"` sets them).

    A port's data is either plain or secure: starting it the other way is refused
    unless --fresh deletes the data first. More in docs/kafka-security.md.
    """
    try:
        state = _broker(settings, port).start(fresh=fresh, secure=secure)
    except BrokerError as exc:
        click.echo(f"cps kafka start: {exc}", err=True)
        sys.exit(1)
    _describe(state)


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
    """Tell whether the broker runs (with a secure one's client settings, as `start` prints
    them); exit code 1 when it does not."""
    state = _broker(settings, port).running()
    if state is None:
        click.echo("not running")
        sys.exit(1)
    _describe(state)
