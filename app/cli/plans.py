"""`cps plans retry PLAN`: queue a plan's failed actions again."""

from __future__ import annotations

import asyncio
import sys

import click

from app.cli.sinks import requeue_dead_letters
from app.config.settings import Settings


@click.group("plans")
def command() -> None:
    """Operate operation plans (SPEC 13)."""


@command.command("retry")
@click.argument("plan")
@click.pass_obj
def retry(settings: Settings, plan: str) -> None:
    """Queue every failed action of PLAN again on its sink.

    An action fails when its sink gave up on it (after its last retry, or a
    refusal) or when its sink did not exist; it is then on the sinks'
    dead-letter topic and recorded `failed`. Retried actions keep their
    action id, so the receiver's Idempotency-Key drops any it already took;
    delivered, they are recorded `sent` or `granted`. Actions whose sink
    still does not exist stay failed (the command names the sink). Actions
    of a stopped or deleted plan are not sent. Exits 1 when nothing was
    queued.
    """
    requeued = asyncio.run(requeue_dead_letters(settings, lambda letter: (
        letter.get("stream") == "plan_actions"
        and (letter.get("record") or {}).get("event", {}).get("plan_id") == plan)))
    click.echo(f"requeued {requeued.count} failed actions of plan {plan!r}")
    requeued.report_waiting()
    if requeued.count == 0:
        sys.exit(1)
