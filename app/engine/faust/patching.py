"""The two lists every adapter module declares, read by adapter.py."""

from __future__ import annotations

from typing import Any, NamedTuple


class Patch(NamedTuple):
    """`owner.name = replacement`, done once per process by `adapter.install()`."""

    owner: Any  # a class or a module
    name: str
    replacement: Any


# (owner, name): a private attribute a module reads, calls or replaces; `adapter.missing()`
# names those an upgrade of Faust or aiokafka removed.
PrivateAttribute = tuple[Any, str]
