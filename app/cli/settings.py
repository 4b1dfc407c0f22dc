"""`cps settings`: every setting's value and where it came from, or README's settings table."""

from __future__ import annotations

import click

from app.config.settings import Settings, markdown_table


@click.command("settings")
@click.option("--markdown", is_flag=True,
              help="Print README.md's settings table (variable, meaning, default) instead.")
def command(markdown: bool) -> None:
    """Show every CPS_* setting, one a line: variable, value, and whether the value came
    from the environment, the default, or a default derived from another setting.

    Secrets (admin token, link secrets, SASL password) show as (hidden) when set.
    Settings that would be refused (a malformed value, TLS or SASL settings the security
    protocol would ignore) stop this command, like every other, with the reason.
    """
    if markdown:
        click.echo(markdown_table(), nl=False)
        return
    settings, sources = Settings.from_env_with_sources()
    rows = settings.describe(sources)
    name_width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    for name, value, source in rows:
        click.echo(f"{name:<{name_width}}  {value:<{value_width}}  {source}")
