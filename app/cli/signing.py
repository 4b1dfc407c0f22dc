"""What the commands that sign offline (`cps link`, `cps promoter-token`) print."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
import orjson

from app.services.admin import AdminError


def echo_signed(command: str, issue: Callable[[], dict[str, Any]], *, shown_last: str,
                as_json: bool) -> None:
    """Print what `issue` signs: as JSON, or its expiry and then `shown_last` on the last
    line (for scripts); a refused request is one line on stderr and exit status 2."""
    try:
        signed = issue()
    except AdminError as exc:
        click.echo(f"cps {command}: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(orjson.dumps(signed).decode())
    else:
        click.echo(f"expires_ms={signed['expires_ms']}")
        click.echo(signed[shown_last])
