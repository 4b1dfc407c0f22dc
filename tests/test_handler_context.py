"""The engine's Context and the tests' MemoryContext offer handlers the same interface,
HandlerContext's, so a handler tested on one runs on the other."""

from __future__ import annotations

import inspect

import pytest

from app.engine.context import Context
from app.engine.handler_context import HandlerContext
from app.engine.memory import MemoryContext
from tests.handlers.contexts import EngineContext

METHODS = sorted(name for name, member in vars(HandlerContext).items()
                 if inspect.isfunction(member) and not name.startswith("_"))
ATTRIBUTES = sorted(HandlerContext.__annotations__)


def shape(function) -> list[tuple[str, object, object]]:
    """Each parameter's name, kind and default: what a caller relies on."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_the_protocol_names_what_handlers_use():
    assert METHODS == ["backlogged", "cache", "dead_letter", "delete", "forward", "get", "owns",
                       "put", "route", "send", "send_to", "update"]
    assert ATTRIBUTES == ["message", "now_ms", "partition"]


@pytest.mark.parametrize("implementation", [Context, MemoryContext])
@pytest.mark.parametrize("method", METHODS)
def test_each_context_has_every_method_with_the_protocols_parameters(implementation, method):
    protocol_method = getattr(HandlerContext, method)
    own = getattr(implementation, method)
    assert shape(own) == shape(protocol_method)
    returns = inspect.signature(protocol_method).return_annotation
    assert inspect.signature(own).return_annotation == returns


def test_each_context_has_the_attributes_handlers_read():
    engine_context = EngineContext(partition=3, partitions=4, now_ms=5)
    memory_context = MemoryContext(partition=3, partitions=4, now_ms=5)
    for context in (engine_context, memory_context):
        assert (context.partition, context.now_ms, context.message) == (3, 5, None)


def test_the_handler_tests_engine_context_runs_the_engines_own_methods():
    assert issubclass(EngineContext, Context)
    for method in METHODS:
        assert getattr(EngineContext, method) is getattr(Context, method)
