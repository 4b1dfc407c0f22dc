"""Every test that runs handlers on the in-memory context checks the pipelines' declarations
against what the handlers do: a topic the code of a pipeline's module sends to, and a table
it reads or writes, is among those the pipeline declared (`engine.pipelines` of a built
engine). Code one pipeline calls in another's module (attribution telling the plans of a
click) answers to that module's pipeline.

Handler tests may name topics without the prefix and `internal.` ("live" for
`cps.internal.live`)."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from fnmatch import fnmatch
from functools import cache, wraps
from pathlib import Path

import pytest

from app.engine.memory import MemoryContext
from app.engine.pipelines import Pipeline

PREFIX = "cps."


@cache
def pipelines_by_module() -> dict[str, Pipeline]:
    """The pipeline each module under agents/ registers, from an engine built as a worker's."""
    from app.bootstrap import build
    from app.config.settings import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="cps-declarations-"))
    services = build(Settings.from_env({"CPS_TOPIC_PREFIX": PREFIX,
                                        "CPS_DATA_DIR": str(data_dir),
                                        "CPS_LINK_SECRET": "unused"}))
    engine = services.engine
    return {engine.handlers[pipeline.inputs[0]].__module__: pipeline
            for pipeline in engine.pipelines.values()}


def declared_output(topic: str, pipeline: Pipeline) -> bool:
    return any(fnmatch(name, output) for output in pipeline.outputs
               for name in (topic, PREFIX + topic, f"{PREFIX}internal.{topic}"))


def _calling_module() -> str | None:
    """The innermost module under agents/ on the stack (None: no pipeline's code runs)."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("agents."):
            return module
        frame = frame.f_back
    return None


@pytest.fixture(autouse=True)
def pipelines_do_what_they_declare(monkeypatch) -> Iterator[None]:
    undeclared: set[str] = set()

    def check(kind: str, name: str) -> None:
        module = _calling_module()
        if module is None:
            return
        pipeline = pipelines_by_module().get(module)
        if pipeline is None:
            undeclared.add(f"{module} registers no pipeline but uses {kind} {name}")
        elif (name not in pipeline.tables if kind == "table"
              else not declared_output(name, pipeline)):
            undeclared.add(f"pipeline {pipeline.name} ({module}) uses {kind} {name}")

    def watching_topic(method):
        @wraps(method)
        def watched(self, topic, *args, **kwargs):
            check("output topic", topic)
            return method(self, topic, *args, **kwargs)
        return watched

    def watching_table(method):
        @wraps(method)
        def watched(self, table, *args, **kwargs):
            check("table", table.name)
            return method(self, table, *args, **kwargs)
        return watched

    for name in ("send", "send_to", "forward"):
        monkeypatch.setattr(MemoryContext, name, watching_topic(getattr(MemoryContext, name)))
    for name in ("get", "put", "update", "delete"):
        monkeypatch.setattr(MemoryContext, name, watching_table(getattr(MemoryContext, name)))
    yield
    assert not undeclared, "undeclared in engine.pipeline(...): " + "; ".join(
        sorted(undeclared))
