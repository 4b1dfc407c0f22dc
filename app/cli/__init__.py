"""`cps`: the engine's command line. Each command lives in its own module."""

from __future__ import annotations

import os
import sys

import click

from app.config.settings import Settings, SettingsError, unknown_variables


class _Group(click.Group):
    """Turns configuration errors into one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            click.echo(f"cps: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """CPS attribution and commission engine on Kafka.

    Settings come from CPS_* environment variables (see README.md); any other
    CPS_* variable is named in a warning, with the setting it most likely meant.
    """
    # Before the settings are read: a misspelt variable may be why they are refused.
    for variable in unknown_variables(os.environ):
        click.echo(f"cps: {variable.warning()}", err=True)
    ctx.obj = Settings.from_env()


def _register() -> None:
    from app.cli import (
        bench,
        bench_transactions,
        demo,
        dev,
        kafka,
        link,
        period,
        plans,
        produce,
        promoter_token,
        reconcile,
        settings,
        sinks,
        topology,
        worker,
    )

    for module in (kafka, worker, link, promoter_token, produce, demo, reconcile, sinks, plans,
                   dev, bench, bench_transactions, settings, period, topology):
        main.add_command(module.command)


_register()
