"""What a handler may use of its partition: the `HandlerContext` protocol.

The engine's `Context` (context.py) and the tests' `MemoryContext`
(memory.py) both implement it; tests/handlers/ runs every handler test on
both, and tests/test_handler_context.py checks that neither drifts from it.
Handlers, timers and the hooks of barriers take a `HandlerContext`, never
one of the two classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

Cached = TypeVar("Cached")


class Table(Protocol):
    """A state table as the context reads it (`StateTable`, or `MemoryTable` in tests);
    the context keys its uncommitted writes by the table object."""

    def read(self, partition: int, key: bytes) -> Any:
        """The committed value of `key` in `partition` (None: there is none)."""


class InputMessage(Protocol):
    """The message being handled, as much of it as handlers and dead letters read."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


class HandlerContext(Protocol):
    """A handler's view of its partition: state, outputs, dead letters and the clock.

    `message` is the message being handled (None in a timer or a hook),
    `now_ms` the wall clock when the handler was called.
    """

    partition: int
    now_ms: int
    message: InputMessage | None

    def get(self, table: Table, key: bytes) -> Any:
        """The value of `key` as this partition's work leaves it (None: there is none)."""

    def update(self, table: Table, key: bytes, copy: Callable[[Any], Any],
               change: Callable[[Any], None]) -> bool:
        """Apply `change` to the value in place (False: there is none)."""

    def put(self, table: Table, key: bytes, value: Any) -> None: ...

    def delete(self, table: Table, key: bytes) -> None: ...

    def backlogged(self) -> bool:
        """Whether a timer or hook should stop producing and leave the rest for its next run."""

    def owns(self, key: bytes) -> bool:
        """Whether `key` belongs to this partition."""

    def route(self, key: bytes, topic: str, value: bytes, *, at_once: bool = False) -> bool:
        """True when `key` belongs here; otherwise re-key `value` onto `topic`, False."""

    def send(self, topic: str, key: bytes, value: bytes) -> int:
        """Queue a record for the partition's transaction; returns its partition."""

    def send_to(self, topic: str, partition: int, key: bytes | None, value: bytes) -> None: ...

    def forward(self, topic: str, key: bytes, value: bytes) -> None:
        """Send a record at once, outside the transaction (idempotent readers only)."""

    def dead_letter(self, error: str, source: InputMessage | None = None) -> None:
        """Dead-letter the current message (or `source`, seen earlier) with a reason."""

    def cache(self, factory: Callable[[HandlerContext], Cached]) -> Cached:
        """A per-partition object derived from committed state, rebuilt after a rebalance."""


Handler = Callable[[HandlerContext, bytes | None, bytes | None], None]
Tick = Callable[[HandlerContext], None]
Hook = Callable[[HandlerContext, int], None]  # a barrier's hook: (context, ticket)
