"""What a pipeline declares when it registers: the topics it reads and writes and the
tables it keeps, so the built engine can show its own topology (`cps topology`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pipeline:
    name: str
    inputs: tuple[str, ...]
    # Topics the code of its module sends to (handlers, timers, hooks, and what another
    # pipeline calls in place), dead letters aside; sink queues as `<prefix>sink.*`.
    outputs: tuple[str, ...]
    tables: tuple[str, ...]


def describe(pipelines: Iterable[Pipeline], deadletter_topic: str) -> str:
    """The pipelines as text: what each reads, writes and keeps, one a paragraph."""
    lines = []
    for pipeline in pipelines:
        lines += [pipeline.name,
                  f"  reads   {', '.join(pipeline.inputs)}",
                  f"  writes  {', '.join(pipeline.outputs) or '-'}",
                  f"  tables  {', '.join(pipeline.tables) or '-'}",
                  ""]
    lines.append(f"every pipeline dead-letters bad input to {deadletter_topic}")
    return "\n".join(lines) + "\n"


def mermaid(pipelines: Iterable[Pipeline], deadletter_topic: str) -> str:
    """The pipelines as a Mermaid flowchart: topics in rounded boxes, pipelines (with their
    tables) in boxes, an arrow wherever a record goes."""
    lines = ["flowchart LR"]
    topics: dict[str, str] = {}

    def topic(name: str) -> str:
        if name not in topics:
            topics[name] = f"t{len(topics)}"
            lines.append(f'  {topics[name]}(["{name}"])')
        return topics[name]

    for pipeline in pipelines:
        node = f"p_{pipeline.name}"
        tables = f"<br/><small>{', '.join(pipeline.tables)}</small>" if pipeline.tables else ""
        lines.append(f'  {node}[["<b>{pipeline.name}</b>{tables}"]]')
        lines += [f"  {topic(name)} --> {node}" for name in pipeline.inputs]
        lines += [f"  {node} --> {topic(name)}" for name in pipeline.outputs]
    lines.append(f'  dead(["{deadletter_topic}<br/><small>bad input of every pipeline</small>"])')
    return "\n".join(lines) + "\n"
