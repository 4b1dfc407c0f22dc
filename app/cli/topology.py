"""`cps topology`: the pipelines of the engine as built, with their topics and tables."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import click

from app.config.settings import Settings
from app.engine.pipelines import describe, mermaid


@click.command("topology")
@click.option("--mermaid", "as_mermaid", is_flag=True,
              help="Print a Mermaid flowchart (docs/architecture.md's picture) instead.")
@click.pass_obj
def command(settings: Settings, as_mermaid: bool) -> None:
    """Show each pipeline of the engine: the topics it reads and writes and its tables.

    Drawn from the engine `cps worker` would run with these settings (topic
    names carry CPS_TOPIC_PREFIX), built without a broker; `<prefix>sink.*`
    stands for every sink's queue.
    """
    from app.bootstrap import build

    # The engine is built, never run: no secret is used and nothing is kept on disk.
    with tempfile.TemporaryDirectory(prefix="cps-topology-") as data_dir:
        engine = build(replace(settings, data_dir=Path(data_dir),
                               link_secret=settings.link_secret or "unused")).engine
    render = mermaid if as_mermaid else describe
    click.echo(render(engine.pipelines.values(), engine.deadletter_topic), nl=False)
