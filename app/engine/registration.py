"""What the agents register with the engine before the worker starts (`Registry`): the
state tables, the handler of each topic, the timers and the gates that hold processing
back until they open."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from app.engine.handler_context import Handler, Tick
from app.engine.pipelines import Pipeline
from app.engine.state import StateTable


class Registry:
    """The engine's tables, handlers (topic -> handler), timers and gates."""

    def __init__(self, app: Any, *, partitions: int, rocksdb_options: dict[str, Any],
                 until_stopped: Callable[[], Awaitable[Any]]) -> None:
        self.app = app
        self.partitions = partitions
        self.rocksdb_options = rocksdb_options
        self.until_stopped = until_stopped  # what the pipelines' Faust agents wait on
        self.tables: list[StateTable] = []
        self.handlers: dict[str, Handler] = {}
        self.pipelines: dict[str, Pipeline] = {}
        # The first topic registered; every topic is co-partitioned with it, so its
        # assignment is the engine's (assignment.py) and its producer ids fence the slots.
        self.anchor_topic: str | None = None
        self.ticks: list[Tick] = []
        self.gates: list[Callable[[], bool]] = []
        self._opened = False

    def state_table(self, name: str, *, encode: Callable[[Any], bytes],
                    decode: Callable[[bytes], Any]) -> StateTable:
        table = self.app.Table(name, partitions=self.partitions, key_type=bytes,
                               value_type=bytes, options=self.rocksdb_options,
                               help=f"engine state: {name}")
        # Faust would pick json for bytes; the changelog carries our own encoding.
        table.key_serializer = table.value_serializer = "raw"
        state = StateTable(name, table, encode, decode)
        self.tables.append(state)
        return state

    def pipeline(self, name: str, handlers: dict[str, Handler], ticks: Iterable[Tick] = (),
                 *, outputs: Iterable[str] = (), tables: Iterable[StateTable] = ()) -> None:
        """Run `handlers` (topic -> handler) on the engine and `ticks` every tick;
        `outputs` (the topics they send to) and `tables` are kept in `pipelines`.

        A Faust agent named `name` declares the topics, which is what makes Faust
        subscribe to them; its messages come to `Engine.deliver` (see faust/delivery.py).
        The topics are read as raw bytes with `acks=False`, which keeps Faust from
        committing their offsets: the engine commits them inside each
        partition's transaction.
        """
        for topic, handler in handlers.items():
            if topic in self.handlers:
                raise ValueError(f"{topic} has a handler already; one pipeline per topic")
            self.handlers[topic] = handler
            self.anchor_topic = self.anchor_topic or topic
        self.ticks.extend(ticks)
        self.pipelines[name] = Pipeline(name, tuple(handlers), tuple(outputs),
                                        tuple(table.name for table in tables))
        source = self.app.topic(*handlers, key_type=bytes, value_type=bytes,
                                key_serializer="raw", value_serializer="raw", acks=False)

        async def consume(stream: Any) -> None:
            await self.until_stopped()

        self.app.agent(source, name=name)(consume)

    def gate(self, is_open: Callable[[], bool]) -> None:
        """Hold processing until `is_open()` (e.g. configuration caught up); gates stay open."""
        self.gates.append(is_open)

    def ready(self, started: bool) -> bool:
        """Whether the engine has `started` and every gate is open."""
        # Asked before every message: once open, the gates are not asked again.
        if not self._opened:
            self._opened = started and all(is_open() for is_open in self.gates)
        return self._opened
