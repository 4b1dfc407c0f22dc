"""Handing a function the parts it names: each pipeline's and web view's `register` says
what it takes in its keyword parameters, and `build` (app/bootstrap.py) calls it with
those of the parts it assembled, by name. A name no part has stops the build at once."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

Result = TypeVar("Result")


class WiringError(TypeError):
    """A function asks for a part by a name nobody provides, or cannot take it by name."""


class Injector:
    """Calls functions with the parts (name -> object) their parameters name."""

    def __init__(self, parts: Mapping[str, Any]) -> None:
        self.parts = dict(parts)

    def __call__(self, function: Callable[..., Result], **links: Any) -> Result:
        """`function(**its parts)`; `links` hands it what no part is (another pipeline's
        handlers), under names no part has."""
        where = f"{function.__module__}.{function.__qualname__}"
        shadowed = sorted(links.keys() & self.parts.keys())
        if shadowed:
            raise WiringError(f"{where}: {', '.join(shadowed)} given, but a part has that name")
        parameters = inspect.signature(function).parameters
        unused = sorted(links.keys() - parameters.keys())
        if unused:
            raise WiringError(f"{where} has no parameter {', '.join(unused)}")
        arguments = {}
        for name, parameter in parameters.items():
            if parameter.kind not in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD):
                raise WiringError(f"{where}: parameter {name} cannot be given by name")
            if name in links:
                arguments[name] = links[name]
            elif name in self.parts:
                arguments[name] = self.parts[name]
            elif parameter.default is parameter.empty:
                raise WiringError(f"{where} asks for {name}, and no part has that name "
                                  f"(the parts: {', '.join(sorted(self.parts))})")
        return function(**arguments)
